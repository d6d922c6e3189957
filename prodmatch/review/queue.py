"""Which pair to label next: active learning over a run's candidate pairs, as a pure function.

Once a matcher exists, most pairs are those whose match probability sits closest to the matcher's threshold (where
a label teaches it most: uncertainty sampling); about a fifth are random pairs from the top and bottom quarters of
the score range, so the labels do not all sit on the boundary and the matcher keeps seeing clear cases. Before
any matcher, pairs are spread over the similarity range: the range is cut into equal-width bins and the bins take
turns. A pair that already has a label is never offered. The same inputs and seed give the same order, so tests
and benchmarks can replay it; the app changes the seed with the number of labels so far.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

RANDOM_SHARE = 0.2
SCORE_BINS = 8


@dataclass(frozen=True)
class Candidate:
    """A pair the queue may offer: its similarity score and, once a matcher exists, its match probability."""

    source_product_id: int
    target_product_id: int
    score: float | None
    probability: float | None = None

    @property
    def pair(self) -> tuple[int, int]:
        return (self.source_product_id, self.target_product_id)


def next_pairs(
    candidates: Iterable[Candidate],
    labelled: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
    *,
    n: int = 1,
    threshold: float = 0.5,
    random_share: float = RANDOM_SHARE,
    bins: int = SCORE_BINS,
    seed: int = 0,
) -> list[Candidate]:
    """Up to `n` unlabelled pairs in the order to ask about them (see the module docstring)."""
    pool = _unique_unlabelled(candidates, labelled)
    rng = random.Random(seed)
    if any(c.probability is not None for c in pool):
        return _uncertain_first(pool, n, threshold, random_share, rng)
    return _spread_over_scores(pool, n, bins, rng)


def _unique_unlabelled(candidates: Iterable[Candidate], labelled) -> list[Candidate]:
    seen: set[tuple[int, int]] = set()
    pool = []
    for c in candidates:
        if c.pair in labelled or c.pair in seen:
            continue
        seen.add(c.pair)
        pool.append(c)
    pool.sort(key=lambda c: c.pair)  # the caller's row order must not change the answer
    return pool


def _uncertain_first(
    pool: list[Candidate], n: int, threshold: float, random_share: float, rng: random.Random
) -> list[Candidate]:
    # Pairs without a probability (the matcher could not score them) come after every scored one.
    by_doubt = sorted(
        pool,
        key=lambda c: (c.probability is None, abs((c.probability or 0.0) - threshold), c.pair),
    )
    high, low = _extremes(pool)
    chosen: list[Candidate] = []
    taken: set[tuple[int, int]] = set()
    doubt = iter(by_doubt)
    while len(chosen) < min(n, len(pool)):
        pick = None
        if rng.random() < random_share:
            side = high if rng.random() < 0.5 else low
            fresh = [c for c in side if c.pair not in taken]
            pick = rng.choice(fresh) if fresh else None
        if pick is None:
            pick = next(c for c in doubt if c.pair not in taken)
        chosen.append(pick)
        taken.add(pick.pair)
    return chosen


def _extremes(pool: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """The top and bottom quarters of the pool by probability, else by score."""
    ranked = sorted(pool, key=lambda c: (_value(c), c.pair))
    quarter = max(1, len(ranked) // 4)
    return ranked[-quarter:], ranked[:quarter]


def _value(c: Candidate) -> float:
    if c.probability is not None:
        return c.probability
    return c.score if c.score is not None else 0.0


def _spread_over_scores(pool: list[Candidate], n: int, bins: int, rng: random.Random) -> list[Candidate]:
    scored = [c for c in pool if c.score is not None]
    unscored = [c for c in pool if c.score is None]
    groups = _bins(scored, bins)
    for group in groups:
        rng.shuffle(group)
    order = list(range(len(groups)))
    rng.shuffle(
        order
    )  # which bin starts; then they take turns, so the first few labels already span the range
    chosen: list[Candidate] = []
    while len(chosen) < n and any(groups):
        for i in order:
            if groups[i] and len(chosen) < n:
                chosen.append(groups[i].pop())
    rng.shuffle(unscored)
    return chosen + unscored[: max(0, n - len(chosen))]


def _bins(scored: Sequence[Candidate], bins: int) -> list[list[Candidate]]:
    if not scored:
        return []
    low = min(c.score for c in scored)
    high = max(c.score for c in scored)
    width = (high - low) / bins or 1.0
    groups: list[list[Candidate]] = [[] for _ in range(bins)]
    for c in scored:
        groups[min(bins - 1, int((c.score - low) / width))].append(c)
    return groups
