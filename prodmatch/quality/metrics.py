"""Quality measures of a matcher against gold pairs: recall@k, MRR, the precision / recall / F1 sweep, and
cluster-level quality (B-cubed, exact clusters) of the clusters its accepted pairs form.

`quality.evaluate` fills a `SpaceReport` per space from these; `quality.finetune` uses the same sweep for its
hold-out F1; `quality.plots` draws the curves. Pure numpy (connected components: `match.assign`): no database,
no models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from prodmatch.match.assign import connected_clusters

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


# --- cluster-level quality ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterQuality:
    """How well a clustering recovers the gold clusters (the connected components of the gold match pairs).

    Measured over the products the gold names: B-cubed precision and recall (per product, the share of its
    predicted cluster that is in its gold cluster, and the share of its gold cluster that is in its predicted one,
    both averaged over the products), their F1, and the share of gold clusters recovered exactly (the predicted
    cluster, seen on the gold's products, holds exactly the gold cluster's members).
    """

    products: int
    gold_clusters: int
    predicted_clusters: int  # clusters of two or more among the gold's products
    precision: float
    recall: float
    f1: float
    exact: float

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        return (
            f"clusters: B-cubed precision {self.precision:.3f}, recall {self.recall:.3f}, F1 {self.f1:.3f}; "
            f"{self.exact:.1%} of {self.gold_clusters} gold clusters recovered exactly "
            f"({self.products} products, {self.predicted_clusters} predicted clusters)"
        )


def cluster_quality(
    predicted_products: np.ndarray,
    predicted_clusters: np.ndarray,
    gold_pairs: np.ndarray,
    products: np.ndarray | None = None,
) -> ClusterQuality:
    """Cluster-level quality of a clustering against gold match pairs.

    `predicted_products[i]` is in cluster `predicted_clusters[i]`; a product not listed is alone. `gold_pairs`:
    (n, 2) product ids of the same product; their connected components are the gold clusters. `products`: the
    products measured over (default: those the gold pairs name); one in no gold pair is a gold cluster of its own.
    """
    gold_pairs = np.asarray(gold_pairs, dtype=np.int64).reshape(-1, 2)
    gold_products, gold_components = connected_clusters(gold_pairs[:, 0], gold_pairs[:, 1])
    universe = gold_products if products is None else np.unique(np.asarray(products, dtype=np.int64))
    if not len(universe):
        return ClusterQuality(0, 0, 0, 0.0, 0.0, 0.0, 0.0)
    gold = _labels_on(universe, gold_products, gold_components)
    predicted = _labels_on(universe, np.asarray(predicted_products), np.asarray(predicted_clusters))
    overlap = _sizes(
        predicted * (gold.max() - gold.min() + 1) + (gold - gold.min())
    )  # same (predicted, gold)
    predicted_size, gold_size = _sizes(predicted), _sizes(gold)
    precision = float(np.mean(overlap / predicted_size))
    recall = float(np.mean(overlap / gold_size))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    multi = gold_size > 1
    exact = (overlap == gold_size) & (overlap == predicted_size)
    gold_clusters = len(np.unique(gold[multi]))
    return ClusterQuality(
        products=len(universe),
        gold_clusters=gold_clusters,
        predicted_clusters=len(np.unique(predicted[predicted_size > 1])),
        precision=round(precision, 4),
        recall=round(recall, 4),
        f1=round(f1, 4),
        exact=round(len(np.unique(gold[multi & exact])) / gold_clusters, 4) if gold_clusters else 0.0,
    )


def _sizes(labels: np.ndarray) -> np.ndarray:
    """Per element, how many elements share its label."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def _labels_on(universe: np.ndarray, products: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each universe product's predicted cluster label; products not listed get a label of their own."""
    labels = -1 - np.arange(len(universe), dtype=np.int64)  # alone: distinct negative labels
    if len(products):
        order = np.argsort(products)
        products, clusters = products[order], clusters[order].astype(np.int64)
        at = np.minimum(np.searchsorted(products, universe), len(products) - 1)
        listed = products[at] == universe
        labels[listed] = clusters[at[listed]]
    return labels
