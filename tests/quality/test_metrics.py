"""The one precision / recall / F1 sweep (prodmatch.quality.metrics), shared by evaluate and finetune."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prodmatch.quality.metrics import best_f1, precision_recall_curve


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
