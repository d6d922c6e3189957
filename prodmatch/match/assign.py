"""Assignment: which candidate pairs a run keeps, and how they rank.

Threshold filtering, greedy one-to-one assignment (each source and target at most once, best pairs first),
ranks per source, complete-linkage duplicate clusters (no chaining) for dedupe, and the connected components
that join accepted pairs into clusters of offers (`match.clusters`, `quality.metrics.cluster_quality`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from prodmatch.match.pairs import CandidatePairs


def filter_and_rank(pairs: CandidatePairs, threshold: float | None, one_to_one: bool) -> CandidatePairs:
    """Drop pairs under the threshold, optionally keep a one-to-one assignment, and rank per source."""
    if threshold is not None:
        pairs = pairs.take(pairs.score >= threshold)
    if one_to_one:
        pairs = pairs.take(greedy_assignment(pairs.sources, pairs.targets, pairs.score))
    pairs = pairs.take(np.lexsort((pairs.targets, -pairs.score, pairs.sources)))  # per source: best first
    starts = (
        np.r_[True, pairs.sources[1:] != pairs.sources[:-1]] if len(pairs.sources) else np.array([], bool)
    )
    group_start = (
        np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0)) if len(starts) else starts
    )
    pairs.ranks = (np.arange(len(starts)) - group_start + 1).astype(np.int64)
    return pairs


def greedy_assignment(sources: np.ndarray, targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mutual one-to-one matching: take pairs from the most similar down; each source and target once."""
    order = np.lexsort((targets, sources, -scores))
    used_sources: set[int] = set()
    used_targets: set[int] = set()
    keep = []
    for i in order:
        s, t = int(sources[i]), int(targets[i])
        if s in used_sources or t in used_targets:
            continue
        used_sources.add(s)
        used_targets.add(t)
        keep.append(i)
    return np.array(keep, dtype=np.int64)


def cluster_duplicates(
    vectors: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray, threshold: float
) -> list[list[int]]:
    """Clusters (lists of row indices, centre first) in which every pair is at least `threshold` similar."""
    passing = (neighbours >= 0) & (similarities >= threshold)
    degree = passing.sum(axis=1)
    order = sorted(range(len(vectors)), key=lambda i: (-int(degree[i]), i))
    assigned = np.zeros(len(vectors), dtype=bool)
    clusters = []
    for centre in order:
        if assigned[centre] or degree[centre] == 0:
            continue
        members = [centre]
        for j, ok in zip(neighbours[centre], passing[centre], strict=True):
            if not ok or assigned[j] or j == centre:
                continue
            if np.all(vectors[members] @ vectors[j] >= threshold):
                members.append(int(j))
        if len(members) > 1:
            assigned[members] = True
            clusters.append(members)
    return clusters


def connected_clusters(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(products, component of each): the connected components of the edges left[i] -- right[i].

    Products are sorted; components are numbered in order of their smallest product.
    """
    products = np.unique(np.concatenate([left, right]))
    if not len(products):
        return products, np.empty(0, dtype=np.int64)
    a, b = np.searchsorted(products, left), np.searchsorted(products, right)
    graph = sp.coo_matrix((np.ones(len(a), dtype=np.int32), (a, b)), shape=(len(products), len(products)))
    _, labels = connected_components(graph, directed=False)  # numbered in order of first node: smallest id
    return products, labels.astype(np.int64)
