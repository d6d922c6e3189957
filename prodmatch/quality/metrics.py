"""Quality measures of a matcher against gold pairs: recall@k, MRR and the precision / recall / F1 sweep.

`quality.evaluate` fills a `SpaceReport` per space from these; `quality.finetune` uses the same sweep for its
hold-out F1; `quality.plots` draws the curves. Pure numpy: no database, no models.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class CurvePoint:
    """Precision, recall and F1 when accepting every prediction scoring at or above `threshold`."""

    threshold: float
    precision: float
    recall: float
    f1: float

    def rounded(self) -> dict:
        """The point as stored in reports: threshold to 6 decimals, the rates to 4."""
        return {
            "threshold": round(self.threshold, 6),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def precision_recall_curve(scores: np.ndarray, correct: np.ndarray, positives: int) -> list[CurvePoint]:
    """The precision/recall/F1 sweep: one point per distinct score, from the highest down.

    Each prediction (a source's best candidate) has a score and is right or wrong (`correct`); `positives` is the
    number of true matches a perfect matcher would find (the recall's denominator). Accepting at a threshold takes
    every prediction with that score or more, so equal scores come in together. Predictions without a finite
    score (no vector, no candidate) are never accepted but still count in `positives` through the caller.
    """
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    finite = np.isfinite(scores)
    order = np.argsort(-scores[finite], kind="stable")
    ranked, hits = scores[finite][order], correct[finite][order]
    true_positives = np.cumsum(hits)
    curve = []
    for k in range(len(ranked)):
        if k + 1 < len(ranked) and ranked[k + 1] == ranked[k]:
            continue  # a threshold accepts every prediction with the same score
        precision = float(true_positives[k]) / (k + 1)
        recall = float(true_positives[k]) / positives if positives else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        curve.append(CurvePoint(float(ranked[k]), precision, recall, f1))
    return curve


def best_f1(curve: list[CurvePoint]) -> CurvePoint | None:
    """The point with the highest F1 (of equal ones, the one with more recall); None for an empty curve."""
    return max(curve, key=lambda point: (point.f1, point.recall), default=None)


def _recall(ranks: np.ndarray, k: int) -> float:
    return round(float(np.mean(ranks <= k)), 4) if len(ranks) else 0.0
