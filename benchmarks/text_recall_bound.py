"""How many of a development set's twins can text alone put among a source's first k candidates?

    python benchmarks/text_recall_bound.py [--dataset ember-ali-shoes] [--split test] [--ranker classifier|lambdarank]

An upper bound for any text-only candidate source, made with the answers in hand: every A x B pair of the split
(not only candidates) gets the text signals prodmatch has (TF-IDF cosines of the title's characters and
character bigrams, of the attribute values as whole `key=value` terms, and of both together; whether each of the
40 commonest attribute keys agrees; whether the categories agree; each cosine's rank among the source's
targets), and a LightGBM model trained on the SAME split's gold pairs ranks them, out of fold (five folds by
source, so no source is ranked by a model that saw its own twins). No neural model and no database: the
figures say what the text can give, whatever prodmatch does with it. Prints the recall of the gold pairs in
each source's first k for the three cosines and for the ranker.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_cases import load_case  # noqa: E402

DEPTHS = (1, 10, 20, 50)
NOISE_KEYS = {"image_url"}  # a picture's address: unique per offer, says nothing about the product
TOP_KEYS = 40


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ember-ali-shoes")
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--ranker", default="lambdarank", choices=("classifier", "lambdarank"))
    args = parser.parse_args()
    started = time.perf_counter()
    case = load_case(args.dataset, args.split)
    a_side, b_side = case.source_products, case.target_products
    index_a = {p["id"]: i for i, p in enumerate(a_side)}
    index_b = {p["id"]: i for i, p in enumerate(b_side)}
    gold = np.zeros((len(a_side), len(b_side)), dtype=bool)
    for a, b in case.gold:
        gold[index_a[a], index_b[b]] = True
    features = text_features(a_side, b_side)
    cosines = dict(
        zip(
            ("title characters + bigrams", "attribute values", "title + values, characters"),
            features[:3],
            strict=True,
        )
    )
    ranked = out_of_fold_ranking(features, gold, args.ranker)
    print(
        f"{args.dataset} ({args.split}): A {len(a_side)}, B {len(b_side)}, gold pairs {int(gold.sum()):,}; "
        f"{len(a_side) * len(b_side):,} pairs ranked, {time.perf_counter() - started:.0f} s"
    )
    print(f"{'recall of the gold pairs in the first k':<60}" + "".join(f"{'k=' + str(k):>8}" for k in DEPTHS))
    for name, score in (
        *cosines.items(),
        (f"ranker trained on these labels ({args.ranker}, out of fold)", ranked),
    ):
        print(f"{name:<60}" + "".join(f"{recall_at(score, gold, k):8.3f}" for k in DEPTHS))


def text_features(a_side: list[dict], b_side: list[dict]) -> list[np.ndarray]:
    """One (len(A), len(B)) array per signal; the three cosines first."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def attributes(p: dict) -> dict:
        return {k: v for k, v in p["attributes"].items() if k not in NOISE_KEYS}

    def cosine(vectorizer, text) -> np.ndarray:
        vectorizer.fit([text(p) for p in a_side + b_side])
        left = vectorizer.transform([text(p) for p in a_side])
        right = vectorizer.transform([text(p) for p in b_side])
        return (left @ right.T).toarray()

    characters = dict(analyzer="char", ngram_range=(1, 2), sublinear_tf=True)
    cosines = [
        cosine(TfidfVectorizer(**characters), lambda p: p["title"]),
        cosine(
            TfidfVectorizer(analyzer=str.split, sublinear_tf=True),
            lambda p: " ".join(f"{k}={v}".replace(" ", "_") for k, v in attributes(p).items()),
        ),
        cosine(TfidfVectorizer(**characters), lambda p: " ".join([p["title"], *attributes(p).values()])),
    ]
    features = list(cosines)
    keys = [k for k, _ in Counter(k for p in a_side + b_side for k in attributes(p)).most_common(TOP_KEYS)]
    for key in keys:
        left = _codes([attributes(p).get(key) for p in a_side])
        right = _codes([attributes(p).get(key) for p in b_side])
        unknown = (left[:, None] < 0) | (right[None, :] < 0)
        features.append(np.where(unknown, np.nan, (left[:, None] == right[None, :]).astype(float)))
    left, right = _codes([p["category"] for p in a_side]), _codes([p["category"] for p in b_side])
    features.append((left[:, None] == right[None, :]).astype(float))
    features += [np.argsort(np.argsort(-c, axis=1), axis=1).astype(float) for c in cosines]
    return features


def _codes(values: list) -> np.ndarray:
    """Each value as a small integer shared by equal values; -1 where there is none."""
    seen: dict = {}
    return np.array([seen.setdefault(v, len(seen)) if v else -1 for v in values])


def out_of_fold_ranking(features: list[np.ndarray], gold: np.ndarray, ranker: str) -> np.ndarray:
    import lightgbm as lgb
    from sklearn.model_selection import GroupKFold

    n_a, n_b = gold.shape
    x = np.stack([f.ravel() for f in features], axis=1).astype(np.float32)
    y = gold.ravel().astype(int)
    groups = np.repeat(np.arange(n_a), n_b)
    scores = np.zeros(len(y))
    for train, test in GroupKFold(5).split(x, y, groups):
        if ranker == "lambdarank":  # rows are grouped by source already: one query of n_b targets per source
            model = lgb.LGBMRanker(
                n_estimators=300,
                num_leaves=31,
                learning_rate=0.05,
                label_gain=[0, 1],
                lambdarank_truncation_level=20,
                verbose=-1,
            )
            model.fit(x[train], y[train], group=np.full(len(train) // n_b, n_b))
            scores[test] = model.predict(x[test])
        else:
            model = lgb.LGBMClassifier(n_estimators=300, num_leaves=31, learning_rate=0.05, verbose=-1)
            model.fit(x[train], y[train])
            scores[test] = model.predict_proba(x[test])[:, 1]
    return scores.reshape(n_a, n_b)


def recall_at(score: np.ndarray, gold: np.ndarray, k: int) -> float:
    top = np.argsort(-score, axis=1)[:, :k]
    return float(gold[np.arange(len(score))[:, None], top].sum() / gold.sum())


if __name__ == "__main__":
    main()
