"""Rank signals: where a pair stands among the candidates one source (a vector space, lexical, codes) found.

A cosine of 0.8 means little on its own: it is a strong match if the next best candidate scores 0.5 and a weak
one if ten candidates score 0.79. For each candidate source we therefore give the matcher, per pair, its rank
among the source product's candidates, the margin to the best *other* candidate of that source product
(positive only for the top one), and the same two seen from the target product ("reciprocal" rank: is the
source the target's best candidate too?). Input is the source's candidate list as (source_id, target_id,
score) arrays; pairs the source did not propose get NaN.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)  # holds arrays: compare .values explicitly
class RankColumns:
    """Per-pair rank signals of one candidate source, aligned with the pairs they were computed for."""

    rank: np.ndarray  # 1 = best candidate of the source product
    margin: np.ndarray  # score - best score among the source product's other candidates
    reverse_rank: np.ndarray  # rank of the source product among the target product's candidates
    reverse_margin: np.ndarray


def rank_signals(
    source_ids: np.ndarray,
    target_ids: np.ndarray,
    scores: np.ndarray,
    *,
    pair_source_ids: np.ndarray | None = None,
    pair_target_ids: np.ndarray | None = None,
) -> RankColumns:
    """Rank and margin of every candidate, aligned with (pair_source_ids, pair_target_ids) when given.

    Without pair ids the columns are aligned with the candidate arrays themselves.
    """
    source_ids, target_ids = np.asarray(source_ids), np.asarray(target_ids)
    scores = np.asarray(scores, dtype=np.float64)
    rank, margin = _rank_within(source_ids, scores)
    reverse_rank, reverse_margin = _rank_within(target_ids, scores)
    columns = [rank, margin, reverse_rank, reverse_margin]
    if pair_source_ids is not None:
        columns = _align(
            source_ids, target_ids, columns, np.asarray(pair_source_ids), np.asarray(pair_target_ids)
        )
    return RankColumns(*(c.astype(np.float32) for c in columns))


def _rank_within(groups: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense per-group rank by descending score (ties share the better rank's order by position) and margin."""
    n = len(scores)
    rank = np.full(n, np.nan)
    margin = np.full(n, np.nan)
    if n == 0:
        return rank, margin
    _, group = np.unique(groups, return_inverse=True)
    order = np.lexsort((-np.nan_to_num(scores, nan=-np.inf), group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    sizes = np.diff(np.r_[starts, n])
    position = np.arange(n) - np.repeat(starts, sizes)
    rank[order] = position + 1
    sorted_scores = scores[order]
    best = np.repeat(sorted_scores[starts], sizes)
    second = np.repeat(np.where(sizes > 1, sorted_scores[np.minimum(starts + 1, n - 1)], np.nan), sizes)
    # The best candidate is compared with the runner-up, every other one with the best.
    margin[order] = np.where(position == 0, sorted_scores - second, sorted_scores - best)
    return rank, margin


def _align(
    source_ids: np.ndarray,
    target_ids: np.ndarray,
    columns: list[np.ndarray],
    pair_source_ids: np.ndarray,
    pair_target_ids: np.ndarray,
) -> list[np.ndarray]:
    # Each pair's row among the candidates, by a sort of encoded (source, target) keys; a candidate listed
    # twice resolves to its last row, like a dict built in order would.
    _, codes = np.unique(
        np.concatenate([source_ids, target_ids, pair_source_ids, pair_target_ids]), return_inverse=True
    )
    codes = codes.ravel().astype(np.int64)
    n, m, width = len(source_ids), len(pair_source_ids), int(codes.max(initial=0)) + 1
    keys = codes[:n] * width + codes[n : 2 * n]
    wanted = codes[2 * n : 2 * n + m] * width + codes[2 * n + m :]
    order = np.lexsort((np.arange(n), keys))  # by key, then position: the last of equal keys is the one kept
    sorted_keys = keys[order]
    last = np.r_[sorted_keys[1:] != sorted_keys[:-1], True] if n else np.zeros(0, bool)
    unique_keys, unique_rows = sorted_keys[last], order[last]
    at = np.minimum(np.searchsorted(unique_keys, wanted), max(len(unique_keys) - 1, 0))
    found = (unique_keys[at] == wanted) if len(unique_keys) else np.zeros(m, bool)
    rows = np.where(found, unique_rows[at] if len(unique_keys) else 0, -1)
    aligned = []
    for column in columns:
        out = np.full(m, np.nan)
        out[found] = column[rows[found]]
        aligned.append(out)
    return aligned
