-- prodmatch on Citus: the pending and change triggers of sql/pending.sql and sql/changes.sql, for a coordinator
-- where `prodmatch.products` is a reference table and `prodmatch.embeddings` is distributed (store/distribute.py).
--
-- Citus runs a reference table's triggers on every copy of the table (the coordinator's and each worker's) and
-- cannot plan a distributed query that reads a trigger's transition table. So the triggers fire only on the
-- coordinator (`WHEN (citus_is_coordinator())`: its NOTIFY reaches the coordinator's listeners, where `embed
-- --watch` and `link --watch` wait), and the functions below first read the transition tables into an array of
-- product ids, then write the distributed table with that array as a parameter. One statement, one firing: a
-- 100,000-row upsert still costs one INSERT and one UPDATE on `embeddings`, as on one node.

CREATE OR REPLACE FUNCTION prodmatch.products_inserted_citus() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := ARRAY(SELECT n.id FROM new_rows n);
BEGIN
    INSERT INTO prodmatch.embeddings (model_id, product_id)
    SELECT m.id, i.id FROM unnest(ids) AS i(id) CROSS JOIN prodmatch.models m
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('prodmatch_pending', 'products');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION prodmatch.products_updated_citus() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := ARRAY(SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
                           WHERE n.content_hash IS DISTINCT FROM o.content_hash);
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE prodmatch.embeddings e
       SET status = 'pending', attempts = 0, error = NULL
     WHERE e.product_id = ANY (ids)
       AND e.status <> 'pending';
    IF FOUND THEN
        PERFORM pg_notify('prodmatch_pending', 'products');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS products_inserted ON prodmatch.products;
CREATE TRIGGER products_inserted
    AFTER INSERT ON prodmatch.products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT WHEN (citus_is_coordinator()) EXECUTE FUNCTION prodmatch.products_inserted_citus();

DROP TRIGGER IF EXISTS products_updated ON prodmatch.products;
CREATE TRIGGER products_updated
    AFTER UPDATE ON prodmatch.products
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT WHEN (citus_is_coordinator()) EXECUTE FUNCTION prodmatch.products_updated_citus();

-- Row-level and touching only its own row: the same on every copy of the table.
DROP TRIGGER IF EXISTS products_touch ON prodmatch.products;
CREATE TRIGGER products_touch
    BEFORE UPDATE ON prodmatch.products
    FOR EACH ROW
    WHEN ((OLD.title, OLD.description, OLD.brand, OLD.category, OLD.price, OLD.currency, OLD.image, OLD.attributes)
          IS DISTINCT FROM
          (NEW.title, NEW.description, NEW.brand, NEW.category, NEW.price, NEW.currency, NEW.image, NEW.attributes))
    EXECUTE FUNCTION prodmatch.products_touch();

DROP TRIGGER IF EXISTS products_changed ON prodmatch.products;
CREATE TRIGGER products_changed
    AFTER INSERT OR DELETE ON prodmatch.products
    FOR EACH STATEMENT WHEN (citus_is_coordinator()) EXECUTE FUNCTION prodmatch.notify_changed();

-- `embeddings_written` (NOTIFY when vectors are written) is not kept: on a distributed table a trigger
-- fires on the worker that holds the shard, and a NOTIFY there reaches no one. Watchers then see new vectors at
-- their next poll (`link --watch --poll-seconds`).
DROP TRIGGER IF EXISTS embeddings_written ON prodmatch.embeddings;
