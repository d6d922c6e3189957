"""TODO docstring."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

RECALL_AT = (1, 5, 10)


@dataclass(frozen=True)
class SpaceReport:
    """Quality of one space (and fusion weight, for fused)."""

    space: str
    image_weight: float | None
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr: float
    best_f1: float
    best_threshold: float | None
    precision_at_best: float
    recall_at_best: float
    curve: list[dict] = field(repr=False)  # threshold, precision, recall, f1 at every distinct score
    match_scores: list[float] = field(repr=False)  # similarity of each true pair
    non_match_scores: list[float] = field(
        repr=False
    )  # labelled non-matches and each source's best wrong candidate

    def summary(self) -> dict:
        data = asdict(self)
        for key in ("curve", "match_scores", "non_match_scores"):
            data.pop(key)
        return data

    def threshold_for_precision(self, min_precision: float) -> tuple[float | None, float, float]:
        """(threshold, precision, recall) with the most recall among thresholds reaching `min_precision`."""
        best = None
        for point in self.curve:
            if point["precision"] >= min_precision and (best is None or point["recall"] > best["recall"]):
                best = point
        if best is None:
            return None, 0.0, 0.0
        return best["threshold"], best["precision"], best["recall"]


def _pr_curve(decisions: list[tuple[float, bool, bool]]) -> list[dict]:
    """Precision/recall/F1 when accepting best candidates at or above each distinct score.

    decisions: (score, correct, has_true_match) per source.
    """
    positives = sum(1 for _, _, has in decisions if has)
    ordered = sorted((d for d in decisions if math.isfinite(d[0])), key=lambda d: -d[0])
    curve, accepted, correct = [], 0, 0
    for i, (score, ok, _) in enumerate(ordered):
        accepted += 1
        correct += ok
        if i + 1 < len(ordered) and ordered[i + 1][0] == score:
            continue  # a threshold accepts all equal scores together
        precision = correct / accepted
        recall = correct / positives if positives else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        curve.append(
            {
                "threshold": round(score, 6),
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "f1": round(f1, 4),
            }
        )
    return curve


def _recall(ranks: np.ndarray, k: int) -> float:
    return round(float(np.mean(ranks <= k)), 4) if len(ranks) else 0.0
