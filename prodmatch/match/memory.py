"""The memory guard of the in-memory matching work: how much exact link, dedupe and index check will take at
their peak, and whether that fits the machine.

An exact link holds both catalogues' vectors (all three spaces), the corpus again in the scan precision, a score
buffer and the pairs; on a container with a memory limit, a link that does not fit is killed by the kernel with no
message. So each operation estimates its peak before it fetches anything (`exact_link_peak_bytes`, ...) from the
row counts and the buffers `match.exact` and `store.vectors` really allocate, and compares it with
`hardware.memory_budget` (the cgroup limit or MemAvailable; the PRODMATCH_MEMORY_BUDGET setting overrides).
`match.link` then switches to ANN with a note, or refuses `--mode exact` with a message; dedupe and index check,
which have no ANN path, refuse with a message. benchmarks/memory.py measures the peaks against these estimates.
"""

from __future__ import annotations

from prodmatch.errors import ProdmatchError
from prodmatch.hardware import MemoryBudget, format_bytes
from prodmatch.match.exact import top_k_peak_bytes
from prodmatch.store.models import SPACES, Model, space_dimension
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


def require_fits(what: str, estimate: int, budget: MemoryBudget, advice: str) -> None:
    """Raise ProdmatchError when `estimate` bytes exceed the budget, saying both figures and what to do."""
    if estimate > budget.bytes:
        raise ProdmatchError(
            f"{what} would need about {format_bytes(estimate)} of memory, more than the budget of "
            f"{budget.to_text()}; {advice}, or set PRODMATCH_MEMORY_BUDGET if this machine really has the memory"
        )
