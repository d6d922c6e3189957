"""The lexical top-k in blocks (a sparse product per block, a padded per-row torch top-k, blocks in threads)
picks what a per-source sort of the sparse product picks: the same targets, best first, ties to the lower
product id; and the widespread-term rule leaves out what it says."""

import numpy as np
import pytest
import scipy.sparse as sp

from prodmatch.match import hybrid


def per_source_reference(source, target, k):
    """The straightforward definition (the code before blocks): sort each source's sparse product row."""
    source_ids, s = source
    target_ids, t = target
    query = hybrid._query_terms(s, np.diff(t.T.tocsr().indptr), t.shape[0])
    product = (query @ t.T.tocsr()).tocsr()
    out_s, out_t = [], []
    for row in range(product.shape[0]):
        lo, hi = product.indptr[row], product.indptr[row + 1]
        data, cols = product.data[lo:hi], product.indices[lo:hi]
        cols = cols[np.lexsort((cols, -data))[:k]]
        out_s += [row] * len(cols)
        out_t += cols.tolist()
    rows, cols = np.array(out_s, dtype=np.int64), np.array(out_t, dtype=np.int64)
    return source_ids[rows], target_ids[cols], hybrid._sparse_row_dots(s, rows, t, cols)


def vectors(rng, n, terms, weights):
    matrix = sp.random(n, terms, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    matrix.data = weights(rng, matrix.nnz).astype(np.float32)
    return matrix


@pytest.mark.parametrize("widespread_from", [1000, 0])  # default (no term dropped here) / drop at 1%
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("signed", [False, True])
def test_blocked_top_k_equals_the_per_source_sort(monkeypatch, signed, workers, widespread_from):
    rng = np.random.default_rng(5)
    # Few distinct weights and repeated target rows: many ties, at the k-th place too.
    weights = (
        (lambda r, n: r.choice([-0.5, 0.25, 0.5, 1.0], n))
        if signed
        else (lambda r, n: r.choice([0.25, 0.5, 1.0], n))
    )
    s = vectors(rng, 90, 400, weights)
    t = vectors(rng, 60, 400, weights)
    t = sp.vstack([t, t[:20], sp.csr_matrix((5, 400), dtype=np.float32)]).tocsr()  # duplicates, empty rows
    source = (np.arange(100, 190, dtype=np.int64), s)
    target = (np.arange(1000, 1085, dtype=np.int64), t)
    monkeypatch.setattr(hybrid, "_LEXICAL_BLOCK", 16)  # several blocks
    monkeypatch.setattr(hybrid, "_lexical_workers", lambda n_sources: workers)  # blocks in threads or not
    monkeypatch.setattr(hybrid, "WIDESPREAD_MIN_TARGETS", widespread_from)
    for k in (1, 5, 10, 200):
        got = hybrid._lexical_top_k(source, target, k)
        want = per_source_reference(source, target, k)
        assert len(want[0]) > 0
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a, b)


def test_lexical_workers_use_the_cores_but_not_more_than_the_blocks(monkeypatch):
    monkeypatch.setattr(hybrid, "usable_cores", lambda: 4)
    assert hybrid._lexical_workers(1) == 1  # one block: no pool
    assert hybrid._lexical_workers(40) == 3
    assert hybrid._lexical_workers(100_000) == 4


def test_many_targets_the_kth_value_bound_keeps_every_top_k_row_and_its_ties(monkeypatch):
    """5,000 targets (rows padded to hundreds of entries), coarse weights: ties at the k-th place are common."""
    rng = np.random.default_rng(11)
    weights = lambda r, n: r.choice([0.25, 0.5, 1.0], n)  # noqa: E731
    s = vectors(rng, 300, 2000, weights)
    t = vectors(rng, 5000, 2000, weights)
    source = (np.arange(300, dtype=np.int64), s)
    target = (np.arange(10_000, 15_000, dtype=np.int64), t)
    monkeypatch.setattr(hybrid, "_LEXICAL_BLOCK", 64)
    for k in (1, 10, 40):
        got = hybrid._lexical_top_k(source, target, k)
        want = per_source_reference(source, target, k)
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a, b)


def test_widespread_terms_are_not_searched_with_but_a_source_keeps_a_few(monkeypatch):
    monkeypatch.setattr(hybrid, "WIDESPREAD_MIN_TARGETS", 0)
    monkeypatch.setattr(hybrid, "LEXICAL_MIN_QUERY_TERMS", 2)
    # terms 0-3 are widespread (in 50 of 100 targets), 4-5 rare (in 1)
    frequency = np.array([50, 50, 50, 60, 1, 1])
    s = sp.csr_matrix(
        np.array(
            [
                [1.0, 1.0, 1.0, 1.0, 2.0, 2.0],  # rare terms: only they are kept
                [1.0, 1.0, 1.0, 1.0, 0.0, 0.0],  # only widespread: its two least widespread are kept
                [0.0, 0.0, 0.0, 1.0, 0.0, 2.0],  # one rare term: it and the least widespread other
            ],
            dtype=np.float32,
        )
    )
    query = hybrid._query_terms(s, frequency, n_targets=100)
    assert [sorted(query[i].indices.tolist()) for i in range(3)] == [[4, 5], [0, 1], [3, 5]]
    assert query[0].data.tolist() == [2.0, 2.0]  # weights unchanged
    monkeypatch.setattr(hybrid, "WIDESPREAD_MIN_TARGETS", 1000)  # a small catalogue: nothing dropped
    assert hybrid._query_terms(s, frequency, n_targets=100).nnz == s.nnz
