"""Exact top-k cosine search: against a brute-force reference, near-duplicates, ties, padding, blocks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prodmatch.hardware import fast_bf16 as supported_bf16
from prodmatch.hardware import matmul_flops
from prodmatch.match import exact
from prodmatch.match.exact import TopK, top_k_cosine

PRECISIONS = ["bf16", "fp32"]


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def random_vectors(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).normal(size=(n, d)))


def clustered_vectors(n: int, d: int = 64, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Products around category centres, with near-duplicates and exact duplicates, as catalogues have."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(rng.normal(size=(clusters, d)))
    vectors = unit_rows(centres[rng.integers(0, clusters, n)] + 0.4 * rng.normal(size=(n, d)) / np.sqrt(d))
    near = rng.integers(0, n, n // 10)
    vectors[near] = unit_rows(
        vectors[rng.integers(0, n, len(near))] + 0.002 * rng.normal(size=(len(near), d))
    )
    vectors[rng.integers(0, n, n // 50)] = vectors[rng.integers(0, n, n // 50)]
    return vectors


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int, exclude_self: bool = False) -> TopK:
    """Every similarity in float64, rounded to float32, sorted by (similarity descending, index)."""
    similarities = (queries.astype(np.float64) @ corpus.astype(np.float64).T).astype(np.float32)
    if exclude_self:
        np.fill_diagonal(similarities, -np.inf)
    columns = np.broadcast_to(np.arange(corpus.shape[0]), similarities.shape)
    order = np.lexsort((columns, -similarities), axis=1)[:, :k]
    return TopK(order, np.take_along_axis(similarities, order, axis=1))


def assert_same(result: TopK, expected: TopK) -> None:
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_allclose(result.similarities, expected.similarities, rtol=0, atol=1e-6)
    assert result.indices.dtype == np.int64
    assert result.similarities.dtype == np.float32


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_matches_brute_force(data, precision):
    make = random_vectors if data == "random" else clustered_vectors
    queries, corpus = make(300, seed=1), make(3000, seed=2)
    result = top_k_cosine(queries, corpus, 5, candidate_precision=precision, device="cpu")
    assert_same(result, brute_force(queries, corpus, 5))


def test_recall_does_not_depend_on_candidates():
    # With as few candidates as k, most queries are settled by a second search; the result is still exact.
    queries, corpus = clustered_vectors(200, seed=3), clustered_vectors(2000, seed=4)
    expected = brute_force(queries, corpus, 10)
    for candidates in (10, 11, 40):
        assert_same(top_k_cosine(queries, corpus, 10, candidates=candidates, device="cpu"), expected)


@pytest.mark.parametrize("seed", [1, 3])
def test_bf16_rounding_that_reorders_beyond_the_candidates_is_caught(seed):
    # Heavy-tailed vectors (a few large coordinates) have the largest bf16 rounding errors: with as many
    # candidates as k, the bf16 top-k misses some true top-k rows, and the error bound must notice.
    rng = np.random.default_rng(seed)
    queries, corpus = (unit_rows(rng.normal(size=(n, 64)) ** 3) for n in (200, 3000))
    result = top_k_cosine(queries, corpus, 5, candidates=5, candidate_precision="bf16", device="cpu")
    assert_same(result, brute_force(queries, corpus, 5))


@pytest.mark.parametrize("candidates", [None, 10, 60])
def test_near_duplicates_below_bf16_resolution_are_ranked_exactly(candidates):
    # 40 variants of one product at similarities 0.9950, 0.9951, ... 0.9989 in shuffled order: bf16 scores
    # (spacing 0.004 near 1) cannot order them, the exact rescoring must.
    d = 64
    rng = np.random.default_rng(5)
    query = np.zeros((1, d), dtype=np.float32)
    query[0, 0] = 1.0
    targets = 0.995 + 1e-4 * rng.permutation(40)
    variants = np.zeros((40, d))
    variants[:, 0] = targets
    variants[np.arange(40), 1 + np.arange(40) % (d - 1)] = np.sqrt(1 - targets**2)
    corpus = np.concatenate([random_vectors(500, d, seed=6), variants.astype(np.float32)])
    corpus = corpus[rng.permutation(len(corpus))]
    exact_scores = corpus.astype(np.float64) @ query[0].astype(np.float64)
    bf16_scores = (torch.from_numpy(query).bfloat16() @ torch.from_numpy(corpus).bfloat16().T).float()
    assert len(np.unique(bf16_scores.numpy()[0, exact_scores > 0.99])) < 5  # bf16 sees a few values only

    result = top_k_cosine(query, corpus, 10, candidate_precision="bf16", candidates=candidates, device="cpu")
    assert_same(result, brute_force(query, corpus, 10))
    assert np.all(np.diff(result.similarities[0]) < -5e-5)
    np.testing.assert_allclose(result.similarities[0], 0.9989 - 1e-4 * np.arange(10), atol=2e-6)


def test_ties_go_to_the_lower_index():
    corpus = random_vectors(300, seed=7)
    group = [13, 40, 41, 90, 150, 151, 200, 260, 299]
    corpus[group] = corpus[13]
    result = top_k_cosine(corpus[[13]], corpus, 5, candidates=5, device="cpu")
    assert result.indices[0].tolist() == group[:5]
    assert np.all(result.similarities[0] == result.similarities[0, 0])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_exclude_self_never_returns_the_query_itself(precision):
    vectors = clustered_vectors(800, seed=8)
    vectors[100:140] = vectors[100]  # a group of exact duplicates, each must still find the others
    result = top_k_cosine(vectors, vectors, 5, exclude_self=True, candidate_precision=precision, device="cpu")
    assert not np.any(result.indices == np.arange(len(vectors))[:, None])
    assert_same(result, brute_force(vectors, vectors, 5, exclude_self=True))
    assert result.indices[100].tolist() == [101, 102, 103, 104, 105]
    assert result.indices[101].tolist() == [100, 102, 103, 104, 105]


def test_exclude_self_needs_the_same_matrix():
    with pytest.raises(ValueError, match="same matrix"):
        top_k_cosine(random_vectors(5), random_vectors(6), 2, exclude_self=True)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_k_beyond_the_corpus_pads_with_minus_one_and_nan(exclude_self):
    corpus = random_vectors(3, seed=9)
    queries = corpus if exclude_self else random_vectors(4, seed=10)
    result = top_k_cosine(queries, corpus, 5, exclude_self=exclude_self, device="cpu")
    found = 2 if exclude_self else 3
    assert result.indices.shape == result.similarities.shape == (len(queries), 5)
    assert np.all(result.indices[:, found:] == -1)
    assert np.all(np.isnan(result.similarities[:, found:]))
    expected = brute_force(queries, corpus, found, exclude_self=exclude_self)
    assert_same(TopK(result.indices[:, :found], result.similarities[:, :found]), expected)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_small_blocks_chunks_and_segments_give_the_same_result(monkeypatch, precision):
    queries, corpus = clustered_vectors(60, seed=11), clustered_vectors(1000, seed=12)
    expected = brute_force(queries, corpus, 7)
    one_block = top_k_cosine(queries, corpus, 7, candidate_precision=precision, device="cpu")
    assert_same(one_block, expected)
    # Score the corpus 48 rows at a time and keep at most 4 KB of scores (segments of one or two chunks).
    monkeypatch.setattr(exact, "_CHUNK_ROWS", 48)
    monkeypatch.setattr(exact, "_SCORE_BYTES", 4096)
    for block_size in (1, 7, 64):
        result = top_k_cosine(
            queries, corpus, 7, candidate_precision=precision, block_size=block_size, device="cpu"
        )
        np.testing.assert_array_equal(result.indices, one_block.indices)
        np.testing.assert_array_equal(result.similarities, one_block.similarities)


def test_exclude_self_across_blocks_and_chunks(monkeypatch):
    monkeypatch.setattr(exact, "_CHUNK_ROWS", 64)
    vectors = clustered_vectors(500, seed=13)
    result = top_k_cosine(vectors, vectors, 4, exclude_self=True, block_size=37, device="cpu")
    assert_same(result, brute_force(vectors, vectors, 4, exclude_self=True))


def test_corpus_not_a_multiple_of_the_group_size():
    queries, corpus = random_vectors(20, seed=14), random_vectors(16 * 40 + 3, seed=15)
    assert_same(top_k_cosine(queries, corpus, 3, device="cpu"), brute_force(queries, corpus, 3))


def test_progress_adds_up_to_the_number_of_queries():
    calls = []
    top_k_cosine(random_vectors(250), random_vectors(400, seed=1), 3, block_size=64, progress=calls.append)
    assert calls == [64, 64, 64, 58]


@pytest.mark.parametrize(("n", "m"), [(0, 10), (10, 0), (0, 0)])
def test_empty_inputs(n, m):
    calls = []
    result = top_k_cosine(
        np.empty((n, 8), np.float32), np.empty((m, 8), np.float32), 3, progress=calls.append
    )
    assert result.indices.shape == result.similarities.shape == (n, 3)
    assert np.all(result.indices == -1)
    assert np.all(np.isnan(result.similarities))
    assert sum(calls) == n


def test_other_float_dtypes_are_converted():
    queries, corpus = random_vectors(10, seed=16), random_vectors(200, seed=17)
    result = top_k_cosine(queries.astype(np.float64), corpus.astype(np.float16), 3)
    assert_same(result, brute_force(queries, corpus.astype(np.float16).astype(np.float32), 3))


@pytest.mark.parametrize(
    ("queries", "corpus", "options", "message"),
    [
        (np.zeros((2, 8)), np.zeros((3, 9)), {}, "dimension 8 but corpus vectors have dimension 9"),
        (np.zeros(8), np.zeros((3, 8)), {}, "queries must be a 2-D array"),
        (np.zeros((2, 8)), np.zeros((3, 8, 1)), {}, "corpus must be a 2-D array"),
        (np.zeros((2, 0)), np.zeros((3, 0)), {}, "dimension 0"),
        (np.full((2, 8), np.nan), np.zeros((3, 8)), {}, "queries row 0 holds NaN"),
        (np.zeros((2, 8)), np.array([["a"] * 8]), {}, "real numbers"),
        (np.zeros((2, 8)), np.zeros((3, 8)), {"k": 0}, "k must be a positive integer"),
        (np.zeros((2, 8)), np.zeros((3, 8)), {"candidates": 2}, r"candidates \(2\) must be at least k"),
        (np.zeros((2, 8)), np.zeros((3, 8)), {"block_size": 0}, "block_size must be a positive integer"),
        (np.zeros((2, 8)), np.zeros((3, 8)), {"candidate_precision": "fp16"}, "unknown candidate_precision"),
    ],
)
def test_bad_input_raises_value_error(queries, corpus, options, message):
    options = {"k": 3, **options}
    k = options.pop("k")
    with pytest.raises(ValueError, match=message):
        top_k_cosine(queries, corpus, k, **options)


def test_supported_bf16_and_matmul_flops():
    assert isinstance(supported_bf16(), bool)
    assert matmul_flops(torch.float32, size=64, repeat=1, device="cpu") > 0
