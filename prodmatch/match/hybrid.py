"""Hybrid candidates and their signals: what a learned matcher scores.

For each source product, candidates come from several sources, each reported separately so a user sees what it
contributes: the top-k of each vector space the model has (image, text, fused; exact search), the top-k of the
lexical space (hashed n-grams with IDF, no model needed), and exact product-code hits (a code shared by at most
`MAX_CODE_TARGETS` target products). Their union is one `CandidatePairs`; every pair then gets every signal:
the cosine of each space and the lexical similarity for the pair itself (not only for the source that proposed
it), its rank and margin in each source, and the product signals of `prodmatch.match.signals` (codes, brand,
price, numbers, title overlap, ...). `features()` turns that into the `FeatureMatrix` a `Matcher` reads.

Training (`prodmatch.quality.matchers`) and linking (`prodmatch.match.link`) both go through `gather`, so a
matcher sees at link time exactly the features it was trained on.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import psycopg
import scipy.sparse as sp
import torch

from prodmatch.currencies import currency_key
from prodmatch.embed.codes import code_kind
from prodmatch.embed.lexical import normalize
from prodmatch.hardware import usable_cores
from prodmatch.match.exact import top_k_cosine
from prodmatch.match.pairs import CandidatePairs
from prodmatch.match.signals.brand import (
    RARE_CODE,
    TWO_SCRIPT_FIELD,
    aliases_of,
    brand_aliases,
    brand_names,
    coded_aliases,
    known_aliases,
    merged_aliases,
)
from prodmatch.match.signals.features import FeatureMatrix, indexed_pair_features, with_context
from prodmatch.match.signals.price import SCALE_BINS, price_scales
from prodmatch.match.signals.ranks import RankColumns, rank_signals
from prodmatch.roles import with_roles
from prodmatch.store.catalogs import roles_by_catalog
from prodmatch.store.models import SPACES, Model
from prodmatch.store.schema import LEXICAL_DIMENSIONS
from prodmatch.store.vectors import fetch_spaces

DEFAULT_K = 10
MAX_CODE_TARGETS = 20  # a "code" that many target products share is a word, not an identifier
LEXICAL_QUERY_TERMS = 48  # a source's heaviest terms used to find lexical candidates (scores use all terms)
LEXICAL_MIN_QUERY_TERMS = 16  # ... of which it keeps at least this many, widespread or not
WIDESPREAD_SHARE = 0.05  # a term in more than this share of the targets ...
WIDESPREAD_MIN_TARGETS = 1000  # ... and in more than this many is not searched with (see _query_terms)
_LEXICAL_BLOCK = 256  # source rows per block of the lexical top-k
# A block's padded scores (its sources x the most targets one of them reaches) stay under 128 MiB.
_LEXICAL_BLOCK_CELLS = 1 << 25
_LEXICAL_MAX_WORKERS = 8  # threads for the lexical top-k's blocks (at most one per core)
_DOT_CHUNK = 65536


@dataclass
class Gathered:
    """The hybrid candidates of one catalogue pair, with per-source proposals and products."""

    pairs: CandidatePairs
    proposals: dict[
        str, tuple[np.ndarray, np.ndarray, np.ndarray]
    ]  # source -> (source ids, target ids, score)
    products: dict[int, dict]  # product id -> mapping the product signals read
    seconds: dict[str, float] = field(default_factory=dict)

    def source_recall(self, gold: set[tuple[int, int]]) -> dict[str, float]:
        """Share of gold pairs each candidate source proposed, and their union."""
        if not gold:
            return {}
        out = {}
        for name, (s, t, _) in self.proposals.items():
            found = set(zip(s.tolist(), t.tolist(), strict=True))
            out[name] = len(found & gold) / len(gold)
        union = set(zip(self.pairs.sources.tolist(), self.pairs.targets.tolist(), strict=True))
        out["union"] = len(union & gold) / len(gold)
        return out


@dataclass
class TargetSide:
    """The target catalogue's lexical rows and vectors, read once and kept by a caller that gathers again and
    again (`link --watch`), so that a pass for a few changed sources does not re-read a catalogue of a million."""

    lexical: tuple[np.ndarray, sp.csr_matrix]
    vectors: tuple[np.ndarray, dict[str, np.ndarray]] | None  # None: no model
    # what is read from the whole of both catalogues (`read_catalogue_stats`) where the caller keeps it too;
    # None: read it now
    stats: CatalogueStats | None = None


@dataclass(frozen=True)
class CatalogueStats:
    """What pair signals read from the whole of the catalogues being matched, not from the pair alone."""

    price_scales: dict[tuple[int, str], float]  # (catalogue, currency) -> price scale (`read_price_scales`)
    # brand name -> the brand's other names, in other scripts mostly (`read_brand_aliases`)
    brand_aliases: dict[str, tuple[str, ...]]


def read_catalogue_stats(conn: psycopg.Connection, catalog_ids: set[int]) -> CatalogueStats:
    """The catalogues' price scales and brand aliases (two aggregate queries)."""
    return CatalogueStats(read_price_scales(conn, catalog_ids), read_brand_aliases(conn, catalog_ids))


def read_target_side(conn: psycopg.Connection, target_catalog_id: int, model: Model | None) -> TargetSide:
    """What `gather` reads of the target catalogue."""
    lexical = _lexical_matrix(conn, target_catalog_id, None)
    vectors = fetch_spaces(conn, model, target_catalog_id, "fused") if model is not None else None
    return TargetSide(lexical, vectors)


def gather(
    conn: psycopg.Connection,
    source_catalog_id: int,
    target_catalog_id: int,
    model: Model | None,
    *,
    k: int = DEFAULT_K,
    source_ids: np.ndarray | None = None,
    extra: set[tuple[int, int]] | None = None,
    advance: Callable[[int], None] | None = None,
    target_side: TargetSide | None = None,
) -> Gathered:
    """Candidates of every source (or only `source_ids`) from every candidate source, with all signals.

    `extra` pairs (e.g. a gold file's labelled non-matches) join the union even when no source proposed them.
    `target_side`: the target catalogue as `read_target_side` read it (default: read it now).
    """
    seconds: dict[str, float] = {}
    proposals: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    clock = time.perf_counter()
    target_side = target_side or read_target_side(conn, target_catalog_id, model)
    lexical_source = _lexical_matrix(conn, source_catalog_id, source_ids)
    lexical_target = target_side.lexical
    proposals["lexical"] = _lexical_top_k(lexical_source, lexical_target, k)
    seconds["lexical"] = time.perf_counter() - clock
    clock = time.perf_counter()
    proposals["codes"] = _code_hits(conn, source_catalog_id, target_catalog_id, source_ids)
    seconds["codes"] = time.perf_counter() - clock
    dense: dict[str, tuple] = {}
    if model is not None:
        clock = time.perf_counter()
        wanted = None if source_ids is None else np.asarray(source_ids, dtype=np.int64).tolist()
        source_vector_ids, source_vectors = fetch_spaces(
            conn, model, source_catalog_id, "fused", product_ids=wanted
        )
        target_vector_ids, target_vectors = target_side.vectors
        for space in SPACES:
            proposals[space] = _dense_top_k(
                source_vector_ids, source_vectors[space], target_vector_ids, target_vectors[space], k
            )
        dense = {
            space: (source_vector_ids, source_vectors[space], target_vector_ids, target_vectors[space])
            for space in SPACES
        }
        seconds["vectors"] = time.perf_counter() - clock
    if advance is not None:
        advance(len(lexical_source[0]))
    pairs = _union(proposals, extra or set())
    clock = time.perf_counter()
    signals = {"lexical_similarity": _lexical_dots(lexical_source, lexical_target, pairs)}
    for space, (sids, svec, tids, tvec) in dense.items():
        signals[f"{space}_similarity"] = _dense_dots(sids, svec, tids, tvec, pairs)
    pairs.signals.update(signals)
    products = _products(conn, np.unique(np.concatenate([pairs.sources, pairs.targets])), target_side.stats)
    seconds["signals"] = time.perf_counter() - clock
    return Gathered(pairs, proposals, products, seconds)


def features(gathered: Gathered) -> FeatureMatrix:
    """The named pair features a matcher reads (the same at training and at link time)."""
    pairs = gathered.pairs
    similarities = {
        name.removesuffix("_similarity"): column
        for name, column in pairs.signals.items()
        if name.endswith("_similarity")
    }
    ranks: dict[str, RankColumns] = {
        name: rank_signals(s, t, score, pair_source_ids=pairs.sources, pair_target_ids=pairs.targets)
        for name, (s, t, score) in gathered.proposals.items()
    }
    ids = np.unique(np.concatenate([pairs.sources, pairs.targets]))  # the products of these pairs only
    matrix = indexed_pair_features(
        [gathered.products[i] for i in ids.tolist()],
        np.searchsorted(ids, pairs.sources),
        np.searchsorted(ids, pairs.targets),
        similarities=similarities,
        ranks=ranks,
        normalize_brand=_normalize_brand,
        code_kind=code_kind,
    )
    return with_context(matrix, pairs.sources, pairs.targets)


def lexical_candidates(
    conn: psycopg.Connection, source_catalog_id: int, target_catalog_id: int, k: int
) -> CandidatePairs:
    """Each source product's k most lexically similar target products (a link on the lexical space alone)."""
    source = _lexical_matrix(conn, source_catalog_id, None)
    target = _lexical_matrix(conn, target_catalog_id, None)
    s, t, score = _lexical_top_k(source, target, k)
    return CandidatePairs(s, t, score, {"lexical_similarity": score})


def lexical_similarities(
    conn: psycopg.Connection, source_catalog_id: int, target_catalog_id: int, pairs: CandidatePairs
) -> np.ndarray:
    """The lexical similarity of given pairs (NaN where a product has no lexical vector)."""
    source = _lexical_matrix(conn, source_catalog_id, np.unique(pairs.sources))
    target = _lexical_matrix(conn, target_catalog_id, np.unique(pairs.targets))
    return _lexical_dots(source, target, pairs)


# --- candidate sources ------------------------------------------------------------------------------------


def _lexical_matrix(
    conn: psycopg.Connection, catalog_id: int, only: np.ndarray | None
) -> tuple[np.ndarray, sp.csr_matrix]:
    """(product ids, CSR rows of their weighted lexical vectors) of one catalogue, or of its products `only`.

    With `only`, just those rows are read (by primary key): scoring a few pairs must not read a catalogue of a
    million products."""
    restrict = "" if only is None else " AND l.product_id = ANY(%s)"
    params = (catalog_id,) if only is None else (catalog_id, np.asarray(only, dtype=np.int64).tolist())
    with conn.cursor().copy(
        "COPY (SELECT l.product_id, l.vector FROM prodmatch.lexical l JOIN prodmatch.products p"
        " ON p.id = l.product_id WHERE p.catalog_id = %s"
        + restrict
        + " ORDER BY 1) TO STDOUT (FORMAT BINARY)",
        params,
    ) as copy:
        data = b"".join(bytes(block) for block in copy)
    ids, indptr, indices, values = _parse_sparse_copy(data)
    return ids, sp.csr_matrix((values, indices, indptr), shape=(len(ids), LEXICAL_DIMENSIONS))


def _parse_sparse_copy(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, indptr, 0-based indices, values) from a binary COPY of (bigint, sparsevec) rows.

    The binary form skips printing and parsing every weight as decimal text, the bulk of reading a catalogue's
    vectors. Layout: PostgreSQL's binary COPY (a 19-byte header, then per row a field count and each field's
    length and bytes), and pgvector's sparsevec_send (dim, nnz, 0, nnz int32 indices, nnz float32 values), all
    big-endian.
    """
    extension = struct.unpack_from(">I", data, 15)[0]
    position = 19 + extension
    ids, starts, counts = [], [], []
    while True:
        (fields,) = struct.unpack_from(">h", data, position)
        if fields == -1:  # the trailer
            break
        product_id, length, nnz = struct.unpack_from(">xxxxqixxxxi", data, position + 2)
        ids.append(product_id)
        starts.append(position + 2 + 12 + 4 + 12)
        counts.append(nnz)
        position += 2 + 12 + 4 + length
    counts_array = np.array(counts, dtype=np.int64)
    indptr = np.r_[0, np.cumsum(counts_array)].astype(np.int64)
    # Every index and value by its byte offset, gathered at once.
    row_starts = np.repeat(np.array(starts, dtype=np.int64), counts_array)
    within = _within_rows(indptr)
    raw = np.frombuffer(data, dtype=np.uint8)
    index_at = row_starts + 4 * within
    value_at = index_at + 4 * np.repeat(counts_array, counts_array)
    indices = _gather_be32(raw, index_at).view(">i4").astype(np.int32)
    values = _gather_be32(raw, value_at).view(">f4").astype(np.float32)
    return np.array(ids, dtype=np.int64), indptr, indices, values


def _gather_be32(raw: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 4 bytes at each offset, as one contiguous buffer of 4-byte items."""
    return np.ascontiguousarray(raw[offsets[:, None] + np.arange(4)]).reshape(-1)


def _lexical_top_k(
    source: tuple[np.ndarray, sp.csr_matrix], target: tuple[np.ndarray, sp.csr_matrix], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each source's k most lexically similar targets: blocked products over the heaviest query terms."""
    source_ids, s = source
    target_ids, t = target
    if not len(source_ids) or not len(target_ids):
        return _empty()
    postings = t.T.tocsr()  # term -> the targets that have it
    query = _query_terms(s, np.diff(postings.indptr), len(target_ids))
    workers = _lexical_workers(query.shape[0])
    # the blocks in flight together stay within _LEXICAL_BLOCK_CELLS
    block_rows = max(16, min(_LEXICAL_BLOCK, _LEXICAL_BLOCK_CELLS // (workers * len(target_ids))))

    def one_block(start: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = _best_per_row((query[start : start + block_rows] @ postings).tocsr(), k)
        return rows + start, cols

    starts = range(0, query.shape[0], block_rows)
    if workers > 1:
        # scipy's sparse product and torch's top-k release the GIL: blocks run side by side on the cores, and
        # each block's result depends on its own rows only (the same as in one thread)
        with ThreadPoolExecutor(workers, thread_name_prefix="lexical-top-k") as pool:
            done = list(pool.map(one_block, starts))
    else:
        done = [one_block(start) for start in starts]
    rows = np.concatenate([r for r, _ in done])
    cols = np.concatenate([c for _, c in done])
    if not len(rows):
        return _empty()
    scores = _sparse_row_dots(s, rows, t, cols)  # exact cosine over all terms, not only the query terms
    return source_ids[rows], target_ids[cols], scores


def _lexical_workers(n_sources: int) -> int:
    """Threads for the lexical top-k: one per core this process may use, never more than there are blocks."""
    return max(1, min(usable_cores(), _LEXICAL_MAX_WORKERS, -(-n_sources // 16)))


def _best_per_row(product: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each row's k best entries of a sparse (queries x targets) product, best first and ties to
    the lower column (product id): a source's candidates then depend on nothing but the target products'
    contents, so `watch` recomputing one source gets what a full link gets. Targets sharing no searched term
    with the query have no entry and are never candidates.

    Each row's k-th largest value comes from a top-k over the rows padded to equal length; every entry at or
    above it (ties included) is then sorted by (value, column) and the first k kept.
    """
    counts = np.diff(product.indptr)
    if not product.nnz:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    rows = np.repeat(np.arange(product.shape[0]), counts)
    data = product.data.astype(np.float32, copy=False)
    if counts.max() > k:
        position = _within_rows(product.indptr)
        padded = torch.full((product.shape[0], int(counts.max())), -torch.inf, dtype=torch.float32)
        padded[torch.from_numpy(rows), torch.from_numpy(position)] = torch.from_numpy(data)
        kth = torch.topk(padded, k, dim=1, sorted=False).values.amin(dim=1).numpy()  # -inf: fewer than k
        keep = data >= kth[rows]
        rows, targets, values = rows[keep], product.indices[keep], data[keep]
    else:
        targets, values = product.indices, data
    order = np.lexsort((targets, -values, rows))
    rows, targets = rows[order], targets[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    position = _within_rows(np.r_[starts, len(rows)])
    keep = position < k
    return rows[keep].astype(np.int64), targets[keep].astype(np.int64)


def _query_terms(s: sp.csr_matrix, document_frequency: np.ndarray, n_targets: int) -> sp.csr_matrix:
    """The terms each source searches with: its LEXICAL_QUERY_TERMS heaviest, less the widespread ones.

    A term that more than WIDESPREAD_SHARE of the targets (and over WIDESPREAD_MIN_TARGETS of them) carry is a
    "stop n-gram" for finding candidates: its IDF weight is low, so it hardly moves a source's ranking, but
    its postings are nearly all of the work (at 100,000 products: a query's postings fall from 378,000 to
    7,400 targets). A source keeps at least LEXICAL_MIN_QUERY_TERMS terms, its least widespread. Candidates'
    scores still use every term; a catalogue of at most WIDESPREAD_MIN_TARGETS targets loses no term. Forced
    onto the small development catalogues (no 1,000 floor), candidate-union recall was unchanged on all four
    (docs/benchmarks.md).
    """
    query = _heaviest_terms(s, LEXICAL_QUERY_TERMS)
    cap = max(WIDESPREAD_MIN_TARGETS, WIDESPREAD_SHARE * n_targets)
    spread = document_frequency[query.indices]
    widespread = spread > cap
    if not widespread.any():
        return query
    rows = np.repeat(np.arange(query.shape[0]), np.diff(query.indptr))
    by_spread = np.lexsort((query.indices, spread, rows))  # per row: least widespread first
    position = np.empty(len(rows), dtype=np.int64)
    position[by_spread] = _within_rows(query.indptr)
    keep = ~widespread | (position < LEXICAL_MIN_QUERY_TERMS)
    query.data[~keep] = 0.0  # _heaviest_terms returned a copy
    query.eliminate_zeros()
    return query


def _within_rows(indptr: np.ndarray) -> np.ndarray:
    """Each entry's position within its row, for rows laid out as a CSR `indptr` (0, 1, ... per row)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    return np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1], np.diff(indptr))


def _heaviest_terms(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    matrix = matrix.copy()
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        if hi - lo > keep:
            data = matrix.data[lo:hi]
            data[np.argpartition(data, hi - lo - keep)[: hi - lo - keep]] = 0.0
    matrix.eliminate_zeros()
    return matrix


def _sparse_row_dots(a: sp.csr_matrix, rows: np.ndarray, b: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), _DOT_CHUNK):
        r, c = rows[start : start + _DOT_CHUNK], cols[start : start + _DOT_CHUNK]
        out[start : start + _DOT_CHUNK] = np.asarray(a[r].multiply(b[c]).sum(axis=1)).ravel()
    return out


def _code_hits(
    conn: psycopg.Connection, source_catalog_id: int, target_catalog_id: int, only: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs sharing a product code that at most MAX_CODE_TARGETS target products carry; score = codes shared."""
    rows = conn.execute(
        "WITH t AS (SELECT unnest(l.codes) AS code, l.product_id FROM prodmatch.lexical l"
        "           JOIN prodmatch.products p ON p.id = l.product_id WHERE p.catalog_id = %(target)s),"
        " usable AS (SELECT code FROM t GROUP BY code HAVING count(*) <= %(cap)s),"
        " s AS (SELECT unnest(l.codes) AS code, l.product_id FROM prodmatch.lexical l"
        "       JOIN prodmatch.products p ON p.id = l.product_id WHERE p.catalog_id = %(source)s"
        "       AND (%(only)s::bigint[] IS NULL OR l.product_id = ANY(%(only)s)))"
        " SELECT s.product_id, t.product_id, count(*) FROM s JOIN usable USING (code) JOIN t USING (code)"
        " WHERE s.product_id <> t.product_id GROUP BY 1, 2 ORDER BY 1, 2",
        {
            "source": source_catalog_id,
            "target": target_catalog_id,
            "cap": MAX_CODE_TARGETS,
            "only": None if only is None else [int(i) for i in only],
        },
    ).fetchall()
    if not rows:
        return _empty()
    table = np.array(rows, dtype=np.int64)
    return table[:, 0], table[:, 1], table[:, 2].astype(np.float32)


def _dense_top_k(
    source_ids: np.ndarray, source: np.ndarray, target_ids: np.ndarray, target: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k cosine of one space; products missing that vector (NaN rows) propose nothing."""
    s_ok = ~np.isnan(source).any(axis=1)
    t_ok = ~np.isnan(target).any(axis=1)
    if not s_ok.any() or not t_ok.any():
        return _empty()
    s_ids, t_ids = source_ids[s_ok], target_ids[t_ok]
    found = top_k_cosine(source[s_ok], target[t_ok], min(k, int(t_ok.sum())))
    rows, cols = np.nonzero(found.indices >= 0)
    return s_ids[rows], t_ids[found.indices[rows, cols]], found.similarities[rows, cols].astype(np.float32)


def _union(proposals: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], extra: set) -> CandidatePairs:
    parts = [np.stack([s, t], axis=1) for s, t, _ in proposals.values() if len(s)]
    if extra:
        parts.append(np.array(sorted(extra), dtype=np.int64).reshape(-1, 2))
    if not parts:
        return CandidatePairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    unique = np.unique(np.concatenate(parts).astype(np.int64), axis=0)
    return CandidatePairs(unique[:, 0], unique[:, 1], np.zeros(len(unique), dtype=np.float32))


# --- signals of the union ---------------------------------------------------------------------------------


def _lexical_dots(
    source: tuple[np.ndarray, sp.csr_matrix], target: tuple[np.ndarray, sp.csr_matrix], pairs: CandidatePairs
) -> np.ndarray:
    rows, ok_s = _positions(source[0], pairs.sources)
    cols, ok_t = _positions(target[0], pairs.targets)
    out = np.full(len(pairs), np.nan, dtype=np.float32)
    ok = ok_s & ok_t
    if ok.any():
        out[ok] = _sparse_row_dots(source[1], rows[ok], target[1], cols[ok])
    return out


def _dense_dots(
    source_ids: np.ndarray,
    source: np.ndarray,
    target_ids: np.ndarray,
    target: np.ndarray,
    pairs: CandidatePairs,
) -> np.ndarray:
    rows, ok_s = _positions(source_ids, pairs.sources)
    cols, ok_t = _positions(target_ids, pairs.targets)
    out = np.full(len(pairs), np.nan, dtype=np.float32)
    # A product without this vector (a NaN row) gives NaN whatever it meets: skip its pairs' products.
    has_s, has_t = ~np.isnan(source).any(axis=1), ~np.isnan(target).any(axis=1)
    ok = np.flatnonzero(ok_s & ok_t & has_s[rows] & has_t[cols]) if len(source) and len(target) else []
    for start in range(0, len(ok), _DOT_CHUNK):
        chunk = ok[start : start + _DOT_CHUNK]
        out[chunk] = np.einsum("ij,ij->i", source[rows[chunk]], target[cols[chunk]])
    return out  # NaN where a product lacks the vector (NaN rows stay NaN)


def _positions(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each wanted id in sorted `ids`, and whether it is there."""
    if not len(ids):
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    pos = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return pos, ids[pos] == wanted


def _products(
    conn: psycopg.Connection, ids: np.ndarray, stats: CatalogueStats | None = None
) -> dict[int, dict]:
    """The fields product signals read, with the product's codes, price scale and brand aliases, by product id
    (`stats`: those of the products' catalogues, default: read now)."""
    out: dict[int, dict] = {}
    rows = conn.execute(
        "SELECT p.id, p.title, p.brand, p.category, p.description, p.price::float8, p.currency, p.attributes,"
        " coalesce(l.codes, '{}'), p.catalog_id"
        " FROM prodmatch.products p LEFT JOIN prodmatch.lexical l ON l.product_id = p.id"
        " WHERE p.id = ANY(%s)",
        ([int(i) for i in ids],),
    ).fetchall()
    overrides = roles_by_catalog(conn)  # each catalogue's attribute roles, read by attribute_agreement
    if stats is None:
        stats = read_catalogue_stats(conn, {row[-1] for row in rows})
    scales, aliases = stats.price_scales, stats.brand_aliases
    for pid, title, brand, category, description, price, currency, attributes, codes, catalog in rows:
        out[pid] = with_roles(
            {
                "id": pid,
                "title": title,
                "brand": brand,
                "category": category,
                "description": description,
                "price": price,
                "currency": currency,
                "price_scale": scales.get((catalog, currency_key(currency))),
                "brand_aliases": aliases_of(brand_names(brand, _normalize_brand), aliases) if aliases else (),
                "attributes": attributes or {},
                "codes": list(codes),
            },
            overrides.get(catalog),
        )
    return out


def read_price_scales(conn: psycopg.Connection, catalog_ids: set[int]) -> dict[tuple[int, str], float]:
    """The price scale of each (catalogue, currency) group (`price.price_scales`), from one histogram query:
    a plain count per bin of ln(price), which PostgreSQL and Citus both aggregate where the rows are. It reads
    every priced product of the catalogues (0.8 s at a million here): `link --watch` keeps what its whole-run
    computations read."""
    if not catalog_ids:
        return {}
    histogram = conn.execute(
        "SELECT catalog_id, currency, floor(ln(price::float8) * %s)::int, count(*)"
        " FROM prodmatch.products WHERE catalog_id = ANY(%s) AND price > 0 GROUP BY 1, 2, 3",
        (SCALE_BINS, sorted(catalog_ids)),
    ).fetchall()
    return price_scales(histogram)


def read_brand_aliases(conn: psycopg.Connection, catalog_ids: set[int]) -> dict[str, tuple[str, ...]]:
    """Brand names' aliases in other scripts (`brand.brand_aliases`) from the catalogues' brand fields that
    write two scripts at once ("Nike/耐克"): one aggregate over the fields with a separator in them; with the
    common brands' names prodmatch ships (`brand.known_aliases`)."""
    if not catalog_ids:
        return known_aliases(_normalize_brand)
    fields = conn.execute(
        "SELECT brand, count(*) FROM prodmatch.products"
        " WHERE catalog_id = ANY(%s) AND brand ~ %s GROUP BY brand",
        (sorted(catalog_ids), TWO_SCRIPT_FIELD),
    ).fetchall()
    return merged_aliases(
        brand_aliases(fields, _normalize_brand),
        coded_aliases(_brands_joined_by_codes(conn, catalog_ids), _normalize_brand),
        known_aliases(_normalize_brand),
    )


def _brands_joined_by_codes(conn: psycopg.Connection, catalog_ids: set[int]) -> list[tuple[str, str, int]]:
    """(brand, brand, rare codes) of the offers in two of `catalog_ids` that carry one rare product code
    (`brand.coded_aliases`); nothing to read, and no query over the codes, where every brand is in ASCII."""
    if (
        len(catalog_ids) < 2
        or not conn.execute(
            "SELECT EXISTS (SELECT FROM prodmatch.products WHERE catalog_id = ANY(%s) AND brand ~ '[^[:ascii:]]')",
            (sorted(catalog_ids),),
        ).fetchone()[0]
    ):
        return []
    # One aggregate over the codes (co-located with the products, as on Citus): each rare code shared across
    # catalogues, with its offers' catalogues and brands.
    rows = conn.execute(
        "SELECT c.code, array_agg(p.catalog_id), array_agg(p.brand)"
        " FROM prodmatch.products p JOIN prodmatch.lexical l ON l.product_id = p.id,"
        " unnest(l.codes) AS c(code)"
        " WHERE p.catalog_id = ANY(%s) AND p.brand IS NOT NULL AND p.brand <> ''"
        " GROUP BY c.code HAVING count(*) <= %s AND min(p.catalog_id) <> max(p.catalog_id)",
        (sorted(catalog_ids), RARE_CODE),
    ).fetchall()
    joined: dict[tuple[str, str], set[str]] = {}
    for code, catalogs, brands in rows:
        offers = sorted(zip(catalogs, brands, strict=True))  # each pair of brands in one order
        for i, (left_catalog, left) in enumerate(offers):
            for right_catalog, right in offers[i + 1 :]:
                if left_catalog != right_catalog:  # every pair: a brand's own name is a partner too
                    joined.setdefault((left, right), set()).add(code)
    return [(left, right, len(codes)) for (left, right), codes in joined.items()]


@lru_cache(maxsize=1 << 18)
def _normalize_brand(text: str) -> str:
    # Called once per pair and side: a catalogue has few distinct brands (and titles), so cache the work.
    return normalize(text or "")


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
