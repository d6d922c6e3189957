"""TODO docstring."""

from __future__ import annotations

_CLAIM_SQL = """
WITH candidates AS (
    SELECT e.product_id
      FROM prodmatch.embeddings e
      JOIN prodmatch.products p ON p.id = e.product_id
     WHERE e.model_id = %(model)s
       AND e.status = 'pending'
       AND (%(catalog)s::bigint IS NULL OR p.catalog_id = %(catalog)s)
       AND (e.claimed_pid IS NULL
            OR e.claim_expires_at < now()
            OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                            WHERE a.pid = e.claimed_pid
                              -- NULL: another role's session (its backend_start is hidden): alive
                              AND (a.backend_start IS NULL OR a.backend_start <= e.claimed_at)))
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

_BATCH_TABLE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS embed_batch (
    product_id bigint, image_vector vector, text_vector vector, fused_vector vector,
    status text, error text, content_hash uuid
) ON COMMIT DELETE ROWS
"""

# Only rows this backend still holds are written; a product that changed while it was being embedded stays
# pending (its new content is embedded next time), with the interim vectors in place.
_WRITE_SQL = """
UPDATE prodmatch.embeddings e
   SET image_vector = b.image_vector, text_vector = b.text_vector, fused_vector = b.fused_vector,
       status = CASE WHEN p.content_hash IS NOT DISTINCT FROM b.content_hash THEN b.status ELSE 'pending' END,
       error = b.error, attempts = e.attempts + 1, content_hash = b.content_hash, embedded_at = now(),
       claimed_by = NULL, claimed_pid = NULL, claimed_at = NULL, claim_expires_at = NULL
  FROM embed_batch b
  JOIN prodmatch.products p ON p.id = b.product_id
 WHERE e.model_id = %(model)s AND e.product_id = b.product_id AND e.claimed_pid = pg_backend_pid()
RETURNING e.status
"""

_RELEASE_SQL = """
UPDATE prodmatch.embeddings
   SET claimed_by = NULL, claimed_pid = NULL, claimed_at = NULL, claim_expires_at = NULL
 WHERE model_id = %(model)s AND claimed_pid = pg_backend_pid() AND status = 'pending'
"""
