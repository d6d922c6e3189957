"""Matching: similar products, text search, cross-catalogue links, duplicate clusters, index checks.

Everything an analyst can do in SQL goes through the functions of `sql/matching.sql` (`prodmatch.similar`,
`prodmatch.search`, `prodmatch.candidates`); this module calls them, stores runs in `prodmatch.match_runs` /
`prodmatch.matches` / `prodmatch.duplicate_clusters`, and adds what is better done outside the database: the exact
all-pairs search by blocked matrix multiplication (`exact.py`) for bulk linking and deduplication, one-to-one
assignment, clustering, and the recall check of the HNSW indexes. It reads vectors the worker wrote and knows
nothing of file formats.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg
from tqdm import tqdm

from prodmatch import store as db
from prodmatch.errors import ConfigError
from prodmatch.match.assign import cluster_duplicates, filter_and_rank
from prodmatch.match.candidates import ann_candidates, exact_candidates
from prodmatch.match.exact import top_k_cosine
from prodmatch.match.queries import DEFAULT_EF_SEARCH
from prodmatch.store.catalogs import catalog_id
from prodmatch.store.models import Model, get_model, space_dimension
from prodmatch.store.runs import replace_run, store_pairs, write_matches
from prodmatch.store.vectors import fetch_vectors

MODES = ("exact", "ann")
EXACT_MEMORY_BUDGET = 4 * 1024**3  # bytes of vectors both sides may take for --mode exact by default


@dataclass(frozen=True)
class LinkResult:
    """A stored link run."""

    run_id: int
    source: str
    target: str
    model: str
    mode: str
    params: dict
    sources: int
    pairs: int
    matched_sources: int
    seconds: float
    out: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DedupeResult:
    """A stored dedupe run."""

    run_id: int
    catalog: str
    model: str
    threshold: float
    products: int
    clusters: int
    duplicates: int  # products in clusters, centres included
    largest: int
    seconds: float
    method: str = "complete-linkage around the product with most near-duplicates"

    def to_dict(self) -> dict:
        return asdict(self)


# --- link -------------------------------------------------------------------------------------------------


def link(
    conn: psycopg.Connection,
    source: str,
    target: str,
    *,
    k: int = 5,
    threshold: float | None = None,
    one_to_one: bool = False,
    mode: str | None = None,
    space: str | None = None,
    model: str | None = None,
    ef_search: int | None = None,
    out: Path | None = None,
    progress: bool = False,
) -> LinkResult:
    """Every product of `source` gets its best candidates in `target`, stored as one match run.

    Without a threshold or space, the ones `prodmatch eval --save` stored with the model are used.
    """
    started = time.perf_counter()
    registered = get_model(conn, model)
    space = space or registered.settings.get("space", "fused")
    space_dimension(registered, space)
    if k < 1:
        raise ConfigError("k must be at least 1")
    if threshold is None:
        threshold = registered.settings.get("threshold")
    source_id, target_id = catalog_id(conn, source), catalog_id(conn, target)
    db.analyze_if_stale(conn)
    counts = _embedded_counts(conn, registered, (source_id, target_id))
    mode = mode or choose_mode(counts[source_id] + counts[target_id], space_dimension(registered, space))
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose exact or ann")
    params = {
        "k": k,
        "threshold": threshold,
        "one_to_one": one_to_one,
        "mode": mode,
        "space": space,
        "ef_search": (ef_search or DEFAULT_EF_SEARCH) if mode == "ann" else None,  # the value used
    }
    bar = tqdm(
        total=counts[source_id], unit="product", desc=f"link {source} -> {target}", disable=not progress
    )
    with bar:
        if mode == "exact":
            pairs = exact_candidates(conn, registered, space, source_id, target_id, k, bar.update)
        else:
            pairs = ann_candidates(
                conn, registered, space, source, target, k, params["ef_search"], bar.update
            )
    pairs = filter_and_rank(pairs, threshold, one_to_one)
    with conn.transaction():
        run_id = replace_run(conn, "link", source_id, target_id, registered, params)
        store_pairs(conn, run_id, pairs)
    result = LinkResult(
        run_id=run_id,
        source=source,
        target=target,
        model=registered.name,
        mode=mode,
        params=params,
        sources=counts[source_id],
        pairs=len(pairs.sources),
        matched_sources=len(np.unique(pairs.sources)),
        seconds=round(time.perf_counter() - started, 3),
        out=str(out) if out else None,
    )
    if out is not None:
        write_matches(conn, run_id, out)
    return result


def choose_mode(products: int, dimension: int, budget: int = EXACT_MEMORY_BUDGET) -> str:
    """Exact when both catalogues' vectors fit the memory budget (faster and complete for bulk work)."""
    return "exact" if products * dimension * 4 * 2 <= budget else "ann"


# --- dedupe -----------------------------------------------------------------------------------------------


def dedupe(
    conn: psycopg.Connection,
    catalog: str,
    threshold: float,
    *,
    model: str | None = None,
    space: str = "fused",
    k: int = 20,
    progress: bool = False,
) -> DedupeResult:
    """Group near-duplicate products of one catalogue into clusters, stored as a dedupe run.

    Method (no chaining): candidates are each product's k nearest neighbours (exact search) at or above the
    threshold. Products are taken in order of how many such neighbours they have; each unassigned one becomes a
    centre, and its neighbours join its cluster, most similar first, only if they pass the threshold against
    EVERY member already in the cluster (complete linkage). So A~B, B~C but A!~C never puts A and C together,
    and a cluster holds at most k + 1 products.
    """
    started = time.perf_counter()
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be a cosine similarity between -1 and 1, got {threshold}")
    registered = get_model(conn, model)
    dedupe_catalog = catalog_id(conn, catalog)
    ids, vectors = fetch_vectors(conn, registered, space, dedupe_catalog)
    bar = tqdm(total=len(ids), unit="product", desc=f"dedupe {catalog}", disable=not progress)
    with bar:
        found = top_k_cosine(
            vectors, vectors, min(k, max(len(ids) - 1, 1)), exclude_self=True, progress=bar.update
        )
    clusters = cluster_duplicates(vectors, found.indices, found.similarities, threshold)
    params = {"threshold": threshold, "space": space, "k": k}
    with conn.transaction():
        run_id = replace_run(conn, "dedupe", dedupe_catalog, None, registered, params)
        with conn.cursor().copy(
            "COPY prodmatch.duplicate_clusters (run_id, cluster_id, product_id, is_centre, similarity)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int4", "int8", "bool", "float4"])
            for number, members in enumerate(clusters, start=1):
                centre = members[0]
                for member in members:
                    similarity = float(vectors[centre] @ vectors[member])
                    copy.write_row((run_id, number, int(ids[member]), member == centre, similarity))
    return DedupeResult(
        run_id=run_id,
        catalog=catalog,
        model=registered.name,
        threshold=threshold,
        products=len(ids),
        clusters=len(clusters),
        duplicates=sum(len(c) for c in clusters),
        largest=max((len(c) for c in clusters), default=0),
        seconds=round(time.perf_counter() - started, 3),
    )


def _embedded_counts(conn: psycopg.Connection, model: Model, catalog_ids: tuple[int, ...]) -> dict[int, int]:
    counts = dict.fromkeys(catalog_ids, 0)
    for catalog, n in conn.execute(
        "SELECT p.catalog_id, count(*) FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
        " WHERE e.model_id = %s AND e.fused_vector IS NOT NULL AND p.catalog_id = ANY(%s) GROUP BY 1",
        (model.id, list(catalog_ids)),
    ):
        counts[catalog] = n
    return counts
