-- prodmatch on Citus: the pending and change triggers of sql/pending.sql and sql/changes.sql, for a coordinator
-- where `prodmatch.products` is a reference table and `prodmatch.embeddings` is distributed (store/distribute.py).
--
-- Citus runs a reference table's triggers on every copy of the table (the coordinator's and each worker's) and
-- cannot plan a distributed query that reads a trigger's transition table. So the triggers fire only on the
-- coordinator (`WHEN (citus_is_coordinator())`: its NOTIFY reaches the coordinator's listeners, where `embed
-- --watch` and `link --watch` wait), and read the transition tables on the coordinator (below).

-- The triggers fire while the coordinator is still sending the statement to the other copies of `products`
-- (a COPY, an INSERT ... SELECT run on every copy), and a distributed write from inside them then fails
-- ("another command is already in progress"). So they only note the product ids in a plain table of the
-- coordinator, and a deferred trigger on that table writes `embeddings` at commit, when the connections to the
-- workers are free: once per transaction (its first firing takes every noted id; the others find none).
CREATE TABLE IF NOT EXISTS prodmatch.citus_product_changes (product_id bigint NOT NULL, inserted boolean NOT NULL);

CREATE OR REPLACE FUNCTION prodmatch.products_inserted_citus() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO prodmatch.citus_product_changes SELECT n.id, true FROM new_rows n;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION prodmatch.products_updated_citus() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO prodmatch.citus_product_changes
    SELECT n.id, false FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE n.content_hash IS DISTINCT FROM o.content_hash;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION prodmatch.citus_apply_product_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    new_ids bigint[];
    changed_ids bigint[];
    queued boolean := false;
BEGIN
    WITH taken AS (DELETE FROM prodmatch.citus_product_changes c RETURNING c.product_id, c.inserted)
    SELECT array_agg(t.product_id) FILTER (WHERE t.inserted), array_agg(t.product_id) FILTER (WHERE NOT t.inserted)
      INTO new_ids, changed_ids FROM taken t;
    IF new_ids IS NOT NULL THEN
        INSERT INTO prodmatch.embeddings (model_id, product_id)
        SELECT m.id, i.id FROM unnest(new_ids) AS i(id) CROSS JOIN prodmatch.models m
        ON CONFLICT DO NOTHING;
        queued := FOUND;
    END IF;
    IF changed_ids IS NOT NULL THEN
        UPDATE prodmatch.embeddings e
           SET status = 'pending', attempts = 0, error = NULL
         WHERE e.product_id = ANY (changed_ids) AND e.status <> 'pending';
        queued := queued OR FOUND;
    END IF;
    IF queued THEN
        PERFORM pg_notify('prodmatch_pending', 'products');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS citus_product_changes_applied ON prodmatch.citus_product_changes;
CREATE CONSTRAINT TRIGGER citus_product_changes_applied
    AFTER INSERT ON prodmatch.citus_product_changes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION prodmatch.citus_apply_product_changes();

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

-- prodmatch.candidates (sql/matching.sql) joins each source to its k nearest targets in a LATERAL subquery with
-- LIMIT, which Citus cannot push down to the shards. Its Citus form: the same signature and rows, one nearest-
-- neighbour query per source (each runs on every shard and is merged by the coordinator, like similar()), and
-- the ranks and similarities computed on the coordinator from materialized results. The query vector travels as
-- text (its type depends on the space and the model's storage), cast back to the index's type.
CREATE OR REPLACE FUNCTION prodmatch.candidates(
    source_catalog text,
    target_catalog text,
    k integer DEFAULT 5,
    space text DEFAULT 'fused',
    model text DEFAULT NULL,
    ef_search integer DEFAULT 100,
    source_ids bigint[] DEFAULT NULL
)
RETURNS TABLE (
    source_product_id bigint, target_product_id bigint, rank integer,
    fused_similarity real, image_similarity real, text_similarity real, lexical_similarity real
)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    m integer;
    source_id bigint;
    target_id bigint;
    nearest text;
    query_expr text;
    src record;
BEGIN
    IF space = 'lexical' THEN
        m := prodmatch.model_id_or_null(model);
        nearest := $n$
            SELECT l.product_id, l.vector <=> $1::sparsevec AS distance
              FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id
             WHERE p.catalog_id = $2 ORDER BY l.vector <=> $1::sparsevec LIMIT $3 $n$;
        query_expr := 'sl.vector';
    ELSE
        m := prodmatch.model_id(model);
        nearest := format($n$
            SELECT e.product_id, %1$s <=> $1::%3$s AS distance
              FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id
             WHERE e.model_id = %2$s AND p.catalog_id = $2 ORDER BY %1$s <=> $1::%3$s LIMIT $3 $n$,
            prodmatch.vector_expr(m, space, 'e'), m, prodmatch.index_type(m, space));
        query_expr := prodmatch.vector_expr(m, space, 's');
    END IF;
    source_id := prodmatch.catalog_id(source_catalog);
    target_id := prodmatch.catalog_id(target_catalog);
    IF ef_search IS NOT NULL THEN
        PERFORM set_config('hnsw.ef_search', ef_search::text, true);
    END IF;
    FOR src IN EXECUTE format($s$
        SELECT sp.id, (%1$s)::text AS query, coalesce(s.fused_vector, s.fused_half::vector) AS fused,
               coalesce(s.image_vector, s.image_half::vector) AS image,
               coalesce(s.text_vector, s.text_half::vector) AS text, sl.vector AS lexical
          FROM prodmatch.products sp
          LEFT JOIN prodmatch.embeddings s ON s.product_id = sp.id AND s.model_id = $2
          LEFT JOIN prodmatch.lexical sl ON sl.product_id = sp.id
         WHERE sp.catalog_id = $1 AND %1$s IS NOT NULL AND ($3::bigint[] IS NULL OR sp.id = ANY($3))
         ORDER BY sp.id $s$, query_expr)
        USING source_id, m, source_ids
    LOOP
        RETURN QUERY EXECUTE format($q$
            WITH nearest AS MATERIALIZED (%1$s),
            scored AS MATERIALIZED (
                SELECT n.product_id, n.distance,
                       (1 - ($6 <=> coalesce(te.fused_vector, te.fused_half::vector)))::real AS fused,
                       (1 - ($7 <=> coalesce(te.image_vector, te.image_half::vector)))::real AS image,
                       (1 - ($8 <=> coalesce(te.text_vector, te.text_half::vector)))::real AS text,
                       (1 - ($9 <=> tl.vector))::real AS lexical
                  FROM nearest n
                  LEFT JOIN prodmatch.embeddings te ON te.product_id = n.product_id AND te.model_id = $5
                  LEFT JOIN prodmatch.lexical tl ON tl.product_id = n.product_id
            )
            SELECT $4::bigint, s.product_id,
                   (row_number() OVER (ORDER BY s.distance, s.product_id))::integer AS rank,
                   s.fused, s.image, s.text, s.lexical
              FROM scored s
             ORDER BY rank $q$, nearest)
        USING src.query, target_id, k, src.id, m, src.fused, src.image, src.text, src.lexical;
    END LOOP;
END
$$;
