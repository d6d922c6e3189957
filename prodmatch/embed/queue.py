"""The embedding queue in SQL: claim pending products, write their vectors, release what was not done.

The queue is the `prodmatch.embeddings` table itself: one row per (model, product), `status = 'pending'` when
the product is new or changed (the triggers in `sql/pending.sql`, and `models add`). There is no separate queue
table and no lock held between statements, so any number of workers, on one machine or many, share the work:

- a **claim** marks rows with the claiming backend (`claimed_pid`, `claimed_at`, `claimed_by` for people) and a
  **lease** (`claim_expires_at`); rows are taken with `FOR UPDATE SKIP LOCKED`, so two workers claiming at once
  never take the same row, and never wait for each other;
- a claim is **stale**, and claimable again, once its lease has run out or its backend is gone (a worker that
  died or lost its connection: its pid is no longer in `pg_stat_activity`, or belongs to a later backend);
- a **write** only touches rows this backend still holds, so a worker whose claim was taken over writes nothing
  and nothing is embedded twice;
- a **release** gives back rows this backend claimed but did not write (stop requested, shutting down).

`embed.worker` runs these in its loop; `embed.batch` makes the rows that `write` stores. Each function runs in
its own transaction on the connection it is given.
"""

from __future__ import annotations

import os
import secrets
import weakref
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from prodmatch.embed.batch import EmbeddingRow
from prodmatch.store.server import behind_pooler

# Claim up to %(limit)s pending rows of one model (optionally one catalogue), oldest product first, and return
# the products with every field a text template or image loader may need. A row is claimable when nobody holds
# it, its lease has expired, or the backend that claimed it is gone (`backend_start <= claimed_at` tells a live
# claimer from a later backend that happens to reuse its pid). SKIP LOCKED lets concurrent claims pass each
# other; the lease (%(lease)s seconds) bounds how long a hung but connected worker can sit on its rows.
CLAIM_SQL = """
WITH candidates AS (
    SELECT e.product_id
      FROM prodmatch.embeddings e
      JOIN prodmatch.products p ON p.id = e.product_id
     WHERE e.model_id = %(model)s
       AND e.status = 'pending'
       AND (%(catalog)s::bigint IS NULL OR p.catalog_id = %(catalog)s)
       AND (e.claimed_pid IS NULL
            OR e.claim_expires_at < now()
            -- a negative claimer is a pooled connection's token (no backend to ask after): its lease decides
            OR (e.claimed_pid > 0
                AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                 WHERE a.pid = e.claimed_pid
                                   -- NULL: another role's session (its backend_start is hidden): alive
                                   AND (a.backend_start IS NULL OR a.backend_start <= e.claimed_at))))
     ORDER BY e.product_id
     LIMIT %(limit)s
       FOR UPDATE OF e SKIP LOCKED
), claimed AS (
    UPDATE prodmatch.embeddings e
       SET claimed_by = %(worker)s, claimed_pid = pg_backend_pid(), claimed_at = now(),
           claim_expires_at = now() + make_interval(secs => %(lease)s)
      FROM candidates c
     WHERE e.model_id = %(model)s AND e.product_id = c.product_id
    RETURNING e.product_id
)
SELECT p.id, p.external_id, c.name AS catalog, p.title, p.description, p.brand, p.category, p.price,
       p.currency, p.image, p.attributes, p.content_hash
  FROM claimed
  JOIN prodmatch.products p ON p.id = claimed.product_id
  JOIN prodmatch.catalogs c ON c.id = p.catalog_id
 ORDER BY p.id
"""

# A batch's rows arrive by binary COPY into this session-private table (emptied at each commit), then one
# UPDATE moves them into place: one round trip per batch instead of one per product.
BATCH_TABLE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS embed_batch (
    product_id bigint, image_vector vector, text_vector vector, fused_vector vector,
    status text, error text, content_hash uuid
) ON COMMIT DELETE ROWS
"""

# Write the batch and end its claims. Only rows this backend still holds are written (`claimed_pid =
# pg_backend_pid()`): a row whose claim was taken over after a lease ran out belongs to the new claimer. A
# product that changed while it was being embedded (its content hash moved on) stays pending, with the interim
# vectors in place, and is embedded again with its new content. A model with halfvec storage keeps its vectors
# in the _half columns (store.models.vector_column). Returns the status of each row written.
WRITE_SQL = """
UPDATE prodmatch.embeddings e
   SET image_vector = CASE WHEN m.half THEN NULL ELSE b.image_vector END,
       text_vector = CASE WHEN m.half THEN NULL ELSE b.text_vector END,
       fused_vector = CASE WHEN m.half THEN NULL ELSE b.fused_vector END,
       image_half = CASE WHEN m.half THEN b.image_vector::halfvec END,
       text_half = CASE WHEN m.half THEN b.text_vector::halfvec END,
       fused_half = CASE WHEN m.half THEN b.fused_vector::halfvec END,
       status = CASE WHEN p.content_hash IS NOT DISTINCT FROM b.content_hash THEN b.status ELSE 'pending' END,
       error = b.error, attempts = e.attempts + 1, content_hash = b.content_hash, embedded_at = now(),
       claimed_by = NULL, claimed_pid = NULL, claimed_at = NULL, claim_expires_at = NULL
  FROM embed_batch b
  JOIN prodmatch.products p ON p.id = b.product_id
  CROSS JOIN (SELECT storage = 'halfvec' AS half FROM prodmatch.models WHERE id = %(model)s) m
 WHERE e.model_id = %(model)s AND e.product_id = b.product_id AND e.claimed_pid = pg_backend_pid()
RETURNING e.status
"""

# Give back every pending row of one model that this backend holds (a worker shutting down), so other workers
# need not wait for the lease to run out.
RELEASE_ALL_SQL = """
UPDATE prodmatch.embeddings
   SET claimed_by = NULL, claimed_pid = NULL, claimed_at = NULL, claim_expires_at = NULL
 WHERE model_id = %(model)s AND claimed_pid = pg_backend_pid() AND status = 'pending'
"""

# Give back some of this backend's claims: the batch claimed ahead when a stop was requested.
RELEASE_PRODUCTS_SQL = """
UPDATE prodmatch.embeddings
   SET claimed_by = NULL, claimed_pid = NULL, claimed_at = NULL, claim_expires_at = NULL
 WHERE model_id = %(model)s AND claimed_pid = pg_backend_pid() AND status = 'pending'
   AND product_id = ANY(%(ids)s)
"""

# On Citus (store.distribute: `embeddings` sharded by product, `products` replicated) a claim cannot lock rows
# with FOR UPDATE across shards, and the workers' shards do not know the coordinator's backends. So there a claim
# is a plain SELECT of claimable rows, then an UPDATE that re-checks claimability in its WHERE: a second claimer
# of the same row waits for the first one's row lock, re-reads the row (READ COMMITTED), finds it held by a live
# backend and skips it, so a row is still claimed once. The claimer's pid is the coordinator backend's
# (`%(pid)s`, the connection's), and the live backends are the coordinator's `pg_stat_activity`, read first and
# passed in as arrays. Writes and releases match `claimed_pid = %(pid)s` instead of `pg_backend_pid()`.
CITUS_LIVE_SQL = "SELECT array_agg(pid), array_agg(backend_start) FROM pg_stat_activity"
_CITUS_CLAIMABLE = """
       e.model_id = %(model)s AND e.status = 'pending'
   AND (e.claimed_pid IS NULL
        OR e.claim_expires_at < now()
        OR NOT EXISTS (SELECT 1 FROM unnest(%(live_pids)s::int[], %(live_starts)s::timestamptz[]) a(pid, started)
                        WHERE a.pid = e.claimed_pid AND (a.started IS NULL OR a.started <= e.claimed_at)))
"""
CITUS_CANDIDATES_SQL = (
    """
SELECT e.product_id
  FROM prodmatch.embeddings e
  JOIN prodmatch.products p ON p.id = e.product_id
 WHERE (%(catalog)s::bigint IS NULL OR p.catalog_id = %(catalog)s) AND"""
    + _CITUS_CLAIMABLE
    + """
 ORDER BY e.product_id
 LIMIT %(limit)s
"""
)
CITUS_CLAIM_SQL = (
    """
UPDATE prodmatch.embeddings e
   SET claimed_by = %(worker)s, claimed_pid = %(pid)s, claimed_at = now(),
       claim_expires_at = now() + make_interval(secs => %(lease)s)
 WHERE e.product_id = ANY (%(ids)s) AND"""
    + _CITUS_CLAIMABLE
    + """
RETURNING e.product_id
"""
)
CITUS_PRODUCTS_SQL = """
SELECT p.id, p.external_id, c.name AS catalog, p.title, p.description, p.brand, p.category, p.price,
       p.currency, p.image, p.attributes, p.content_hash
  FROM prodmatch.products p
  JOIN prodmatch.catalogs c ON c.id = p.catalog_id
 WHERE p.id = ANY (%(ids)s)
 ORDER BY p.id
"""

# How many rows are waiting, claimed or not (for the progress bar's total).
PENDING_COUNT_SQL = """
SELECT count(*)
  FROM prodmatch.embeddings e
  JOIN prodmatch.products p ON p.id = e.product_id
 WHERE e.model_id = %(model)s AND e.status = 'pending'
   AND (%(catalog)s::bigint IS NULL OR p.catalog_id = %(catalog)s)
"""

# Put products whose embedding failed (or lost its image) back in the queue, for one model or all.
REQUEUE_ERRORS_SQL = """
UPDATE prodmatch.embeddings e
   SET status = 'pending'
  FROM prodmatch.models m
 WHERE m.id = e.model_id AND e.status IN ('image_error', 'failed')
   AND (%(model)s::text IS NULL OR m.name = %(model)s)
"""


def claim(
    conn: psycopg.Connection,
    model_id: int,
    catalog_id: int | None,
    limit: int,
    worker: str,
    lease_seconds: int,
) -> list[dict]:
    """Claim up to `limit` pending products for this connection's backend (see CLAIM_SQL); their fields."""
    params = {
        "model": model_id,
        "catalog": catalog_id,
        "limit": limit,
        "worker": worker,
        "lease": lease_seconds,
    }
    if _on_citus(conn):
        return _claim_citus(conn, params)
    token = _pooled_token(conn)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if token is not None:
            return cur.execute(_citus_form(CLAIM_SQL), {**params, "pid": token}).fetchall()
        return cur.execute(CLAIM_SQL, params).fetchall()


def write(conn: psycopg.Connection, model_id: int, rows: list[EmbeddingRow]) -> list[str]:
    """Store a batch's vectors and statuses where this backend still holds the claim; the statuses written."""
    # Asked before the transaction: on a connection that has not asked yet (one just reconnected) the question
    # commits, which a transaction block forbids.
    by_token = _on_citus(conn) or _pooled_token(conn) is not None
    with conn.transaction():
        conn.execute(BATCH_TABLE_SQL)
        with conn.cursor().copy("COPY embed_batch FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(EmbeddingRow.COPY_TYPES))
            for row in rows:
                copy.write_row(row.as_copy_row())
        if by_token:
            return [r[0] for r in conn.execute(_citus_form(WRITE_SQL), _pid(conn, model=model_id)).fetchall()]
        return [r[0] for r in conn.execute(WRITE_SQL, {"model": model_id}).fetchall()]


def release(conn: psycopg.Connection, model_id: int, product_ids: list[int]) -> None:
    """Give back this backend's claims on `product_ids` (still pending) at once."""
    by_token = _on_citus(conn) or _pooled_token(conn) is not None  # before the transaction, as in `write`
    with conn.transaction():
        if by_token:
            conn.execute(_citus_form(RELEASE_PRODUCTS_SQL), _pid(conn, model=model_id, ids=product_ids))
        else:
            conn.execute(RELEASE_PRODUCTS_SQL, {"model": model_id, "ids": product_ids})


def release_all(conn: psycopg.Connection, model_id: int) -> None:
    """Give back every claim this backend holds for the model."""
    by_token = _on_citus(conn) or _pooled_token(conn) is not None  # before the transaction, as in `write`
    with conn.transaction():
        if by_token:
            conn.execute(_citus_form(RELEASE_ALL_SQL), _pid(conn, model=model_id))
        else:
            conn.execute(RELEASE_ALL_SQL, {"model": model_id})


def pending_count(conn: psycopg.Connection, model_id: int, catalog_id: int | None) -> int:
    """Rows of the model (and catalogue) waiting to be embedded."""
    row = conn.execute(PENDING_COUNT_SQL, {"model": model_id, "catalog": catalog_id}).fetchone()
    conn.commit()
    return row[0]


def requeue_errors(conn: psycopg.Connection, model_name: str | None) -> None:
    """Mark failed and image-error rows pending again (for one model by name, or all) and commit."""
    conn.execute(REQUEUE_ERRORS_SQL, {"model": model_name})
    conn.commit()


# What a Citus coordinator says when a worker node goes away in the middle of a statement (a lost connection
# before the statement is a ConnectionFailure, an OperationalError, already).
_LOST_NODE_MESSAGES = ("failure on connection marked as essential", "connection to the remote node")


def lost_citus_node(error: psycopg.Error) -> bool:
    """Whether `error` is a Citus coordinator losing a worker node: the worker reconnects and tries again."""
    return str(error).startswith(_LOST_NODE_MESSAGES)


def _on_citus(conn: psycopg.Connection) -> bool:
    """Whether the connection's database is a Citus coordinator (asked once per connection)."""
    known = _CITUS.get(conn)
    if known is None:
        from prodmatch.store.distribute import is_citus

        known = _CITUS[conn] = is_citus(conn)
        if not conn.autocommit:
            conn.commit()
    return known


_CITUS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _claim_citus(conn: psycopg.Connection, params: dict, attempts: int = 10) -> list[dict]:
    """CITUS_CANDIDATES_SQL then CITUS_CLAIM_SQL; when another worker took every candidate first, try again."""
    with conn.transaction():
        pids, starts = conn.execute(CITUS_LIVE_SQL).fetchone()
    params = {**params, "pid": conn.info.backend_pid, "live_pids": pids, "live_starts": starts}
    for _ in range(attempts):
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            ids = [r["product_id"] for r in cur.execute(CITUS_CANDIDATES_SQL, params).fetchall()]
            if not ids:
                return []
            claimed = [
                r["product_id"] for r in cur.execute(CITUS_CLAIM_SQL, {**params, "ids": ids}).fetchall()
            ]
            if claimed:
                return cur.execute(CITUS_PRODUCTS_SQL, {"ids": claimed}).fetchall()
    return []


def _citus_form(query: str) -> str:
    return query.replace("pg_backend_pid()", "%(pid)s")


def _pid(conn: psycopg.Connection, **params) -> dict:
    token = _pooled_token(conn)
    return {**params, "pid": conn.info.backend_pid if token is None else token}


def _pooled_token(conn: psycopg.Connection) -> int | None:
    """The claimer id of a connection behind a pooler, or None for a direct one (claims use pg_backend_pid()).

    Behind a pooler (PgBouncer) the backend that claims a batch in one transaction may not be the one that writes
    it in the next, so a claim there is held by a negative token that lives as long as the connection; nothing
    tells whether its holder is alive, so such a claim ends with its lease (`store.server.behind_pooler`)."""
    if conn not in _TOKENS:
        with conn.transaction():
            pooled = behind_pooler(conn)
        _TOKENS[conn] = -secrets.randbelow(2**31 - 1) - 1 if pooled else None
    return _TOKENS[conn]


_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# The folders catalogue files were ingested with: relative image paths were resolved against them, so a local
# image reference must stay inside one of them (ingest records the resolved folder as options.images_base;
# runs from before that recorded it have the file's folder or --images-root).
IMAGE_ROOTS_SQL = """
SELECT DISTINCT coalesce(options->>'images_base', options->>'images_root', file) AS root,
       options->>'images_base' IS NULL AND options->>'images_root' IS NULL AS is_file
  FROM prodmatch.ingest_runs
"""


def image_roots(conn: psycopg.Connection) -> tuple[Path, ...]:
    """Resolved images roots of every ingest run (see IMAGE_ROOTS_SQL)."""
    roots = []
    for root, is_file in conn.execute(IMAGE_ROOTS_SQL):
        path = Path(root).parent if is_file else Path(root)
        if path.is_absolute():
            roots.append(Path(os.path.realpath(path)))
    return tuple(sorted(set(roots)))
