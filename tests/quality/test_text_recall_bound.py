"""benchmarks/text_recall_bound.py on a generated case: its signals and recall figures are what they claim."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from text_recall_bound import out_of_fold_ranking, recall_at, text_features  # noqa: E402

WORDS = "跑步 鞋 男 女 透气 休闲 板鞋 夏季 新款 网面 帆布 运动".split()


def _offer(rng: random.Random, i: int, title: str, colour: str) -> dict:
    return {
        "id": str(i),
        "title": title,
        "category": "鞋",
        "attributes": {"颜色": colour, "image_url": f"u{i}"},
    }


def test_recall_counts_the_gold_pairs_among_each_sources_first_k():
    gold = np.array([[True, False, True], [False, False, True]])
    score = np.array([[0.9, 0.8, 0.1], [0.5, 0.4, 0.3]])
    assert recall_at(score, gold, 1) == 1 / 3  # row 0's best is its twin; row 1's twin is last
    assert recall_at(score, gold, 2) == 1 / 3
    assert recall_at(score, gold, 3) == 1.0


def test_twins_with_shared_titles_rank_first_and_the_ranker_learns_from_the_labels():
    rng = random.Random(0)
    titles = ["".join(rng.sample(WORDS, 5)) for _ in range(40)]
    colours = [rng.choice(["黑色", "白色", "红色"]) for _ in range(40)]
    a_side = [_offer(rng, i, titles[i], colours[i]) for i in range(40)]
    b_side = [_offer(rng, 100 + i, titles[i], colours[i]) for i in range(40)]
    gold = np.eye(40, dtype=bool)
    features = text_features(a_side, b_side)
    assert all(f.shape == (40, 40) for f in features)
    assert recall_at(features[0], gold, 1) > 0.9  # identical titles: the title cosine finds the twin first
    noise = np.random.default_rng(0).random((40, 40))
    assert recall_at(noise, gold, 1) < 0.2
    for ranker in ("classifier", "lambdarank"):
        ranked = out_of_fold_ranking(features, gold, ranker)
        assert ranked.shape == (40, 40)
        assert recall_at(ranked, gold, 5) > 0.8, (
            ranker
        )  # out of fold: no source ranked by a model that saw it
