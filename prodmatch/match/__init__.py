"""match: similar products, text search, cross-catalogue links, duplicate clusters and index checks.

The stages of a link, each in its own module: `candidates` (nearest neighbours per space) -> `pairs`
(CandidatePairs, the value with named signal columns that travels between stages) -> `assign` (threshold,
one-to-one, ranks) -> `store.runs` (the stored run). `link` wires them for `link` and `dedupe`; `queries` calls the
SQL API (`similar`, `search`); `exact` is the blocked-GEMM exact top-k; `index_check` measures HNSW recall.
"""

from prodmatch.match.index_check import IndexCheck, check_index
from prodmatch.match.link import DedupeResult, LinkResult, choose_mode, dedupe, link
from prodmatch.match.pairs import CandidatePairs
from prodmatch.match.queries import (
    DEFAULT_EF_SEARCH,
    Neighbour,
    QueriedProduct,
    SearchHit,
    SpaceChoice,
    default_space,
    queried_product,
    search,
    similar,
)

__all__ = [
    "DEFAULT_EF_SEARCH",
    "CandidatePairs",
    "DedupeResult",
    "IndexCheck",
    "LinkResult",
    "Neighbour",
    "QueriedProduct",
    "SearchHit",
    "SpaceChoice",
    "check_index",
    "choose_mode",
    "dedupe",
    "default_space",
    "link",
    "queried_product",
    "search",
    "similar",
]
