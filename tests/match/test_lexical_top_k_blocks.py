"""The lexical top-k in blocks (dense partial scores, torch top-k) picks what a per-source sort of the sparse
product picks: the same targets, best first, ties to the lower product id."""

import numpy as np
import pytest
import scipy.sparse as sp

from prodmatch.match import hybrid


def per_source_reference(source, target, k):
    """The straightforward definition (the code before blocks): sort each source's sparse product row."""
    source_ids, s = source
    target_ids, t = target
    query = hybrid._heaviest_terms(s, hybrid.LEXICAL_QUERY_TERMS)
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


@pytest.mark.parametrize("signed", [False, True])
def test_blocked_top_k_equals_the_per_source_sort(monkeypatch, signed):
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
    for k in (1, 5, 10, 200):
        got = hybrid._lexical_top_k(source, target, k)
        want = per_source_reference(source, target, k)
        assert len(want[0]) > 0
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a, b)
