"""Which pair next: stratified over scores before a matcher, uncertainty plus some random extremes after one,
never a labelled pair, the same order for the same seed."""

from __future__ import annotations

from prodmatch.review.queue import Candidate, next_pairs


def _pool(n: int = 100, with_probability: bool = False) -> list[Candidate]:
    return [
        Candidate(i, 1000 + i, score=i / n, probability=(i / n if with_probability else None))
        for i in range(n)
    ]


def test_before_a_matcher_the_first_pairs_span_the_score_range():
    chosen = next_pairs(_pool(), n=8, bins=8, seed=1)
    bins = {min(7, int(c.score * 8)) for c in chosen}
    assert bins == set(range(8))  # one pair from each eighth of the range, not the eight most similar


def test_skewed_scores_still_reach_the_sparse_end():
    pool = [Candidate(i, 500 + i, score=0.9 + i / 10_000) for i in range(200)]
    pool += [Candidate(900, 901, score=0.1)]
    assert Candidate(900, 901, score=0.1) in next_pairs(pool, n=4, seed=0)


def test_with_a_matcher_most_pairs_sit_at_the_threshold_and_some_are_extremes():
    pool = _pool(200, with_probability=True)
    chosen = next_pairs(pool, n=50, threshold=0.5, random_share=0.2, seed=7)
    near = [c for c in chosen if abs(c.probability - 0.5) <= 0.125]
    extremes = [c for c in chosen if c.probability < 0.25 or c.probability >= 0.75]
    assert len(chosen) == len({c.pair for c in chosen}) == 50
    assert len(near) >= 30 and 3 <= len(extremes) <= 20 and len(near) + len(extremes) == 50
    assert next_pairs(pool, n=1, threshold=0.3, random_share=0.0)[0].probability == 0.3


def test_labelled_pairs_are_never_offered_and_duplicates_collapse():
    pool = _pool(10, with_probability=True) + _pool(10, with_probability=True)
    labelled = {(i, 1000 + i) for i in range(0, 10, 2)}
    chosen = next_pairs(pool, labelled, n=20, seed=3)
    assert sorted(c.source_product_id for c in chosen) == [1, 3, 5, 7, 9]
    assert next_pairs(pool, {c.pair for c in pool}, n=3) == []


def test_the_same_seed_gives_the_same_order_whatever_the_input_order():
    pool = _pool(60)
    first = next_pairs(pool, n=10, seed=42)
    assert next_pairs(list(reversed(pool)), n=10, seed=42) == first
    assert next_pairs(pool, n=10, seed=43) != first


def test_pairs_without_scores_come_last():
    pool = [Candidate(1, 2, score=None), Candidate(3, 4, score=0.5), Candidate(5, 6, score=0.7)]
    assert next_pairs(pool, n=3, seed=0)[-1].pair == (1, 2)
    scored = [Candidate(1, 2, score=0.1, probability=None), Candidate(3, 4, score=0.5, probability=0.9)]
    assert next_pairs(scored, n=2, random_share=0.0)[0].pair == (3, 4)
