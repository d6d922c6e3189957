"""The memory guard of the in-memory matching work: how much exact link, dedupe and index check will take at
their peak, and whether that fits the machine.

An exact link holds both catalogues' vectors (all three spaces), the corpus again in the scan precision, a score
buffer and the pairs; on a container with a memory limit, a link that does not fit is killed by the kernel with no
message. So each operation estimates its peak before it fetches anything (`exact_link_peak_bytes`, ...) from the
row counts and the buffers `match.exact` and `store.vectors` really allocate, and compares it with
`hardware.memory_budget` (the cgroup limit or MemAvailable; the PRODMATCH_MEMORY_BUDGET setting overrides).
`match.link` then switches to ANN with a note, or refuses `--mode exact` with a message; dedupe and index check,
which have no ANN path, refuse with a message. benchmarks/memory.py measures the peaks against these estimates.

The lexical link, the matcher link (the default, built-in one included) and `link --watch` read each catalogue's
lexical rows (sparse hashed n-grams) instead: their estimates (`lexical_link_peak_bytes`,
`matcher_link_peak_bytes`, `watch_peak_bytes`) start from `catalog_sizes` (products, stored lexical non-zeros and
row bytes per catalogue, one aggregate query) and are checked against measured peaks by
benchmarks/memory_guard.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from prodmatch.errors import MemoryBudgetError
from prodmatch.hardware import MemoryBudget, format_bytes, usable_cores
from prodmatch.match.exact import top_k_peak_bytes
from prodmatch.match.hybrid import (  # how the lexical top-k sizes its blocks and rescoring chunks
    _DOT_CHUNK,
    _LEXICAL_BLOCK,
    _LEXICAL_BLOCK_CELLS,
    _LEXICAL_MAX_WORKERS,
)
from prodmatch.store.models import SPACES, Model, space_dimension
from prodmatch.store.schema import LEXICAL_DIMENSIONS
from prodmatch.store.vectors import copy_bytes_peak

# Bytes per candidate pair after the search: ids, rank, the similarity of every space, the lexical similarity,
# the accepted flag, and the copies filter_and_rank and the COPY into prodmatch.matches make.
_PAIR_BYTES = 160
_CLUSTER_PAIR_BYTES = 48  # dedupe: the neighbour lists cluster_duplicates walks
_ROW_DOT_ROWS = 65536  # candidates._row_dots gathers this many pairs of rows at a time
# The lexical rows of both catalogues, parsed for the pairs' lexical similarity (about 1 KiB a product title).
_LEXICAL_PRODUCT_BYTES = 1024
# What torch, numpy and psycopg allocate besides (thread pools, small temporaries), measured on small inputs.
_FIXED_BYTES = 48 * 2**20
# Lexical rows (hybrid.py `_lexical_matrix`): a stored non-zero is 8 bytes of binary COPY; parsing it gathers
# int64 offsets, positions and byte windows (about 80 bytes at the peak, with the COPY bytes held twice while
# joined); the CSR matrix then keeps 8 (int32 index, float32 weight). A row costs its COPY framing, three Python
# list entries and its ids / indptr.
_LEXICAL_READ_NNZ_BYTES = 100
_LEXICAL_HELD_NNZ_BYTES = 8
_LEXICAL_READ_ROW_BYTES = 200
_LEXICAL_HELD_ROW_BYTES = 24
# One cell (a source x a target it reaches) of a block of the lexical top-k: the sparse product's entry, its row
# number, the padded top-k buffer and the positions within rows.
_LEXICAL_CELL_BYTES = 48
# A hybrid candidate pair through features and scoring: its proposals, the union, ~35-60 float32 feature columns
# (and their per-product sources, ranks and context columns), the float64 copy a matcher scores, and the stored
# pair's object column of product signals. Calibrated on benchmarks/memory_guard.py.
_HYBRID_PAIR_BYTES = 3072
_HYBRID_PROPOSALS = (
    2  # candidate sources without a model: lexical and codes (codes propose at most k each, typ.)
)
# A product's mapping for the product signals (hybrid._products): Python dict, strings and attributes, beyond
# its stored row's bytes (counted twice: str objects of non-ASCII text are wider than UTF-8).
_PRODUCT_BYTES = 2048


def exact_link_peak_bytes(sources: int, targets: int, model: Model, space: str, k: int) -> int:
    """Peak bytes of an exact vector link: both sides' vectors of every space, held throughout, plus the larger
    of the search (its buffers are freed when it returns) and the pairs' phase (every space's similarity, the
    lexical similarity)."""
    dims = [space_dimension(model, s) for s in SPACES]
    d = space_dimension(model, space)
    vectors = (sources + targets) * (8 + 4 * sum(dims)) + copy_bytes_peak(dims)
    search = top_k_peak_bytes(sources, targets, d, k)
    pairs = sources * k
    pair_phase = (
        pairs * _PAIR_BYTES
        + 2 * min(pairs, _ROW_DOT_ROWS) * 4 * max(dims)
        + (sources + targets) * _LEXICAL_PRODUCT_BYTES
    )
    return vectors + max(search, pair_phase) + _FIXED_BYTES


def dedupe_peak_bytes(products: int, model: Model, space: str, k: int) -> int:
    """Peak bytes of a dedupe: one space's vectors, then the larger of the search of the catalogue against
    itself and the clustering of its neighbour lists."""
    d = space_dimension(model, space)
    vectors = products * (8 + 4 * d) + copy_bytes_peak([d])
    search = top_k_peak_bytes(products, products, d, k)
    return vectors + max(search, products * k * _CLUSTER_PAIR_BYTES) + products * k * 12 + _FIXED_BYTES


def index_check_peak_bytes(products: int, sample: int, model: Model, space: str, k: int) -> int:
    """Peak bytes of an index check: the product ids, the sample's vectors, one streamed block and its scores."""
    d = space_dimension(model, space)
    block_rows = copy_bytes_peak([d]) // (8 + 4 * d) + 1
    return products * 8 + sample * d * 4 + copy_bytes_peak([d]) + 3 * block_rows * sample * 4 + _FIXED_BYTES


@dataclass(frozen=True)
class CatalogSize:
    """What the lexical and matcher estimates read of a catalogue: products, the stored lexical non-zeros (an
    upper bound: the sparsevec's stored bytes / 8) and the products' stored row bytes."""

    products: int
    lexical_nonzeros: int
    row_bytes: int


def catalog_sizes(conn: psycopg.Connection, catalog_ids: tuple[int, ...]) -> dict[int, CatalogSize]:
    """`CatalogSize` of each catalogue, from one aggregate query (no vector or text is fetched)."""
    sizes = dict.fromkeys(catalog_ids, CatalogSize(0, 0, 0))
    for catalog, products, stored, row_bytes in conn.execute(
        "SELECT p.catalog_id, count(*), coalesce(sum(pg_column_size(l.vector)), 0),"
        " coalesce(sum(pg_column_size(p.*)), 0)"
        " FROM prodmatch.products p LEFT JOIN prodmatch.lexical l ON l.product_id = p.id"
        " WHERE p.catalog_id = ANY(%s) GROUP BY 1",
        (list(catalog_ids),),
    ):
        sizes[catalog] = CatalogSize(int(products), int(stored) // 8, int(row_bytes))
    conn.commit()
    return sizes


def lexical_link_peak_bytes(source: CatalogSize, target: CatalogSize, k: int) -> int:
    """Peak bytes of `link --space lexical`: both catalogues' lexical rows, held throughout (the larger side's
    parse at its peak on top), plus the larger of the top-k (postings, query terms, the blocks in flight, the
    exact rescoring) and the pairs' phase.

        held   = 8 nnz_s + 8 nnz_t + 24 (n_s + n_t)
        read   = 100 nnz + 200 n of the larger catalogue (COPY bytes, offsets, windows)
        top-k  = 8 nnz_t + 4 * 2^20 (postings) + 16 nnz_s (query terms) + 48 cells (in-flight blocks:
                 workers x min(256, 2^25 / (workers n_t)) sources x n_t targets)
                 + 16 n_s k + 16 min(n_s k, 65,536)(nnz_s / n_s + nnz_t / n_t) (rescoring chunk:
                 both sides' rows of the pairs and their product)
        pairs  = 160 n_s k
        peak   = held + max(read, top-k, pairs) + 48 MiB
    """
    return (
        _lexical_held(source, target)
        + max(
            _lexical_read(source, target),
            _lexical_top_k(source, target, k),
            source.products * k * _PAIR_BYTES,
        )
        + _FIXED_BYTES
    )


def matcher_link_peak_bytes(source: CatalogSize, target: CatalogSize, model: Model | None, k: int) -> int:
    """Peak bytes of a matcher link (`hybrid.gather` at depth `k`, features, scoring; the default built-in link
    too): the lexical rows and top-k as `lexical_link_peak_bytes`, every space's vectors and exact top-k when a
    model's spaces are gathered, then the candidate pairs with their features and the products they name.

        pairs    P = n_s k (lexical + codes + one per model space)
        vectors  = (n_s + n_t)(8 + 4 sum(dims)) + the largest space's exact top-k
        pairs'   = 3072 P + (n_s + n_t)(2048 + 2 row bytes)
        peak     = held lexical + vectors + max(read, top-k, pairs') + 48 MiB
    """
    proposals = _HYBRID_PROPOSALS
    vectors = 0
    if model is not None:
        dims = [space_dimension(model, s) for s in SPACES]
        proposals += len(SPACES)
        vectors = (source.products + target.products) * (8 + 4 * sum(dims)) + copy_bytes_peak(dims)
        vectors += max(top_k_peak_bytes(source.products, target.products, d, k) for d in dims)
    pairs = source.products * k * proposals
    pair_phase = (
        pairs * _HYBRID_PAIR_BYTES
        + (source.products + target.products) * _PRODUCT_BYTES
        + 2 * (source.row_bytes + target.row_bytes)
    )
    return (
        _lexical_held(source, target)
        + vectors
        + max(_lexical_read(source, target), _lexical_top_k(source, target, k), pair_phase)
        + _FIXED_BYTES
    )


def watch_peak_bytes(
    link_peak: int, source: CatalogSize, target: CatalogSize, model: Model | None, k: int
) -> int:
    """Peak bytes of `link --watch` on a run whose link peaks at `link_peak`: its first pass recomputes the whole
    run as the link did, while it keeps, for every later pass, both catalogues' lexical rows, every candidate
    (and the stored pairs) with their signals, the products they name and, with a model, both sides' vectors.

        resident = held lexical + 2 x 3072 n_s k (candidates, stored pairs) + (n_s + n_t)(2048 + 2 row bytes)
                   + (n_s + n_t)(8 + 4 sum(dims))
        peak     = link peak + resident
    """
    vectors = 0
    if model is not None:
        dims = [space_dimension(model, s) for s in SPACES]
        vectors = (source.products + target.products) * (8 + 4 * sum(dims))
    resident = (
        _lexical_held(source, target)
        + 2 * source.products * k * _HYBRID_PAIR_BYTES
        + (source.products + target.products) * _PRODUCT_BYTES
        + 2 * (source.row_bytes + target.row_bytes)
        + vectors
    )
    return link_peak + resident


def _lexical_held(source: CatalogSize, target: CatalogSize) -> int:
    return (source.lexical_nonzeros + target.lexical_nonzeros) * _LEXICAL_HELD_NNZ_BYTES + (
        source.products + target.products
    ) * _LEXICAL_HELD_ROW_BYTES


def _lexical_read(source: CatalogSize, target: CatalogSize) -> int:
    larger = max(source, target, key=lambda c: c.lexical_nonzeros)
    return larger.lexical_nonzeros * _LEXICAL_READ_NNZ_BYTES + larger.products * _LEXICAL_READ_ROW_BYTES


def _lexical_top_k(source: CatalogSize, target: CatalogSize, k: int) -> int:
    n_s, n_t = source.products, max(target.products, 1)
    workers = max(1, min(usable_cores(), _LEXICAL_MAX_WORKERS, -(-n_s // 16)))
    block_rows = max(16, min(_LEXICAL_BLOCK, _LEXICAL_BLOCK_CELLS // (workers * n_t)))
    in_flight = min(workers, -(-n_s // block_rows)) * min(block_rows, n_s) * n_t
    mean_terms = source.lexical_nonzeros / max(n_s, 1) + target.lexical_nonzeros / n_t
    return int(
        target.lexical_nonzeros * _LEXICAL_HELD_NNZ_BYTES
        + (LEXICAL_DIMENSIONS + 1) * 4
        + 2 * source.lexical_nonzeros * _LEXICAL_HELD_NNZ_BYTES
        + in_flight * _LEXICAL_CELL_BYTES
        + n_s * k * 16
        + min(n_s * k, _DOT_CHUNK) * 16 * mean_terms
    )


def require_fits(what: str, estimate: int, budget: MemoryBudget, advice: str) -> None:
    """Raise MemoryBudgetError when `estimate` bytes exceed the budget, saying both figures and what to do."""
    if estimate > budget.bytes:
        raise MemoryBudgetError(
            f"{what} would need about {format_bytes(estimate)} of memory, more than the budget of "
            f"{budget.to_text()}; {advice}, or set PRODMATCH_MEMORY_BUDGET if this machine really has the memory"
        )
