-- prodmatch: wake the watchers of stored link runs (`prodmatch link ... --watch`) when matches may have to move.
--
-- NOTIFY prodmatch_changed is sent, once per statement, when products are inserted (whether or not a model is
-- registered), when products are deleted (by an application's DELETE, `ingest --prune` or a catalogue drop), and
-- when the embedding worker writes vectors (an UPDATE that sets embeddings.embedded_at). A watcher wakes on it
-- instead of waiting for its poll interval; the poll stays as the safety net for anything else (a lost
-- connection, a TRUNCATE). Notifications are delivered at commit and identical ones within one transaction are
-- folded into one, so a 100,000-row ingest wakes each watcher once.

CREATE OR REPLACE FUNCTION prodmatch.notify_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('prodmatch_changed', TG_TABLE_NAME || ' ' || lower(TG_OP));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS products_changed ON prodmatch.products;
CREATE TRIGGER products_changed
    AFTER INSERT OR DELETE ON prodmatch.products
    FOR EACH STATEMENT EXECUTE FUNCTION prodmatch.notify_changed();

DROP TRIGGER IF EXISTS embeddings_written ON prodmatch.embeddings;
CREATE TRIGGER embeddings_written
    AFTER UPDATE OF embedded_at ON prodmatch.embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION prodmatch.notify_changed();
