"""Keep the lexical space current: `prodmatch.lexical` rows for every product, weighted by up-to-date IDF.

A product needs a (new) lexical row when it has none or its `content_hash` differs from the row's (the same
generated hash that makes embeddings pending, so plain-SQL writes by applications are covered too; a deleted
product's row goes with it by ON DELETE CASCADE). `refresh_lexical` encodes those products
(`prodmatch.embed.lexical`), extracts their codes (`prodmatch.embed.codes`), updates the per-term document
frequencies in `prodmatch.lexical_terms`, and writes the raw terms and the IDF-weighted vector.

How IDF stays current as catalogues grow: every row records the number of documents its vector was weighted
with (`weighted_documents`). New and changed products are weighted with the current frequencies; when the number
of products has moved by more than `REWEIGH_FRACTION` since the oldest weighting, the frequencies are recounted
from the stored raw terms (which also forgets deleted products) and every vector is re-weighted. Between those
points, a vector's weights are at most that far from exact IDF, which moves cosines little (a term's idf is a
logarithm of the document count).

The whole refresh runs in one transaction under an advisory lock, so two refreshes (a worker and a `link`) never
count a product twice; it locks only the lexical tables, never `products`, so applications are not blocked.
`link`, `eval`, `matcher train` and `embed` call it first; `prodmatch embed --watch` after each wake-up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import psycopg
from psycopg import sql
from tqdm import tqdm

from prodmatch.config import IndexBuild, load_settings
from prodmatch.embed.codes import extract_codes
from prodmatch.embed.lexical import IdfTable, LexicalEncoder, idf_weights, weigh_many
from prodmatch.roles import with_roles
from prodmatch.store.catalogs import roles_by_catalog
from prodmatch.store.models import use_index_build
from prodmatch.store.schema import LEXICAL_DIMENSIONS, LEXICAL_HNSW

REWEIGH_FRACTION = 0.2  # re-weigh every vector when the product count moved this much since weighting
BATCH = 5000  # products encoded and written per round trip
# pgvector's in-memory HNSW element for m <= 16 (lists of 2m neighbours, m per upper layer), values aside.
_GRAPH_BYTES_PER_ELEMENT = 1024
_LOCK_KEY = 0x6C6578  # pg_advisory_xact_lock key of the lexical refresh ('lex')
_ENCODER = LexicalEncoder(dimensions=LEXICAL_DIMENSIONS)


@dataclass(frozen=True)
class LexicalRefresh:
    """What one refresh did."""

    encoded: int  # products (re-)encoded because they were new or changed
    reweighed: int  # vectors re-weighted because IDF moved
    documents: int  # products with a lexical row now
    seconds: float
    # Seconds of each step of a full rebuild (read, encode, weigh, write, index), in order; empty otherwise.
    steps: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        timing = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.steps.items())
        return (
            f"lexical space: {self.encoded} products encoded, {self.reweighed} re-weighted, "
            f"{self.documents} in all ({self.seconds:.1f} s{': ' + timing if timing else ''})"
        )


def refresh_lexical(
    conn: psycopg.Connection,
    *,
    progress: bool = False,
    build: IndexBuild | None = None,
    product_ids: Sequence[int] | None = None,
) -> LexicalRefresh:
    """Bring `prodmatch.lexical` up to date with `prodmatch.products` (see the module docstring).

    `build`: memory and parallel workers of the HNSW index build a full rebuild ends with (default: the
    settings' `index_build`, sized to the machine). `product_ids`: only these products can be stale (a watcher
    that knows what was written since its checkpoint), so the check reads them by key instead of joining every
    product with its lexical row; the IDF check and a full rebuild, when due, are the same."""
    started = time.perf_counter()
    only = "" if product_ids is None else " AND p.id = ANY(%(ids)s)"
    params = {} if product_ids is None else {"ids": list(product_ids)}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        documents = conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0]
        stale = conn.execute(
            "SELECT count(*) FROM prodmatch.products p LEFT JOIN prodmatch.lexical l ON l.product_id = p.id"
            " WHERE (l.product_id IS NULL OR l.content_hash <> p.content_hash)" + only,
            params,
        ).fetchone()[0]
        oldest = conn.execute("SELECT min(weighted_documents) FROM prodmatch.lexical").fetchone()[0]
        moved = oldest is not None and abs(documents - oldest) > REWEIGH_FRACTION * max(oldest, 1)
        if moved or (stale and (oldest is None or stale > REWEIGH_FRACTION * documents)):
            steps: dict[str, float] = {}
            encoded = _rebuild(conn, documents, progress, build, steps)
            return LexicalRefresh(encoded, encoded, documents, round(time.perf_counter() - started, 3), steps)
        df = _load_frequencies(conn)
        touched: set[int] = set()
        encoded = 0
        if stale:
            bar = tqdm(total=stale, unit="product", desc="lexical space", disable=not progress)
            with bar:
                for batch in _stale_batches(conn, only, params):
                    touched |= _apply_batch(conn, batch, df, documents)
                    encoded += len(batch)
                    bar.update(len(batch))
        if touched:
            _store_frequencies(conn, df, np.fromiter(touched, dtype=np.int64, count=len(touched)))
    return LexicalRefresh(encoded, 0, documents, round(time.perf_counter() - started, 3))


def lexical_index_build(build: IndexBuild, documents: int, nonzeros: int) -> IndexBuild:
    """`build` with its memory cut to what the lexical HNSW graph of `documents` vectors needs (`nonzeros` in all).

    A parallel HNSW build allocates all of `maintenance_work_mem` as shared memory before it starts: ~1.5 s per
    GB here, 5-14 s for the 4-8 GB that `IndexBuild.for_this_machine` gives. The graph needs ~1 kB per element
    (neighbour lists, tuple ids) plus 8 bytes per non-zero; twice that, at least 64 MB, never above `build`'s."""
    needed = max(64 * 2**20, 2 * (documents * _GRAPH_BYTES_PER_ELEMENT + nonzeros * 8))
    ceiling = _memory_bytes(build.maintenance_work_mem)
    if ceiling <= needed:
        return build
    return IndexBuild(maintenance_work_mem=f"{-(-needed // 2**20)}MB", workers=build.workers)


def lexical_idf(conn: psycopg.Connection) -> IdfTable:
    """The current IDF table (for weighting a query text the way stored products are weighted)."""
    df = _load_frequencies(conn)
    documents = conn.execute("SELECT count(*) FROM prodmatch.lexical").fetchone()[0]
    terms = np.flatnonzero(df)
    return idf_weights((terms, df[terms]), documents)


# --- sparse vectors in pgvector's text form ---------------------------------------------------------------

_PAIR = re.compile(r"(\d+):([^,}]+)")


def sparse_text(indices: np.ndarray, values: np.ndarray, dimensions: int = LEXICAL_DIMENSIONS) -> str:
    """pgvector's sparsevec text form; its indices are 1-based, ours 0-based."""
    body = ",".join(f"{i + 1}:{v:.6g}" for i, v in zip(indices.tolist(), values.tolist(), strict=True))
    return "{" + body + "}/" + str(dimensions)


def sparse_binary(indices: np.ndarray, values: np.ndarray, dimensions: int = LEXICAL_DIMENSIONS) -> bytes:
    """pgvector's binary sparsevec form (its `sparsevec_recv`): big-endian int32 dimensions, non-zeros, 0, then
    the 0-based int32 indices and the float32 values. Some 20 times cheaper to write than `sparse_text`."""
    header = np.array([dimensions, len(indices), 0], dtype=">i4").tobytes()
    return header + np.asarray(indices).astype(">i4").tobytes() + np.asarray(values).astype(">f4").tobytes()


def parse_sparse_text(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(0-based int32 indices, float32 values) of a sparsevec in pgvector's text form."""
    body = text[1 : text.index("}")]
    if not body:
        return np.empty(0, np.int32), np.empty(0, np.float32)
    pairs = np.array([p.split(":") for p in body.split(",")], dtype=np.float64)
    return (pairs[:, 0] - 1).astype(np.int32), pairs[:, 1].astype(np.float32)


# --- helpers ----------------------------------------------------------------------------------------------


def _stale_batches(conn: psycopg.Connection, only: str, params: dict) -> Iterator[list[tuple]]:
    """Rows (id, content_hash, product mapping, old raw terms or None) of new or changed products (`only`: an
    extra condition on p.id with its `params`)."""
    with conn.cursor(name="prodmatch_lexical_stale") as cur:
        cur.itersize = BATCH
        cur.execute(
            "SELECT p.id, p.content_hash, p.title, p.brand, p.category, p.description, p.attributes,"
            " l.terms::text, p.catalog_id"
            " FROM prodmatch.products p LEFT JOIN prodmatch.lexical l ON l.product_id = p.id"
            " WHERE (l.product_id IS NULL OR l.content_hash <> p.content_hash)" + only + " ORDER BY p.id",
            params,
        )
        while rows := cur.fetchmany(BATCH):
            yield rows


def _apply_batch(conn: psycopg.Connection, rows: list[tuple], df: np.ndarray, documents: int) -> set[int]:
    """Encode and store one batch of stale products; update `df` in place; return the terms whose df moved."""
    overrides = roles_by_catalog(conn)
    products = [
        with_roles(
            {"title": r[2], "brand": r[3], "category": r[4], "description": r[5], "attributes": r[6] or {}},
            overrides.get(r[8]),
        )
        for r in rows
    ]
    raw = _ENCODER.encode_many(products)
    old = [parse_sparse_text(row[7])[0] for row in rows if row[7] is not None]
    new = [indices for indices, _ in raw]
    for indices in old:
        np.subtract.at(df, indices, 1)
    for indices in new:
        np.add.at(df, indices, 1)
    touched = set(np.unique(np.concatenate([*old, *new, np.empty(0, np.int32)])).tolist())
    terms = np.flatnonzero(df)
    weighted = weigh_many(raw, idf_weights((terms, df[terms]), documents))
    _ensure_batch_table(conn)
    _copy_rows(
        conn,
        ("pg_temp", "lexical_batch"),
        (
            (row[0], row[1], sparse_binary(ri, rv), sparse_binary(wi, wv), extract_codes(product), documents)
            for row, product, (ri, rv), (wi, wv) in zip(rows, products, raw, weighted, strict=True)
        ),
    )
    conn.execute(
        # updated_at comes in with the rows (the same now() as the column's default) rather than `SET updated_at
        # = now()`: Citus refuses a function that is not IMMUTABLE in DO UPDATE SET on a distributed table.
        "INSERT INTO prodmatch.lexical AS l"
        " (product_id, content_hash, terms, vector, codes, weighted_documents, updated_at)"
        " SELECT product_id, content_hash, terms, vector, codes, weighted_documents, now()"
        " FROM pg_temp.lexical_batch"
        " ON CONFLICT (product_id) DO UPDATE SET content_hash = EXCLUDED.content_hash, terms = EXCLUDED.terms,"
        " vector = EXCLUDED.vector, codes = EXCLUDED.codes, weighted_documents = EXCLUDED.weighted_documents,"
        " updated_at = EXCLUDED.updated_at"
    )
    conn.execute("TRUNCATE pg_temp.lexical_batch")
    return touched


def _ensure_batch_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS lexical_batch (product_id bigint, content_hash uuid,"
        f" terms sparsevec({LEXICAL_DIMENSIONS}), vector sparsevec({LEXICAL_DIMENSIONS}), codes text[],"
        " weighted_documents bigint) ON COMMIT DROP"
    )


def _rebuild(
    conn: psycopg.Connection,
    documents: int,
    progress: bool,
    build: IndexBuild | None = None,
    steps: dict[str, float] | None = None,
) -> int:
    """Encode every product again, recount document frequencies and rewrite the lexical space in one pass.

    Used for the first build and whenever the product count moved by more than REWEIGH_FRACTION: writing into an
    HNSW index row by row costs ~7 ms per sparse vector here, so the index is dropped and built once at the end.
    `steps` receives the seconds of each step (read, encode, weigh, write, index).
    """
    steps = {} if steps is None else steps
    clock = _StepClock(steps)
    bar = tqdm(total=documents, unit="product", desc="lexical space (rebuild)", disable=not progress)
    ids, hashes, raw, codes = [], [], [], []
    overrides = roles_by_catalog(conn)  # each catalogue's attribute roles (prodmatch.roles)
    with bar, conn.cursor(name="prodmatch_lexical_all") as cur:
        cur.itersize = BATCH
        cur.execute(
            "SELECT id, content_hash, title, brand, category, description, attributes, catalog_id"
            " FROM prodmatch.products ORDER BY id"
        )
        while True:
            with clock("read"):
                rows = cur.fetchmany(BATCH)
            if not rows:
                break
            with clock("encode"):
                products = [
                    with_roles(
                        {
                            "title": r[2],
                            "brand": r[3],
                            "category": r[4],
                            "description": r[5],
                            "attributes": r[6] or {},
                        },
                        overrides.get(r[7]),
                    )
                    for r in rows
                ]
                raw += _ENCODER.encode_many(products)
                codes += [extract_codes(product) for product in products]
                ids += [r[0] for r in rows]
                hashes += [r[1] for r in rows]
            bar.update(len(rows))
    with clock("weigh"):
        df = np.zeros(LEXICAL_DIMENSIONS, dtype=np.int32)
        if raw:
            df += np.bincount(
                np.concatenate([indices for indices, _ in raw]), minlength=LEXICAL_DIMENSIONS
            ).astype(np.int32)
        terms = np.flatnonzero(df)
        weighted = weigh_many(raw, idf_weights((terms, df[terms]), documents))
    with clock("write"):
        conn.execute("DROP INDEX IF EXISTS prodmatch.lexical_vector_hnsw")
        conn.execute("TRUNCATE prodmatch.lexical")
        _copy_rows(
            conn,
            ("prodmatch", "lexical"),
            (
                (
                    product_id,
                    content_hash,
                    sparse_binary(ri, rv),
                    sparse_binary(wi, wv),
                    product_codes,
                    documents,
                )
                for product_id, content_hash, (ri, rv), (wi, wv), product_codes in zip(
                    ids, hashes, raw, weighted, codes, strict=True
                )
            ),
        )
        _store_frequencies(conn, df)
    with clock("index"):
        nonzeros = sum(len(indices) for indices, _ in weighted)
        use_index_build(
            conn, lexical_index_build(build or load_settings().index_build, len(ids), nonzeros), local=True
        )
        options = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Literal(value))
            for name, value in LEXICAL_HNSW.items()
        )
        conn.execute(
            sql.SQL(
                "CREATE INDEX lexical_vector_hnsw ON prodmatch.lexical USING hnsw (vector sparsevec_cosine_ops)"
                " WITH ({})"
            ).format(options)
        )
    return len(ids)


def _copy_rows(conn: psycopg.Connection, table: tuple[str, str], rows: Iterable[tuple]) -> None:
    """COPY lexical rows (sparse vectors as `sparse_binary` bytes) into `table` in binary form.

    Binary COPY names no type per field: the server reads each with its column's receive function, so the
    sparse vectors travel as plain bytes (psycopg's bytea dumper writes them as they are) and pgvector's
    `sparsevec_recv` checks them (dimensions, sorted unique indices, finite values) as it does any input."""
    statement = sql.SQL(
        "COPY {} (product_id, content_hash, terms, vector, codes, weighted_documents) FROM STDIN (FORMAT BINARY)"
    ).format(sql.Identifier(*table))
    with conn.cursor().copy(statement) as copy:
        copy.set_types(["int8", "uuid", "bytea", "bytea", "text[]", "int8"])
        for row in rows:
            copy.write_row(row)


class _StepClock:
    """Adds the seconds spent inside `with clock(step):` blocks to `steps[step]`."""

    def __init__(self, steps: dict[str, float]) -> None:
        self.steps = steps

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps[step] = round(self.steps.get(step, 0.0) + time.perf_counter() - started, 3)


def _memory_bytes(setting: str) -> int:
    """Bytes of a PostgreSQL memory setting such as 64MB or 4 GB (config.IndexBuild validates the form)."""
    number, unit = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB|TB)?\s*", setting).groups()
    return int(number) * {"kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, None: 2**10}[unit]


def _load_frequencies(conn: psycopg.Connection) -> np.ndarray:
    df = np.zeros(LEXICAL_DIMENSIONS, dtype=np.int32)
    rows = conn.execute("SELECT term, documents FROM prodmatch.lexical_terms").fetchall()
    if rows:
        table = np.array(rows, dtype=np.int64)
        df[table[:, 0]] = table[:, 1]
    return df


def _store_frequencies(conn: psycopg.Connection, df: np.ndarray, touched: np.ndarray | None = None) -> None:
    """Write the document frequencies: all of them (touched None), or only the terms that moved."""
    np.maximum(df, 0, out=df)
    if touched is None:
        conn.execute("TRUNCATE prodmatch.lexical_terms")
        terms = np.flatnonzero(df)
        with conn.cursor().copy("COPY prodmatch.lexical_terms (term, documents) FROM STDIN") as copy:
            for term, documents in zip(terms.tolist(), df[terms].tolist(), strict=True):
                copy.write_row((term, documents))
        return
    conn.execute("CREATE TEMP TABLE lexical_df (term integer PRIMARY KEY, documents integer) ON COMMIT DROP")
    with conn.cursor().copy("COPY pg_temp.lexical_df (term, documents) FROM STDIN") as copy:
        for term, documents in zip(touched.tolist(), df[touched].tolist(), strict=True):
            copy.write_row((term, documents))
    # The terms gone to zero as a parameter, not `USING pg_temp.lexical_df`: on Citus `lexical_terms` is a
    # reference table, and a DELETE may not join it to a temporary table ("relation lexical_df is not distributed").
    gone = touched[df[touched] == 0]
    if len(gone):
        conn.execute("DELETE FROM prodmatch.lexical_terms WHERE term = ANY(%s)", (gone.tolist(),))
    conn.execute(
        "INSERT INTO prodmatch.lexical_terms (term, documents) SELECT term, documents FROM pg_temp.lexical_df"
        " WHERE documents > 0 ON CONFLICT (term) DO UPDATE SET documents = EXCLUDED.documents"
    )
