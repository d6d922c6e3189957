"""Vectors out of the database in bulk: a binary COPY of a model's image, text and fused vectors into numpy.

`fetch_vectors` and `fetch_spaces` stream `prodmatch.embeddings` for a model (optionally some catalogues) with
`COPY ... TO STDOUT (FORMAT BINARY)` and parse pgvector's binary form straight into float32 arrays, with NaN
rows where a vector is missing; much faster than row-by-row fetching for whole catalogues. Used by
`match.candidates` and `match.link` (exact search), `match.index_check` and `quality.evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
from psycopg import sql

from prodmatch.errors import ProdmatchError
from prodmatch.store.models import SPACES, Model, space_dimension, vector_column

# --- vectors out of the database --------------------------------------------------------------------------


def fetch_vectors(
    conn: psycopg.Connection,
    model: Model,
    space: str,
    catalog_id: int | None,
    *,
    product_ids: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(product ids, (n, d) float32 vectors) of one space, for products that have it (of `product_ids` only,
    if given), ordered by id."""
    ids, vectors = fetch_spaces(conn, model, catalog_id, space, also=(), product_ids=product_ids)
    return ids, vectors[space]


def fetch_spaces(
    conn: psycopg.Connection,
    model: Model,
    catalog_id: int | None,
    space: str,
    also: tuple[str, ...] | None = None,
    *,
    product_ids: list[int] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Product ids (having a `space` vector) and their vectors of `space` and `also` (default: all three
    spaces), streamed out in one binary COPY; rows of a missing vector are NaN. `product_ids`: only these.

    The rows are counted first and the arrays allocated once; the COPY is parsed a block at a time into them,
    so the peak is the arrays plus one block of COPY bytes (`copy_bytes_peak`), not twice the result.
    """
    spaces, dims, query, count = _copy_query(model, catalog_id, space, also, product_ids)
    expected = conn.execute(count).fetchone()[0]
    ids = np.empty(expected, dtype=np.int64)
    matrices = [np.empty((expected, dim), dtype=np.float32) for dim in dims]
    filled = 0
    for block_ids, block in _copy_blocks(conn, query, dims):
        if filled + len(block_ids) > len(ids):  # rows added since the count (another transaction committed)
            grow = max(len(ids), filled + len(block_ids))
            ids = np.resize(ids, grow)
            matrices = [np.resize(matrix, (grow, matrix.shape[1])) for matrix in matrices]
        ids[filled : filled + len(block_ids)] = block_ids
        for matrix, part in zip(matrices, block, strict=True):
            matrix[filled : filled + len(block_ids)] = part
        filled += len(block_ids)
    vectors = {}
    for name, matrix in zip(spaces, matrices, strict=True):
        matrix = matrix[:filled]
        missing = ~matrix.any(axis=1)  # the zero vectors that stand for NULL
        if model.storage == "halfvec":
            _unit_rows(matrix)
        matrix[missing] = np.nan
        vectors[name] = matrix
    return ids[:filled], vectors


def _unit_rows(matrix: np.ndarray) -> None:
    """Rounding to 2-byte floats moves a unit vector's length by ~1e-3; exact search and every cosine computed
    from these arrays assume unit length (an exact duplicate must score 1.0), so halfvec rows are renormalised."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)


def iter_vectors(
    conn: psycopg.Connection, model: Model, space: str, catalog_id: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(product ids, float32 vectors) of one space, a block of about COPY_BLOCK_BYTES at a time, ordered by id:
    for scans over every vector (an index check) in constant memory."""
    _, dims, query, _ = _copy_query(model, catalog_id, space, (), None)
    for ids, (vectors,) in _copy_blocks(conn, query, dims):
        if model.storage == "halfvec":
            _unit_rows(vectors)
        yield ids, vectors


def copy_bytes_peak(dims: list[int]) -> int:
    """Bytes `fetch_spaces` and `iter_vectors` hold besides their result: one block of COPY data and its rows."""
    record = _record(dims).itemsize
    return COPY_BLOCK_BYTES + record + (COPY_BLOCK_BYTES // record + 1) * (8 + 4 * sum(dims))


COPY_BLOCK_BYTES = 8 * 2**20  # COPY data parsed at once


def _copy_query(
    model: Model,
    catalog_id: int | None,
    space: str,
    also: tuple[str, ...] | None,
    product_ids: list[int] | None,
) -> tuple[list[str], list[int], sql.Composed, sql.Composed]:
    spaces = [space, *[s for s in (SPACES if also is None else also) if s != space]]
    dims = [space_dimension(model, s) for s in spaces]
    columns = sql.SQL(", ").join(
        sql.SQL("coalesce({column}::vector({dim}), array_fill(0::real, ARRAY[{dim}])::vector({dim}))").format(
            column=sql.Identifier("e", vector_column(model, name)), dim=sql.Literal(dim)
        )
        for name, dim in zip(spaces, dims, strict=True)
    )
    where = sql.SQL(
        " FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
        " WHERE e.model_id = {model} AND {required} IS NOT NULL {catalog} {products}"
    ).format(
        model=sql.Literal(model.id),
        required=sql.Identifier("e", vector_column(model, space)),
        catalog=sql.SQL("AND p.catalog_id = {}").format(sql.Literal(catalog_id))
        if catalog_id
        else sql.SQL(""),
        products=sql.SQL("AND e.product_id = ANY({}::bigint[])").format(sql.Literal(list(product_ids)))
        if product_ids is not None
        else sql.SQL(""),
    )
    query = sql.SQL(
        "COPY (SELECT e.product_id, {columns}{where} ORDER BY e.product_id) TO STDOUT (FORMAT BINARY)"
    )
    count = sql.SQL("SELECT count(*){where}").format(where=where)
    return spaces, dims, query.format(columns=columns, where=where), count


def _record(dims: list[int]) -> np.dtype:
    # COPY BINARY: a 19-byte header; per row an int16 field count, then each field as int32 length + bytes:
    # the int64 id, and per vector pgvector's binary form (int16 dim, int16 unused, dim big-endian float4);
    # then an int16 -1 trailer. With no NULLs every row has the same layout, so numpy reads it in one go.
    fields = [("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8")]
    for i, dim in enumerate(dims):
        fields += [(f"len{i}", ">i4"), (f"dim{i}", ">i2"), (f"unused{i}", ">i2"), (f"v{i}", ">f4", (dim,))]
    return np.dtype(fields)


_HEADER, _TRAILER = 19, 2


def _copy_blocks(
    conn: psycopg.Connection, query: sql.Composed, dims: list[int]
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """The COPY's rows, about COPY_BLOCK_BYTES at a time: (ids, one float32 matrix per space)."""
    record = _record(dims)
    buffer = bytearray()
    started = False
    with conn.cursor().copy(query) as copy:
        for data in copy:
            buffer += data
            if not started and len(buffer) >= _HEADER:
                del buffer[:_HEADER]
                started = True
            if started and len(buffer) >= COPY_BLOCK_BYTES:
                yield _parse(buffer, record, len(dims), final=False)
    if not started:
        return
    if len(buffer) >= record.itemsize:
        yield _parse(buffer, record, len(dims), final=True)
    if len(buffer) != _TRAILER:
        raise ProdmatchError("unexpected binary COPY layout while reading vectors")


def _parse(
    buffer: bytearray, record: np.dtype, spaces: int, *, final: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Whole records from the start of `buffer` (removed from it) as ids and float32 matrices."""
    available = len(buffer) - (_TRAILER if final else 0)
    count = available // record.itemsize
    rows = np.frombuffer(buffer, dtype=record, count=count)
    parsed = rows["id"].astype(np.int64), [rows[f"v{i}"].astype(np.float32) for i in range(spaces)]
    del rows  # a live view would forbid resizing the buffer
    del buffer[: count * record.itemsize]
    return parsed
