"""Exact top-k cosine search in memory: every query vector's k most similar corpus vectors, with no index.

Behind `prodmatch link --mode exact` and dedupe: `match.candidates` streams the two catalogues' fused vectors out of
the database, calls `top_k_cosine`, and writes the pairs back. This module knows nothing of the database.

How: the corpus is scanned in blocks of queries times chunks of corpus rows with a matrix multiplication in
bf16 where the CPU (AVX512-BF16, AMX) or GPU does bf16 fast — about 2.5 times the fp32 speed on a Zen 4 core —
keeping the best `candidates` of every query. The candidates are rescored exactly (products of the float32
vectors summed in float64, rounded to float32) and sorted, so near-duplicates that bf16 cannot tell apart
(0.9951 against 0.9952) are ranked at full precision, ties going to the lower corpus index.

The result is exact, not just probably exact: bf16 scores are off by a bounded amount (input rounding, fp32
accumulation, output rounding), so a query is settled once its k-th exact similarity beats the best score any
non-candidate could reach. The few queries that are not (more than `candidates` corpus vectors within about
0.005 of their k-th best, such as a group of exact duplicates) are searched again with every corpus vector
that could still qualify, found by that same bound. `candidates` therefore trades speed only, never recall.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from prodmatch.hardware import fast_bf16, resolve_device

CANDIDATE_PRECISIONS = ("auto", "bf16", "fp32")

# A block of queries is scored against a segment of the corpus — the whole corpus unless it is very large —
# and the block's scores are kept (at most _SCORE_BYTES) until the segment's candidates are picked. The
# matrix multiplication runs one chunk of corpus rows at a time, and each chunk's scores are reduced to the
# maxima of groups of _GROUP columns while they are still in the caches; only the c groups with the highest
# maxima can hold a query's c best scores, so the selection reads each score once and runs its top-k over
# 1/_GROUP of them.
_SCORE_BYTES = 256 * 2**20
_MIN_BLOCK_SIZE, _MAX_BLOCK_SIZE = 256, 2048
_CHUNK_ROWS = 4096
_GROUP = 16
_RESCORE_ROWS = 32  # queries rescored at once (their candidates gathered as float64: 32 x c x d x 8 bytes)
_PAIR_BATCH = 2**15  # (query, corpus vector) pairs rescored at once when searching again


@dataclass(frozen=True)
class TopK:
    """The k best corpus rows of every query, best first."""

    indices: np.ndarray  # (n_queries, k) int64 corpus row indices; -1 where fewer than k candidates exist
    similarities: np.ndarray  # (n_queries, k) float32 exact cosine similarities; nan where the index is -1


def top_k_cosine(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    candidate_precision: str = "auto",
    candidates: int | None = None,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    device: str | torch.device | None = None,
) -> TopK:
    """The exact top-k corpus rows of every query row by cosine similarity.

    `queries` (n, d) and `corpus` (m, d) are float32 rows of unit length: the similarity is their dot
    product, and they are not normalised here (other dtypes are converted to float32). Ties go to the lower
    corpus index. With `exclude_self`, queries and corpus are the same matrix (dedupe) and query i never
    gets row i. Rows past the corpus's end are padded with index -1 and similarity nan.

    `candidate_precision` is the precision of the blocked matrix multiplication that picks candidates:
    "auto" is bf16 where `hardware.fast_bf16(device)`, else fp32. The results are exact either way; see the module
    docstring. `candidates` per query are rescored exactly (default max(2k, k + 16)); `block_size` queries are
    scored at once (default: as many as keep a block's scores within 256 MB, 1280 for
    a corpus of 100,000). `progress` is called after each block with the number of queries that
    block finished, so the calls add up to n (tqdm's `update`). `device`: None means CUDA when available.
    Raises ValueError for inputs of the wrong shape, dimension or values.
    """
    queries = _as_vectors(queries, "queries")
    corpus = _as_vectors(corpus, "corpus")
    n, d = queries.shape
    m = corpus.shape[0]
    if corpus.shape[1] != d:
        raise ValueError(f"queries have dimension {d} but corpus vectors have dimension {corpus.shape[1]}")
    if exclude_self and queries.shape != corpus.shape:
        raise ValueError(
            f"exclude_self needs queries and corpus to be the same matrix, got shapes {queries.shape} and "
            f"{corpus.shape}"
        )
    k = _positive_int(k, "k")
    n_candidates = max(2 * k, k + 16) if candidates is None else _positive_int(candidates, "candidates")
    if n_candidates < k:
        raise ValueError(f"candidates ({n_candidates}) must be at least k ({k})")
    torch_device = resolve_device(device)
    dtype = _candidate_dtype(candidate_precision, torch_device)
    if block_size is None:
        rows_per_block = _default_block_size(m, dtype)
    else:
        rows_per_block = _positive_int(block_size, "block_size")
    rows_per_block = min(rows_per_block, max(n, 1))

    indices = np.full((n, k), -1, dtype=np.int64)
    similarities = np.full((n, k), np.nan, dtype=np.float32)
    if n and m:
        search = _Search(corpus, dtype, torch_device, n_candidates, exclude_self, rows_per_block)
        for start in range(0, n, rows_per_block):
            stop = min(start + rows_per_block, n)
            block_indices, block_similarities = search.block(queries[start:stop], start, k)
            indices[start:stop] = block_indices
            similarities[start:stop] = block_similarities
            if progress is not None:
                progress(stop - start)
    elif n and progress is not None:
        progress(n)
    return TopK(indices=indices, similarities=similarities)


def top_k_peak_bytes(
    n: int,
    m: int,
    d: int,
    k: int,
    *,
    candidate_precision: str = "auto",
    device: str | torch.device | None = None,
) -> int:
    """Bytes `top_k_cosine` allocates at its peak for n queries against m corpus vectors of d dimensions, on top
    of its inputs (float32, contiguous: not copied on the CPU).

    The scan copy of the corpus in the candidate precision, the block's score buffer (at most 256 MiB), the
    group maxima, the per-block candidates and rescoring, and the results. Checked against measured peaks by
    benchmarks/memory.py.
    """
    itemsize = _candidate_dtype(candidate_precision, resolve_device(device)).itemsize
    padded = -(-max(m, 1) // _GROUP) * _GROUP
    block = min(_default_block_size(m, torch.bfloat16 if itemsize == 2 else torch.float32), max(n, 1))
    chunk = min(_CHUNK_ROWS, padded)
    segment = _segment_rows(padded, block, chunk, itemsize)
    c = min(max(2 * k, k + 16), max(m, 1))
    scan = padded * d * itemsize
    scores = block * segment * itemsize
    maxima = 2 * block * (segment // _GROUP) * itemsize  # per chunk, then concatenated
    candidates = block * c * _GROUP * 8 * 3 + block * d * (4 + itemsize) + _RESCORE_ROWS * c * d * 8
    bound = 2 * min(m, 8192) * d * 4  # a chunk's float32 scan copy and rounding residual
    results = n * k * (8 + 4)
    return scan + scores + maxima + candidates + bound + results


class _Search:
    """The corpus prepared once (on the device, in the candidate precision) and searched block by block."""

    def __init__(
        self,
        corpus: np.ndarray,
        dtype: torch.dtype,
        device: torch.device,
        n_candidates: int,
        exclude_self: bool,
        block_size: int,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.exclude_self = exclude_self
        self.exact = torch.from_numpy(corpus).to(device)
        self.m, self.d = corpus.shape
        self.c = min(n_candidates, self.m)
        # The scanned corpus is padded with zero rows to whole groups; their scores are set to -inf.
        self.padded = -(-self.m // _GROUP) * _GROUP
        self.scan = torch.zeros((self.padded, self.d), dtype=dtype, device=device)
        self.scan[: self.m] = self.exact
        self.chunk = min(_CHUNK_ROWS, self.padded)
        self.segment = _segment_rows(self.padded, block_size, self.chunk, dtype.itemsize)
        self.scores = torch.empty(block_size * self.segment, dtype=dtype, device=device)
        self.bound = _ErrorBound(self.exact, self.scan[: self.m], dtype, device)

    def block(self, queries: np.ndarray, offset: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of a block of queries, whose first row is query number `offset`."""
        q_exact = torch.from_numpy(queries).to(self.device)
        q_scan = q_exact.to(self.dtype)
        scores, candidates = self._candidates(q_scan, offset)
        exact = self._rescore(q_exact, candidates)
        top_scores, top_indices = _best_first(exact, candidates, k)
        margin = self.bound.margin(q_exact, q_scan)
        settled = self._settled(scores, top_scores[:, -1], margin)
        unsettled = torch.nonzero(~settled).flatten()
        if len(unsettled):
            again_scores, again_indices = self._search_again(
                q_exact, q_scan, unsettled, offset, top_scores[unsettled], top_indices[unsettled],
                margin[unsettled], k,
            )  # fmt: skip
            top_scores[unsettled] = again_scores
            top_indices[unsettled] = again_indices
        similarities = torch.where(top_indices >= 0, top_scores, torch.nan)
        return top_indices.cpu().numpy(), similarities.cpu().numpy()

    def _candidates(self, q_scan: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The c best corpus rows of every query by the scan scores: (scores, indices), best first.

        Every corpus row left out scores at most the c-th score. Indices are -1 (scores -inf) where the
        corpus has fewer than c rows to offer.
        """
        best, best_indices = self._segment_candidates(q_scan, offset, 0)
        for start in range(self.segment, self.padded, self.segment):
            more, more_indices = self._segment_candidates(q_scan, offset, start)
            best, best_indices = _merge(best, best_indices, more, more_indices, self.c)
        best_indices = torch.where(best == -math.inf, -1, best_indices)
        return best, best_indices

    def _segment_candidates(
        self, q_scan: torch.Tensor, offset: int, segment_start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = len(q_scan)
        segment_stop = min(segment_start + self.segment, self.padded)
        scores = self.scores[: rows * (segment_stop - segment_start)]
        chunks, group_maxima = [], []
        for start in range(segment_start, segment_stop, self.chunk):
            stop = min(start + self.chunk, segment_stop)
            chunk_scores = scores[rows * (start - segment_start) : rows * (stop - segment_start)]
            chunk_scores = chunk_scores.view(rows, stop - start)
            torch.mm(q_scan, self.scan[start:stop].T, out=chunk_scores)
            self._mask(chunk_scores, offset, start, stop)
            chunks.append(chunk_scores)
            # Group j of a chunk holds its columns j, j + w, j + 2w, ... (w = width / _GROUP).
            group_maxima.append(chunk_scores.view(rows, _GROUP, -1).amax(dim=1))
        n_groups = sum(maxima.shape[1] for maxima in group_maxima)
        if n_groups < 2 * self.c:  # too few groups to gain from them
            best, best_indices = _merge_chunk(chunks[0], segment_start, self.c)
            for number, chunk_scores in enumerate(chunks[1:], start=1):
                more, more_indices = _merge_chunk(chunk_scores, segment_start + number * self.chunk, self.c)
                best, best_indices = _merge(best, best_indices, more, more_indices, self.c)
            return best, best_indices
        top_groups = torch.cat(group_maxima, dim=1).topk(self.c, dim=1).indices
        # Where each chosen group's members lie in `scores` and in the corpus.
        per_chunk = self.chunk // _GROUP
        chunk_number = torch.clamp(top_groups // per_chunk, max=len(chunks) - 1)
        in_chunk = top_groups - chunk_number * per_chunk
        width = torch.where(chunk_number == len(chunks) - 1, chunks[-1].shape[1], self.chunk)
        members = torch.arange(_GROUP, device=self.device)[:, None] * (width // _GROUP)[:, None, :]
        column = (chunk_number * self.chunk + in_chunk)[:, None, :] + members  # (rows, _GROUP, c)
        row = torch.arange(rows, device=self.device)[:, None, None]
        position = (
            rows * chunk_number[:, None, :] * self.chunk + row * width[:, None, :] + in_chunk[:, None, :]
        )
        values = torch.take(scores, (position + members).reshape(rows, -1))
        best, picked = values.topk(self.c, dim=1)
        return best, column.reshape(rows, -1).gather(1, picked) + segment_start

    def _mask(self, scores: torch.Tensor, offset: int, start: int, stop: int) -> None:
        """Rule out the padding rows and, with exclude_self, each query's own row (queries from `offset`)."""
        self._mask_rows(scores, torch.arange(offset, offset + len(scores), device=self.device), start, stop)

    def _mask_rows(self, scores: torch.Tensor, query_numbers: torch.Tensor, start: int, stop: int) -> None:
        if stop > self.m:
            scores[:, max(self.m - start, 0) :] = -math.inf
        if self.exclude_self:
            own = torch.nonzero((query_numbers >= start) & (query_numbers < stop)).flatten()
            scores[own, query_numbers[own] - start] = -math.inf

    def _rescore(self, q_exact: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Exact similarities of every query with its candidates; -inf where the index is -1."""
        exact = torch.empty(candidates.shape, dtype=torch.float32, device=self.device)
        for start in range(0, len(candidates), _RESCORE_ROWS):
            rows = slice(start, start + _RESCORE_ROWS)
            picked = candidates[rows].clamp(min=0)
            vectors = self.exact.index_select(0, picked.flatten()).view(*picked.shape, self.d)
            exact[rows] = (vectors.double() * q_exact[rows, None, :].double()).sum(-1).float()
        return torch.where(candidates >= 0, exact, -math.inf)

    def _settled(self, scores: torch.Tensor, kth_exact: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        """Queries whose k-th exact similarity no corpus row outside their candidates can reach or tie."""
        if self.c == self.m:  # every corpus row is a candidate
            return torch.ones(len(scores), dtype=torch.bool, device=self.device)
        worst = scores[:, -1]
        reachable = self.bound.highest_exact(worst, margin)
        return (worst == -math.inf) | (kth_exact > reachable)

    def _search_again(
        self,
        q_exact: torch.Tensor,
        q_scan: torch.Tensor,
        unsettled: torch.Tensor,
        offset: int,
        top_scores: torch.Tensor,
        top_indices: torch.Tensor,
        margin: torch.Tensor,
        k: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-k of the unsettled queries of a block, from every corpus row that could reach their top k.

        The k-th exact similarity found so far is a lower bound on the true one, so a row whose exact
        similarity could reach it is rescored; the rest cannot be among the top k. The scan scores are the
        block's own, still in `self.scores`, when the corpus was scanned in one segment.
        """
        kth = top_scores[:, -1]
        q_unsettled = q_exact[unsettled].double()
        found = _TopPairs.of(top_scores, top_indices)
        for start in range(0, self.padded, self.chunk):
            stop = min(start + self.chunk, self.padded)
            if self.segment == self.padded:  # masked already
                rows = len(q_scan)
                scores = self.scores[rows * start : rows * stop].view(rows, stop - start)[unsettled]
            else:
                scores = q_scan[unsettled] @ self.scan[start:stop].T
                self._mask_rows(scores, unsettled + offset, start, stop)
            possible = self.bound.highest_exact(scores, margin[:, None]) >= kth[:, None]
            rows, columns = torch.nonzero(possible, as_tuple=True)
            for first in range(0, len(rows), _PAIR_BATCH):
                pair_rows = rows[first : first + _PAIR_BATCH]
                pair_columns = columns[first : first + _PAIR_BATCH] + start
                vectors = self.exact.index_select(0, pair_columns).double()
                exact = (vectors * q_unsettled[pair_rows]).sum(-1).float()
                keep = exact >= kth[pair_rows]
                found = found.add(pair_rows[keep], pair_columns[keep], exact[keep]).best(len(unsettled), k)
        return found.as_matrix(len(unsettled), k)


class _ErrorBound:
    """How far a scan score can be from the exact similarity, so that left-out rows can be ruled out.

    For x = x' + rx and y = y' + ry (x', y' rounded to the scan precision): |x.y - x'.y'| <= |x'| |ry| +
    |rx| |y'| + |rx| |ry|; the matrix multiplication adds at most gamma_d |x'| |y'| (fp32 accumulation,
    gamma_d = d u / (1 - d u)) and, in bf16, the rounding of its output, which `highest_exact` undoes by
    going halfway to the next bf16 value up. The corpus side uses the largest norms over all rows.
    """

    def __init__(self, exact: torch.Tensor, scan: torch.Tensor, dtype: torch.dtype, device: torch.device):
        self.dtype = dtype
        self.cuda = device.type == "cuda"
        norms = [
            _norms(exact[start : start + 8192], scan[start : start + 8192])
            for start in range(0, len(exact), 8192)
        ]
        self.corpus_norm, self.corpus_scan_norm, self.corpus_residual = (
            float(torch.cat(column).max()) for column in zip(*norms, strict=True)
        )
        d = exact.shape[1]
        self.gamma = d * 2.0**-24 / (1 - d * 2.0**-24)
        # Lower fp32 matmul precision settings let torch use TF32 or bf16 inside "fp32" matmuls.
        self.reduced_fp32 = dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"

    def margin(self, q_exact: torch.Tensor, q_scan: torch.Tensor) -> torch.Tensor:
        """Per query: the most its exact similarity with any corpus row can exceed the unrounded scan score."""
        norm, scan_norm, residual = (column.double() for column in _norms(q_exact, q_scan))
        bound = (
            scan_norm * self.corpus_residual
            + residual * self.corpus_scan_norm
            + residual * self.corpus_residual
            + self.gamma * scan_norm * self.corpus_scan_norm
        )
        if self.reduced_fp32:
            bound = bound + (2 * 2.0**-8 + 2.0**-16) * norm * self.corpus_norm
        if self.cuda and self.dtype == torch.bfloat16:
            # cuBLAS may reduce partial sums in bf16 (torch's allow_bf16_reduced_precision_reduction).
            bound = bound + 2.0**-8 * scan_norm * self.corpus_scan_norm * (1 + self.gamma)
        # The exact similarities are rounded to float32 from float64 sums; leave room for both roundings.
        bound = bound + 2.0**-22 * norm * self.corpus_norm
        return (bound * (1 + 2.0**-10) + 1e-30).float()

    def highest_exact(self, scores: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        """The highest exact similarity possible for scan `scores` (float32), given the queries' margins."""
        if self.dtype == torch.bfloat16:
            # Values rounded to a bf16 score lie at most halfway to the next bf16 value up.
            up = torch.nextafter(scores, torch.full_like(scores, math.inf))
            highest = (scores.float() + up.float()) / 2
        else:
            highest = scores.float()
        return highest + margin


def _norms(exact: torch.Tensor, scan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row norms of the vectors, of their scan-precision roundings, and of the rounding residuals.

    In float32: the residual of a bf16 rounding is exact in float32, and the relative error of the norms
    (below 1e-4 for any dimension under 4,000) is covered by the slack in `_ErrorBound.margin`.
    """
    scan = scan.float()
    return exact.norm(dim=1), scan.norm(dim=1), (exact - scan).norm(dim=1)


@dataclass(frozen=True)
class _TopPairs:
    """(query row, corpus index, exact similarity) triples, for queries with any number of candidates."""

    rows: torch.Tensor
    indices: torch.Tensor
    scores: torch.Tensor

    @classmethod
    def of(cls, scores: torch.Tensor, indices: torch.Tensor) -> _TopPairs:
        rows = torch.arange(len(scores), device=scores.device)[:, None].expand_as(scores)
        valid = indices >= 0
        return cls(rows[valid], indices[valid], scores[valid])

    def add(self, rows: torch.Tensor, indices: torch.Tensor, scores: torch.Tensor) -> _TopPairs:
        return _TopPairs(
            torch.cat([self.rows, rows]), torch.cat([self.indices, indices]), torch.cat([self.scores, scores])
        )

    def best(self, n_rows: int, k: int) -> _TopPairs:
        """Each row's k best distinct indices (higher score first, then lower index)."""
        order = _lexsort(self.indices, self.rows)  # by row, then index
        rows, indices, scores = self.rows[order], self.indices[order], self.scores[order]
        distinct = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
        distinct[1:] = (rows[1:] != rows[:-1]) | (indices[1:] != indices[:-1])
        rows, indices, scores = rows[distinct], indices[distinct], scores[distinct]
        order = torch.sort(-scores, stable=True).indices  # indices stay ascending among equal scores
        order = order[torch.sort(rows[order], stable=True).indices]
        rows, indices, scores = rows[order], indices[order], scores[order]
        rank = _rank_within(rows, n_rows)
        keep = rank < k
        return _TopPairs(rows[keep], indices[keep], scores[keep])

    def as_matrix(self, n_rows: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, indices) of shape (n_rows, k), padded with -inf and -1; the pairs must be `best`."""
        scores = torch.full((n_rows, k), -math.inf, dtype=torch.float32, device=self.rows.device)
        indices = torch.full((n_rows, k), -1, dtype=torch.int64, device=self.rows.device)
        rank = _rank_within(self.rows, n_rows)
        scores[self.rows, rank] = self.scores
        indices[self.rows, rank] = self.indices
        return scores, indices


def _merge_chunk(scores: torch.Tensor, start: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The c best of one chunk's scores (columns from corpus row `start`), padded with -inf."""
    best, picked = scores.topk(min(c, scores.shape[1]), dim=1)
    if best.shape[1] < c:
        best = torch.nn.functional.pad(best, (0, c - best.shape[1]), value=-math.inf)
        picked = torch.nn.functional.pad(picked, (0, c - picked.shape[1]), value=-1 - start)
    return best, picked + start


def _merge(
    best: torch.Tensor, best_indices: torch.Tensor, new: torch.Tensor, new_indices: torch.Tensor, c: int
) -> tuple[torch.Tensor, torch.Tensor]:
    values, position = torch.cat([best, new], dim=1).topk(c, dim=1)
    return values, torch.cat([best_indices, new_indices], dim=1).gather(1, position)


def _default_block_size(m: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """Queries per block for a corpus of m rows: as many as keep a block's scores within 256 MB (256-2048)."""
    rows = _SCORE_BYTES // (dtype.itemsize * max(m, 1)) // 64 * 64
    return min(max(rows, _MIN_BLOCK_SIZE), _MAX_BLOCK_SIZE)


def _segment_rows(padded: int, block_size: int, chunk: int, itemsize: int) -> int:
    """Corpus rows per segment: the whole corpus if a block's scores fit in _SCORE_BYTES, else whole chunks."""
    fits = _SCORE_BYTES // (itemsize * block_size) // chunk * chunk
    return min(padded, max(fits, chunk))


def _best_first(exact: torch.Tensor, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best candidates of every query: higher exact similarity first, then lower index; -1 last."""
    by_index = torch.where(candidates >= 0, candidates, torch.iinfo(torch.int64).max).sort(dim=1).indices
    exact = exact.gather(1, by_index)
    candidates = candidates.gather(1, by_index)
    order = torch.sort(exact, dim=1, descending=True, stable=True).indices[:, :k]
    scores = exact.gather(1, order)
    indices = candidates.gather(1, order)
    if scores.shape[1] < k:  # a corpus smaller than k
        pad = k - scores.shape[1]
        scores = torch.nn.functional.pad(scores, (0, pad), value=-math.inf)
        indices = torch.nn.functional.pad(indices, (0, pad), value=-1)
    return scores, indices


def _lexsort(minor: torch.Tensor, major: torch.Tensor) -> torch.Tensor:
    order = torch.sort(minor, stable=True).indices
    return order[torch.sort(major[order], stable=True).indices]


def _rank_within(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Each element's position among the elements of its row; `rows` must be sorted."""
    counts = torch.bincount(rows, minlength=n_rows)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(len(rows), device=rows.device) - starts[rows]


def _as_vectors(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows of vectors), got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} have dimension 0")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} row {row} holds NaN or infinity ({int(bad.sum())} such rows)")
    return array


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _candidate_dtype(candidate_precision: str, device: torch.device) -> torch.dtype:
    if candidate_precision not in CANDIDATE_PRECISIONS:
        raise ValueError(
            f"unknown candidate_precision {candidate_precision!r}; choose one of: {', '.join(CANDIDATE_PRECISIONS)}"
        )
    if candidate_precision == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    return torch.bfloat16 if candidate_precision == "bf16" else torch.float32
