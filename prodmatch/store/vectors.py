"""Vectors out of the database in bulk: a binary COPY of a model's image, text and fused vectors into numpy.

`fetch_vectors` and `fetch_spaces` stream `prodmatch.embeddings` for a model (optionally some catalogues) with
`COPY ... TO STDOUT (FORMAT BINARY)` and parse pgvector's binary form straight into float32 arrays, with NaN
rows where a vector is missing; much faster than row-by-row fetching for whole catalogues. Used by
`match.candidates` and `match.link` (exact search), `match.index_check` and `quality.evaluate`.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from prodmatch.errors import ProdmatchError
from prodmatch.store.models import SPACES, Model, space_dimension, vector_column

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
            column=sql.Identifier("e", vector_column(model, name)), dim=sql.Literal(dim)
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
        required=sql.Identifier("e", vector_column(model, space)),
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
        if model.storage == "halfvec":
            # rounding to 2-byte floats moves a unit vector's length by ~1e-3; the exact search and every
            # cosine computed from these arrays assume unit length (an exact duplicate must score 1.0)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            np.divide(matrix, norms, out=matrix, where=norms > 0)
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
