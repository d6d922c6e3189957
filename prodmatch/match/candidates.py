"""Candidate generation: for each source product, its nearest target products in one space.

Exact candidates come from blocked matrix multiplication over all vectors (`exact.py`); ANN candidates from the
HNSW indexes through the SQL function `prodmatch.candidates`. Both return `CandidatePairs` with the cosine of every
space as a named signal, so later stages never depend on which generator ran.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from psycopg import sql

from prodmatch.match.exact import top_k_cosine
from prodmatch.match.pairs import CandidatePairs
from prodmatch.store.distribute import is_citus
from prodmatch.store.models import SPACES, Model, vector_expression
from prodmatch.store.server import _sql_errors
from prodmatch.store.vectors import fetch_spaces

ANN_CHUNK = 200  # source products per prodmatch.candidates() call, for progress
# On Citus each call fans out to every shard once for the whole batch (sql/citus.sql), so a larger batch spreads
# that fixed cost: 500 sources per call were ~15% faster than 200 on the local cluster (docs/scaling.md).
ANN_CHUNK_CITUS = 500
_DOT_CHUNK = 65536  # pairs per einsum, to bound memory


def exact_candidates(
    conn,
    model: Model,
    space: str,
    source_id: int,
    target_id: int,
    k: int,
    advance: Callable[[int], None],
    source_only: np.ndarray | None = None,
) -> CandidatePairs:
    """Exact top-k of every source product (or only those in `source_only`) among the target's."""
    source_ids, source = fetch_spaces(conn, model, source_id, space)
    if source_only is not None:
        keep = np.isin(source_ids, source_only)
        source_ids, source = source_ids[keep], {name: v[keep] for name, v in source.items()}
    target_ids, target = fetch_spaces(conn, model, target_id, space)
    found = top_k_cosine(source[space], target[space], k, progress=advance)
    rows, cols = np.nonzero(found.indices >= 0)
    columns = found.indices[rows, cols]
    signals = {
        f"{name}_similarity": _row_dots(source[name], rows, target[name], columns).astype(np.float32)
        for name in SPACES
    }
    return CandidatePairs(source_ids[rows], target_ids[columns], found.similarities[rows, cols], signals)


def _row_dots(left: np.ndarray, rows: np.ndarray, right: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Dot products of paired rows, in chunks to bound memory; NaN rows give NaN."""
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), _DOT_CHUNK):
        r, c = rows[start : start + _DOT_CHUNK], columns[start : start + _DOT_CHUNK]
        out[start : start + _DOT_CHUNK] = np.einsum("ij,ij->i", left[r], right[c])
    return out


def ann_candidates(
    conn,
    model: Model,
    space: str,
    source: str,
    target: str,
    k: int,
    ef_search: int,
    advance: Callable[[int], None],
    source_only: np.ndarray | None = None,
) -> CandidatePairs:
    """HNSW top-k of every source product (or only those in `source_only`) through prodmatch.candidates()."""
    # With `source_only` (a watcher's few changed sources) only those rows are read, not the whole catalogue.
    only = sql.SQL("") if source_only is None else sql.SQL(" AND e.product_id = ANY(%s)")
    params = (model.id, source) if source_only is None else (model.id, source, source_only.tolist())
    ids = [
        r[0]
        for r in conn.execute(
            sql.SQL(
                "SELECT e.product_id FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
                " JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                " WHERE e.model_id = %s AND c.name = %s AND {} IS NOT NULL{} ORDER BY 1"
            ).format(vector_expression(model, space), only),
            params,
        )
    ]
    rows = []
    size = ANN_CHUNK_CITUS if is_citus(conn) else ANN_CHUNK
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        with _sql_errors(), conn.transaction():
            rows += conn.execute(
                "SELECT source_product_id, target_product_id, fused_similarity, image_similarity, text_similarity"
                " FROM prodmatch.candidates(%s::text, %s::text, k => %s::int, space => %s::text,"
                " model => %s::text, ef_search => %s::int, source_ids => %s::bigint[])",
                (source, target, k, space, model.name, ef_search, chunk),
            ).fetchall()
        advance(len(chunk))
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    signals = {
        f"{name}_similarity": table[:, 2 + i].astype(np.float32)
        for i, name in enumerate(("fused", "image", "text"))  # the order of the SELECT above
    }
    return CandidatePairs(
        table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), signals[f"{space}_similarity"], signals
    )
