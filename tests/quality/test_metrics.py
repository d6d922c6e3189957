"""The one precision / recall / F1 sweep (prodmatch.quality.metrics), shared by evaluate and finetune, and the
cluster-level measures (B-cubed, exact clusters) on hand-made clusterings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prodmatch.quality.metrics import best_f1, cluster_quality, precision_recall_curve


def test_sweep_accepts_equal_scores_together_and_skips_missing_scores():
    scores = np.array([0.9, 0.8, 0.8, 0.5, -math.inf])
    correct = np.array([True, False, True, True, False])
    curve = precision_recall_curve(scores, correct, positives=5)
    assert [p.threshold for p in curve] == [0.9, 0.8, 0.5]
    assert [p.precision for p in curve] == pytest.approx([1.0, 2 / 3, 3 / 4])
    assert [p.recall for p in curve] == pytest.approx([1 / 5, 2 / 5, 3 / 5])
    best = best_f1(curve)
    assert best.threshold == 0.5 and best.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert best.rounded() == {"threshold": 0.5, "precision": 0.75, "recall": 0.6, "f1": round(best.f1, 4)}


def test_equal_f1_prefers_more_recall_and_empty_curves_have_no_best():
    # 1 right of 1 (P 1, R 1/3) and 2 right of 5 (P 0.4, R 2/3) have the same F1 of 0.5
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([True, False, False, False, True])
    curve = precision_recall_curve(scores, correct, positives=3)
    assert curve[0].f1 == pytest.approx(0.5) and curve[-1].f1 == pytest.approx(0.5)
    assert best_f1(curve).threshold == 0.5
    assert precision_recall_curve(np.array([]), np.array([]), positives=2) == []
    assert best_f1([]) is None


GOLD = np.array([(1, 2), (2, 3), (4, 5), (6, 7)])  # gold clusters {1, 2, 3}, {4, 5}, {6, 7}


def _quality(clusters: dict[int, list[int]], **kwargs):
    products = [p for members in clusters.values() for p in members]
    labels = [c for c, members in clusters.items() for _ in members]
    return cluster_quality(np.array(products), np.array(labels), GOLD, **kwargs)


def test_b_cubed_and_exact_clusters_on_a_hand_made_clustering():
    found = _quality({10: [1, 2], 11: [3, 4, 5], 12: [6, 7]})
    # precision: 3 sits with 4 and 5 (1/3 of its cluster is right), 4 and 5 with 3 (2/3), the rest 1
    assert found.precision == pytest.approx((4 + 1 / 3 + 2 * 2 / 3) / 7, abs=1e-4)
    # recall: 1 and 2 see 2/3 of their gold cluster, 3 sees 1/3, the rest all of theirs
    assert found.recall == pytest.approx((2 * 2 / 3 + 1 / 3 + 4) / 7, abs=1e-4)
    assert found.f1 == pytest.approx(17 / 21, abs=1e-4)
    assert found.exact == pytest.approx(1 / 3, abs=1e-4)  # only {6, 7}
    assert (found.products, found.gold_clusters, found.predicted_clusters) == (7, 3, 3)


def test_perfect_and_all_alone_clusterings():
    perfect = _quality({5: [3, 2, 1], 9: [5, 4], 2: [7, 6]})
    assert (perfect.precision, perfect.recall, perfect.f1, perfect.exact) == (1.0, 1.0, 1.0, 1.0)
    alone = _quality({})
    assert alone.precision == 1.0 and alone.recall == pytest.approx((3 / 3 + 2 / 2 + 2 / 2) / 7, abs=1e-4)
    assert alone.exact == 0.0 and alone.predicted_clusters == 0


def test_products_outside_the_gold_count_only_when_named():
    extra = {1: [1, 2, 3, 8], 2: [4, 5], 3: [6, 7]}  # 8: a product the gold does not name
    assert _quality(extra).precision == 1.0 and _quality(extra).exact == 1.0  # ignored by default
    named = _quality(extra, products=np.arange(1, 9))  # 8 is known to be alone: a false join
    assert named.precision == pytest.approx((3 * 3 / 4 + 1 / 4 + 4) / 8, abs=1e-4) and named.recall == 1.0
    assert named.exact == pytest.approx(2 / 3, abs=1e-4)
    empty = cluster_quality(np.array([]), np.array([]), np.empty((0, 2)))
    assert empty.products == 0 and empty.f1 == 0.0
