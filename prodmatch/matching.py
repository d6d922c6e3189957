"""Matching: similar products, text search, cross-catalogue links, duplicate clusters, index checks.

Everything an analyst can do in SQL goes through the functions of `sql/matching.sql` (`prodmatch.similar`,
`prodmatch.search`, `prodmatch.candidates`); this module calls them, stores runs in `prodmatch.match_runs` /
`prodmatch.matches` / `prodmatch.duplicate_clusters`, and adds what is better done outside the database: the exact
all-pairs search by blocked matrix multiplication (`exact.py`) for bulk linking and deduplication, one-to-one
assignment, clustering, and the recall check of the HNSW indexes. It reads vectors the worker wrote and knows
nothing of file formats.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from tqdm import tqdm

from prodmatch import db
from prodmatch.errors import ConfigError, ProdmatchError
from prodmatch.exact import top_k_cosine
from prodmatch.models import Model, get_model, space_dimension, vector_expression, vector_type

MODES = ("exact", "ann")
DEFAULT_EF_SEARCH = 100
EXACT_MEMORY_BUDGET = 4 * 1024**3  # bytes of vectors both sides may take for --mode exact by default
ANN_CHUNK = 200  # source products per prodmatch.candidates() call, for progress


@dataclass(frozen=True)
class Neighbour:
    """One row of prodmatch.similar()."""

    product_id: int
    catalog: str
    external_id: str
    title: str | None
    brand: str | None
    price: float | None
    fused_similarity: float | None
    image_similarity: float | None
    text_similarity: float | None


@dataclass(frozen=True)
class SearchHit:
    """One row of prodmatch.search()."""

    product_id: int
    catalog: str
    external_id: str
    title: str | None
    brand: str | None
    price: float | None
    similarity: float


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


@dataclass(frozen=True)
class IndexCheck:
    """Recall of a model's HNSW index against exact search, per ef_search."""

    model: str
    space: str
    k: int
    sample: int
    rows: list[dict]
    recommended_ef_search: int | None
    target_recall: float = 0.99

    def to_dict(self) -> dict:
        return asdict(self)


# --- single queries ---------------------------------------------------------------------------------------


def find_product(conn: psycopg.Connection, catalog: str, external_id: str) -> int:
    """The product id of CATALOG:EXTERNAL_ID."""
    row = conn.execute(
        "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = %s AND p.external_id = %s",
        (catalog, external_id),
    ).fetchone()
    if row is None:
        raise ConfigError(f"no product {catalog}:{external_id}")
    return row[0]


def parse_product_ref(ref: str) -> tuple[str, str]:
    """'CATALOG:EXTERNAL_ID' -> (catalog, external_id); the id may itself contain colons."""
    catalog, sep, external_id = ref.partition(":")
    if not sep or not catalog or not external_id:
        raise ConfigError(f"{ref!r}: expected CATALOG:EXTERNAL_ID, e.g. shop:SKU-123")
    return catalog, external_id


def similar(
    conn: psycopg.Connection,
    product_id: int,
    *,
    k: int = 10,
    space: str = "fused",
    model: str | None = None,
    in_catalog: str | None = None,
    other_catalog: bool = False,
    same_category: bool = False,
    same_brand: bool = False,
    min_price_ratio: float | None = None,
    max_price_ratio: float | None = None,
    unmatched_only: bool = False,
    ef_search: int | None = None,
) -> list[Neighbour]:
    """The k products most similar to `product_id` (prodmatch.similar)."""
    with _sql_errors(), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM prodmatch.similar(%s::bigint, k => %s::int, space => %s::text, model => %s::text,"
            " in_catalog => %s::text, other_catalog => %s, same_category => %s, same_brand => %s,"
            " min_price_ratio => %s::numeric, max_price_ratio => %s::numeric, unmatched_only => %s,"
            " ef_search => %s::int)",
            (
                product_id,
                k,
                space,
                model,
                in_catalog,
                other_catalog,
                same_category,
                same_brand,
                min_price_ratio,
                max_price_ratio,
                unmatched_only,
                ef_search or DEFAULT_EF_SEARCH,
            ),
        ).fetchall()
    return [Neighbour(**_plain(r)) for r in rows]


def search(
    conn: psycopg.Connection,
    query: str,
    *,
    k: int = 10,
    space: str = "image",
    model: str | None = None,
    in_catalog: str | None = None,
    ef_search: int | None = None,
    encoder=None,
    precision: str = "auto",
) -> list[SearchHit]:
    """Products nearest to a text query embedded by the model's text tower (text -> image by default)."""
    from prodmatch.encoders import Encoder
    from prodmatch.fusion import fuse

    registered = get_model(conn, model)
    if not query.strip():
        raise ConfigError("the search text is empty")
    encoder = encoder or Encoder.load(registered.source, revision=registered.revision, precision=precision)
    text_vector = encoder.embed_texts([query])[0]
    if space == "fused":
        vector = fuse(
            None, text_vector[None, :], method=registered.fusion, image_weight=registered.image_weight
        )[0]
    else:
        vector = text_vector
    with _sql_errors(), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM prodmatch.search(%s::vector, k => %s::int, space => %s::text, model => %s::text,"
            " in_catalog => %s::text, ef_search => %s::int)",
            (vector, k, space, registered.name, in_catalog, ef_search or DEFAULT_EF_SEARCH),
        ).fetchall()
    return [SearchHit(**_plain(r)) for r in rows]


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
    source_id, target_id = _catalog_id(conn, source), _catalog_id(conn, target)
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
            pairs = _exact_candidates(conn, registered, space, source_id, target_id, k, bar.update)
        else:
            pairs = _ann_candidates(
                conn, registered, space, source, target, k, params["ef_search"], bar.update
            )
    pairs = _filter_and_rank(pairs, threshold, one_to_one)
    with conn.transaction():
        run_id = _replace_run(conn, "link", source_id, target_id, registered, params)
        _store_pairs(conn, run_id, pairs)
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


def write_matches(conn: psycopg.Connection, run_id: int, out: Path) -> None:
    """Write a run's pairs (prodmatch.matches_v columns) as CSV, or JSONL when the name ends in .jsonl."""
    out = Path(out)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM prodmatch.matches_v WHERE run_id = %s ORDER BY source_external_id, rank", (run_id,)
        )
        rows = (_plain(r) for r in cur)
        with open(out, "w", encoding="utf-8", newline="") as f:
            if out.suffix.lower() in (".jsonl", ".ndjson"):
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            else:
                writer = None
                for row in rows:
                    if writer is None:
                        writer = csv.DictWriter(f, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)


SPACES = ("fused", "image", "text")


@dataclass
class _Pairs:
    """Candidate pairs as parallel arrays: product ids, the ranking space's similarity, all three similarities."""

    sources: np.ndarray
    targets: np.ndarray
    score: np.ndarray
    similarities: np.ndarray  # (n, 3): fused, image, text; NaN where a product lacks that vector
    ranks: np.ndarray | None = None

    def take(self, keep: np.ndarray) -> _Pairs:
        return _Pairs(self.sources[keep], self.targets[keep], self.score[keep], self.similarities[keep])


def _exact_candidates(
    conn, model: Model, space: str, source_id: int, target_id: int, k: int, advance: Callable[[int], None]
) -> _Pairs:
    source_ids, source = fetch_spaces(conn, model, source_id, space)
    target_ids, target = fetch_spaces(conn, model, target_id, space)
    found = top_k_cosine(source[space], target[space], k, progress=advance)
    rows, cols = np.nonzero(found.indices >= 0)
    columns = found.indices[rows, cols]
    similarities = np.stack(
        [_row_dots(source[name], rows, target[name], columns) for name in SPACES], axis=1
    ).astype(np.float32)
    return _Pairs(source_ids[rows], target_ids[columns], found.similarities[rows, cols], similarities)


def _row_dots(left: np.ndarray, rows: np.ndarray, right: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Dot products of paired rows, in chunks to bound memory; NaN rows give NaN."""
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), 65536):
        r, c = rows[start : start + 65536], columns[start : start + 65536]
        out[start : start + 65536] = np.einsum("ij,ij->i", left[r], right[c])
    return out


def _ann_candidates(
    conn,
    model: Model,
    space: str,
    source: str,
    target: str,
    k: int,
    ef_search: int,
    advance: Callable[[int], None],
) -> _Pairs:
    ids = [
        r[0]
        for r in conn.execute(
            sql.SQL(
                "SELECT e.product_id FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
                " JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                " WHERE e.model_id = %s AND c.name = %s AND {} IS NOT NULL ORDER BY 1"
            ).format(vector_expression(model, space)),
            (model.id, source),
        )
    ]
    rows = []
    for start in range(0, len(ids), ANN_CHUNK):
        chunk = ids[start : start + ANN_CHUNK]
        with _sql_errors(), conn.transaction():
            rows += conn.execute(
                "SELECT source_product_id, target_product_id, fused_similarity, image_similarity, text_similarity"
                " FROM prodmatch.candidates(%s::text, %s::text, k => %s::int, space => %s::text,"
                " model => %s::text, ef_search => %s::int, source_ids => %s::bigint[])",
                (source, target, k, space, model.name, ef_search, chunk),
            ).fetchall()
        advance(len(chunk))
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    similarities = np.nan_to_num(table[:, 2:5], nan=np.nan).astype(np.float32)
    return _Pairs(
        table[:, 0].astype(np.int64),
        table[:, 1].astype(np.int64),
        similarities[:, SPACES.index(space)],
        similarities,
    )


def _filter_and_rank(pairs: _Pairs, threshold: float | None, one_to_one: bool) -> _Pairs:
    """Drop pairs under the threshold, optionally keep a one-to-one assignment, and rank per source."""
    if threshold is not None:
        pairs = pairs.take(pairs.score >= threshold)
    if one_to_one:
        pairs = pairs.take(_greedy_assignment(pairs.sources, pairs.targets, pairs.score))
    pairs = pairs.take(np.lexsort((pairs.targets, -pairs.score, pairs.sources)))  # per source: best first
    starts = (
        np.r_[True, pairs.sources[1:] != pairs.sources[:-1]] if len(pairs.sources) else np.array([], bool)
    )
    group_start = (
        np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0)) if len(starts) else starts
    )
    pairs.ranks = (np.arange(len(starts)) - group_start + 1).astype(np.int64)
    return pairs


def _greedy_assignment(sources: np.ndarray, targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mutual one-to-one matching: take pairs from the most similar down; each source and target once."""
    order = np.lexsort((targets, sources, -scores))
    used_sources: set[int] = set()
    used_targets: set[int] = set()
    keep = []
    for i in order:
        s, t = int(sources[i]), int(targets[i])
        if s in used_sources or t in used_targets:
            continue
        used_sources.add(s)
        used_targets.add(t)
        keep.append(i)
    return np.array(keep, dtype=np.int64)


def _store_pairs(conn: psycopg.Connection, run_id: int, pairs: _Pairs) -> None:
    """One binary COPY of the ranked pairs with their three similarities (NULL where a vector is missing)."""
    names = [f"{space}_similarity" for space in SPACES]
    missing = np.isnan(pairs.similarities)
    # A space missing for every pair is left out (NULL by default); NaN becomes None only where it occurs.
    present = [i for i in range(len(SPACES)) if not missing[:, i].all()]
    columns = sql.SQL(", ").join(sql.Identifier(names[i]) for i in present)
    query = sql.SQL(
        "COPY prodmatch.matches (run_id, source_product_id, target_product_id, rank{comma}{columns})"
        " FROM STDIN (FORMAT BINARY)"
    ).format(comma=sql.SQL(", " if present else ""), columns=columns)
    similarities = pairs.similarities[:, present].tolist()
    if missing[:, present].any():
        similarities = [[None if v != v else v for v in row] for row in similarities]  # NaN != NaN
    with conn.cursor().copy(query) as copy:
        copy.set_types(["int8", "int8", "int8", "int2", *["float4"] * len(present)])
        for s, t, rank, values in zip(
            pairs.sources.tolist(), pairs.targets.tolist(), pairs.ranks.tolist(), similarities, strict=True
        ):
            copy.write_row((run_id, s, t, rank, *values))


def _replace_run(
    conn: psycopg.Connection, kind: str, source_id: int, target_id: int | None, model: Model, params: dict
) -> int:
    """A new run id; an earlier run with the same parameters is deleted with its pairs (re-runs replace)."""
    conn.execute(
        "DELETE FROM prodmatch.match_runs WHERE kind = %s AND source_catalog_id = %s"
        " AND target_catalog_id IS NOT DISTINCT FROM %s AND model_id = %s AND params = %s",
        (kind, source_id, target_id, model.id, Jsonb(params)),
    )
    return conn.execute(
        "INSERT INTO prodmatch.match_runs (kind, source_catalog_id, target_catalog_id, model_id, params)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (kind, source_id, target_id, model.id, Jsonb(params)),
    ).fetchone()[0]


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
    catalog_id = _catalog_id(conn, catalog)
    ids, vectors = fetch_vectors(conn, registered, space, catalog_id)
    bar = tqdm(total=len(ids), unit="product", desc=f"dedupe {catalog}", disable=not progress)
    with bar:
        found = top_k_cosine(
            vectors, vectors, min(k, max(len(ids) - 1, 1)), exclude_self=True, progress=bar.update
        )
    clusters = cluster_duplicates(vectors, found.indices, found.similarities, threshold)
    params = {"threshold": threshold, "space": space, "k": k}
    with conn.transaction():
        run_id = _replace_run(conn, "dedupe", catalog_id, None, registered, params)
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


def cluster_duplicates(
    vectors: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray, threshold: float
) -> list[list[int]]:
    """Clusters (lists of row indices, centre first) in which every pair is at least `threshold` similar."""
    passing = (neighbours >= 0) & (similarities >= threshold)
    degree = passing.sum(axis=1)
    order = sorted(range(len(vectors)), key=lambda i: (-int(degree[i]), i))
    assigned = np.zeros(len(vectors), dtype=bool)
    clusters = []
    for centre in order:
        if assigned[centre] or degree[centre] == 0:
            continue
        members = [centre]
        for j, ok in zip(neighbours[centre], passing[centre], strict=True):
            if not ok or assigned[j] or j == centre:
                continue
            if np.all(vectors[members] @ vectors[j] >= threshold):
                members.append(int(j))
        if len(members) > 1:
            assigned[members] = True
            clusters.append(members)
    return clusters


# --- index check ------------------------------------------------------------------------------------------


def check_index(
    conn: psycopg.Connection,
    *,
    model: str | None = None,
    space: str = "fused",
    sample: int = 100,
    k: int = 10,
    ef_values: tuple[int, ...] = (10, 20, 40, 80, 100, 200, 400),
    target_recall: float = 0.99,
    seed: int = 0,
) -> IndexCheck:
    """Recall@k of the model's HNSW index against exact search on a sample of real products, per ef_search."""
    registered = get_model(conn, model)
    ids, vectors = fetch_vectors(conn, registered, space, None)
    if len(ids) < 2:
        raise ProdmatchError(f"model {registered.name} has fewer than 2 embedded products; nothing to check")
    rng = random.Random(seed)
    queries = sorted(rng.sample(range(len(ids)), min(sample, len(ids))))
    k = min(k, len(ids) - 1)
    dim = space_dimension(registered, space)
    query_sql = sql.SQL(
        "SELECT e.product_id, 1 - ({expr} <=> %s::{type}({dim})) FROM prodmatch.embeddings e"
        " WHERE e.model_id = {model} AND e.product_id <> %s ORDER BY {expr} <=> %s::{type}({dim}) LIMIT %s"
    ).format(
        expr=vector_expression(registered, space),
        type=sql.SQL(vector_type(dim)),
        dim=sql.Literal(dim),
        model=sql.Literal(registered.id),
    )
    # The exact k-th best similarity of each query; a returned product counts as found when it is at least as
    # similar (so ties among exact duplicates do not count as misses).
    kth_best = []
    for q in queries:
        sims = vectors @ vectors[q]
        sims[q] = -np.inf
        kth_best.append(float(np.partition(sims, -k)[-k]))
    rows = []
    for ef in ef_values:
        recalls, latencies = [], []
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef)))
            for q, floor in zip(queries, kth_best, strict=True):
                started = time.perf_counter()
                got = conn.execute(query_sql, (vectors[q], int(ids[q]), vectors[q], k)).fetchall()
                latencies.append(time.perf_counter() - started)
                recalls.append(sum(1 for _, sim in got if sim >= floor - 1e-5) / k)
        rows.append(
            {
                "ef_search": ef,
                "recall": round(float(np.mean(recalls)), 4),
                "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
                "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
            }
        )
    recommended = next((r["ef_search"] for r in rows if r["recall"] >= target_recall), None)
    return IndexCheck(registered.name, space, k, len(queries), rows, recommended, target_recall)


# --- vectors out of the database --------------------------------------------------------------------------


def fetch_vectors(
    conn: psycopg.Connection, model: Model, space: str, catalog_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(product ids, (n, d) float32 vectors) of one space, for products that have it, ordered by id."""
    ids, vectors = fetch_spaces(conn, model, catalog_id, space, also=())
    return ids, vectors[space]


def fetch_spaces(
    conn: psycopg.Connection,
    model: Model,
    catalog_id: int | None,
    space: str,
    also: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Product ids (having a `space` vector) and their vectors of `space` and `also` (default: all three
    spaces), streamed out in one binary COPY; rows of a missing vector are NaN."""
    spaces = [space, *[s for s in (SPACES if also is None else also) if s != space]]
    dims = [space_dimension(model, s) for s in spaces]
    columns = sql.SQL(", ").join(
        sql.SQL("coalesce({column}::vector({dim}), array_fill(0::real, ARRAY[{dim}])::vector({dim}))").format(
            column=sql.Identifier("e", f"{name}_vector"), dim=sql.Literal(dim)
        )
        for name, dim in zip(spaces, dims, strict=True)
    )
    query = sql.SQL(
        "COPY (SELECT e.product_id, {columns} FROM prodmatch.embeddings e"
        " JOIN prodmatch.products p ON p.id = e.product_id"
        " WHERE e.model_id = {model} AND {required} IS NOT NULL {catalog} ORDER BY e.product_id)"
        " TO STDOUT (FORMAT BINARY)"
    ).format(
        columns=columns,
        model=sql.Literal(model.id),
        required=sql.Identifier("e", f"{space}_vector"),
        catalog=sql.SQL("AND p.catalog_id = {}").format(sql.Literal(catalog_id))
        if catalog_id
        else sql.SQL(""),
    )
    chunks = []
    with conn.cursor().copy(query) as copy:
        chunks.extend(copy)
    ids, matrices = _parse_binary_vectors(b"".join(chunks), dims)
    vectors = {}
    for name, matrix in zip(spaces, matrices, strict=True):
        missing = ~matrix.any(axis=1)  # the zero vectors that stand for NULL
        matrix[missing] = np.nan
        vectors[name] = matrix
    return ids, vectors


def _parse_binary_vectors(data: bytes, dims: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    # COPY BINARY: a 19-byte header; per row an int16 field count, then each field as int32 length + bytes:
    # the int64 id, and per vector pgvector's binary form (int16 dim, int16 unused, dim big-endian float4);
    # then an int16 -1 trailer. With no NULLs every row has the same layout, so numpy reads it in one go.
    fields = [("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8")]
    for i, dim in enumerate(dims):
        fields += [(f"len{i}", ">i4"), (f"dim{i}", ">i2"), (f"unused{i}", ">i2"), (f"v{i}", ">f4", (dim,))]
    record = np.dtype(fields)
    body = len(data) - 19 - 2
    if body % record.itemsize:
        raise ProdmatchError("unexpected binary COPY layout while reading vectors")
    rows = np.frombuffer(data, dtype=record, offset=19, count=body // record.itemsize)  # no copy of the bytes
    return rows["id"].astype(np.int64), [rows[f"v{i}"].astype(np.float32) for i in range(len(dims))]


# --- helpers ----------------------------------------------------------------------------------------------


def _catalog_id(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = %s", (name,)).fetchone()
    if row is None:
        known = (
            ", ".join(r[0] for r in conn.execute("SELECT name FROM prodmatch.catalogs ORDER BY 1")) or "none"
        )
        raise ConfigError(f"no catalogue named {name!r} (catalogues: {known})")
    return row[0]


def _embedded_counts(conn: psycopg.Connection, model: Model, catalog_ids: tuple[int, ...]) -> dict[int, int]:
    counts = dict.fromkeys(catalog_ids, 0)
    for catalog_id, n in conn.execute(
        "SELECT p.catalog_id, count(*) FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
        " WHERE e.model_id = %s AND e.fused_vector IS NOT NULL AND p.catalog_id = ANY(%s) GROUP BY 1",
        (model.id, list(catalog_ids)),
    ):
        counts[catalog_id] = n
    return counts


def _plain(row: dict) -> dict:
    """Decimal prices to float so results serialise as JSON."""
    return {k: float(v) if k.endswith("price") and v is not None else v for k, v in row.items()}


class _sql_errors:
    """Turn the SQL API's own exceptions (RAISE 'prodmatch: ...') into ProdmatchError."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, psycopg.errors.RaiseException) and "prodmatch:" in str(exc):
            raise ProdmatchError(str(exc).split("\n")[0].replace("prodmatch: ", "")) from exc
        return False
