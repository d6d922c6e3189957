-- prodmatch on Citus: the pending and change triggers of sql/pending.sql and sql/changes.sql, for a coordinator
-- where `prodmatch.products` is a reference table and `prodmatch.embeddings` is distributed (store/distribute.py).
--
-- Citus runs a reference table's triggers on every copy of the table (the coordinator's and each worker's) and
-- cannot plan a distributed query that reads a trigger's transition table. So the triggers fire only on the
-- coordinator (`WHEN (citus_is_coordinator())`: its NOTIFY reaches the coordinator's listeners, where `embed
-- --watch` and `link --watch` wait), and read the transition tables on the coordinator (below).

-- The triggers fire while the coordinator is still sending the statement to the other copies of `products`
-- (a COPY, an INSERT ... SELECT run on every copy), and a distributed write from inside them then fails
-- ("another command is already in progress"). So they only note the statement's product ids, as one array in one
-- row of a plain table of the coordinator, and a deferred trigger on that table writes `embeddings` at commit,
-- when the connections to the workers are free: its first firing takes every noted set, the others find none.
-- One row per statement, not per product: a deferred trigger fires once per row, and each firing scans the
-- table, whose rows the first firing deleted but which stay in its pages until the transaction ends; one row
-- per product made a one-statement COPY of n products cost n scans of n dead rows (60,000 products: 34 s).
-- The earlier one-row-per-product form:
DROP TABLE IF EXISTS prodmatch.citus_product_changes;
CREATE TABLE IF NOT EXISTS prodmatch.citus_product_change_sets (
    product_ids bigint[] NOT NULL,
    inserted boolean NOT NULL
);

CREATE OR REPLACE FUNCTION prodmatch.products_inserted_citus() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO prodmatch.citus_product_change_sets
    SELECT array_agg(n.id), true FROM new_rows n HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION prodmatch.products_updated_citus() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO prodmatch.citus_product_change_sets
    SELECT array_agg(n.id), false FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE n.content_hash IS DISTINCT FROM o.content_hash
    HAVING count(*) > 0;
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
    WITH taken AS (DELETE FROM prodmatch.citus_product_change_sets c RETURNING c.product_ids, c.inserted)
    SELECT array_agg(i.id) FILTER (WHERE t.inserted), array_agg(i.id) FILTER (WHERE NOT t.inserted)
      INTO new_ids, changed_ids FROM taken t CROSS JOIN unnest(t.product_ids) AS i(id);
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

DROP TRIGGER IF EXISTS citus_product_changes_applied ON prodmatch.citus_product_change_sets;
CREATE CONSTRAINT TRIGGER citus_product_changes_applied
    AFTER INSERT ON prodmatch.citus_product_change_sets
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

-- A call's ef_search (similar(), search()) must reach the workers, where the index scans run (candidates() passes
-- it to its shard calls). A setting made with set_config() inside a function stays on the coordinator; a SET
-- LOCAL command is passed on by Citus to the workers taking part in the transaction
-- (`citus.propagate_set_commands = 'local'`, set for the database by `db upgrade`). Citus sends it with the
-- BEGIN of each worker's transaction block, which it opens for a distributed query inside a transaction block
-- or after a subplan (similar() and search() materialize their nearest rows, so that holds for them also in
-- autocommit). The iterative scan is set the same way (the functions' own SET clause stays on the coordinator).
CREATE OR REPLACE FUNCTION prodmatch.set_ef_search(ef_search integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET LOCAL hnsw.ef_search = %s', ef_search);
    SET LOCAL hnsw.iterative_scan = relaxed_order;
END
$$;

-- prodmatch.similar (sql/matching.sql) on Citus: the same function, whose last step (prodmatch.similar_rows_sql)
-- reads the k nearest products' vectors by id instead of LEFT JOINing `embeddings` and `lexical`. Its nearest
-- rows are a materialized CTE, on Citus an intermediate result, and Citus plans an outer join of an intermediate
-- result to a sharded table by copying the whole sharded table (every vector of the model) to the coordinator, on
-- every call (at 100,000 products it filled the disk). Here the k products' rows are read by id (`= ANY (ARRAY(
-- SELECT ... FROM nearest))`, run on every shard) and joined on the coordinator. The same rows as on one node,
-- which keeps the join (there the by-id form measured 0 to 0.07 ms slower per call, 100,000 products).
CREATE OR REPLACE FUNCTION prodmatch.similar_rows_sql() RETURNS text
LANGUAGE sql IMMUTABLE
AS $f$ SELECT $q$
        WITH nearest AS MATERIALIZED (%1$s),
        vectors AS MATERIALIZED (
            SELECT e.product_id, coalesce(e.fused_vector, e.fused_half::vector) AS fused,
                   coalesce(e.image_vector, e.image_half::vector) AS image,
                   coalesce(e.text_vector, e.text_half::vector) AS text
              FROM prodmatch.embeddings e
             WHERE e.model_id = $19 AND e.product_id = ANY (ARRAY(SELECT n.product_id FROM nearest n))
        ),
        lexicals AS MATERIALIZED (
            SELECT l.product_id, l.vector FROM prodmatch.lexical l
             WHERE l.product_id = ANY (ARRAY(SELECT n.product_id FROM nearest n))
        )
        SELECT n.product_id, c.name, p.external_id, p.title, p.brand, p.price,
               (1 - (v.fused <=> $15))::real, (1 - (v.image <=> $16))::real, (1 - (v.text <=> $17))::real,
               (1 - (l.vector <=> $1))::real
          FROM nearest n
          JOIN prodmatch.products p ON p.id = n.product_id
          JOIN prodmatch.catalogs c ON c.id = p.catalog_id
          LEFT JOIN vectors v ON v.product_id = n.product_id
          LEFT JOIN lexicals l ON l.product_id = n.product_id
         ORDER BY n.distance, n.product_id
        $q$::text $f$;

-- prodmatch.candidates (sql/matching.sql) joins each source to its k nearest targets in a LATERAL subquery with
-- LIMIT, which Citus cannot push down to the shards (the LIMIT is per source, not per shard); one distributed
-- query per source instead pays the distributed planner and a fan-out to every shard for each source (5-20
-- sources a second on a local cluster). The Citus form runs that LATERAL on every shard itself, for a batch of
-- sources at once: `run_command_on_colocated_placements` sends each co-located (embeddings, lexical) shard pair
-- one call of `prodmatch.shard_nearest` (below) carrying the batch's query vectors; each shard answers the k
-- nearest of its rows per source from its own HNSW index, and the coordinator keeps the k best of all shards per
-- source (a correct top k, as for similar()) and computes every space's similarity from the vectors of the pairs
-- kept. Same signature and rows as the single-node form. The shard calls run on connections of their own, so
-- they see committed rows only (what `link` and an analyst search is committed), and `ef_search` travels with
-- them as an argument.

-- One shard's k nearest targets of each query vector of a batch, as JSON [[query ordinal, product id, distance],
-- ...]. Runs on a worker, on the shards named by the coordinator (products_shard is the reference table's copy
-- on that node); expression is the model's index expression (prodmatch.vector_expr, alias e), query_type its type.
CREATE OR REPLACE FUNCTION prodmatch.shard_nearest(
    embeddings_shard regclass,
    lexical_shard regclass,
    products_shard regclass,
    space text,
    model_id integer,
    expression text,
    query_type regtype,
    target_catalog_id bigint,
    k integer,
    ef_search integer,
    queries text[]
)
RETURNS text
LANGUAGE plpgsql
SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    nearest text;
    found text;
BEGIN
    IF ef_search IS NOT NULL THEN
        PERFORM set_config('hnsw.ef_search', ef_search::text, true);
    END IF;
    IF space = 'lexical' THEN
        nearest := format($n$
            SELECT l.product_id, l.vector <=> q.v::sparsevec AS distance
              FROM %1$s l JOIN %2$s p ON p.id = l.product_id
             WHERE p.catalog_id = $2 ORDER BY l.vector <=> q.v::sparsevec LIMIT $3 $n$,
            lexical_shard, products_shard);
    ELSE
        nearest := format($n$
            SELECT e.product_id, %1$s <=> q.v::%2$s AS distance
              FROM %3$s e JOIN %4$s p ON p.id = e.product_id
             WHERE e.model_id = $4 AND p.catalog_id = $2 ORDER BY %1$s <=> q.v::%2$s LIMIT $3 $n$,
            expression, query_type, embeddings_shard, products_shard);
    END IF;
    EXECUTE format($q$
        SELECT coalesce(json_agg(json_build_array(q.i, n.product_id, n.distance)), '[]')::text
          FROM unnest($1) WITH ORDINALITY AS q(v, i) CROSS JOIN LATERAL (%s) n $q$, nearest)
       INTO found USING queries, target_catalog_id, k, model_id;
    RETURN found;
END
$$;

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
AS $$
DECLARE
    batch_size constant integer := 500;  -- sources per shard call: ~1 MB of query vectors at 256 dimensions
    m integer;
    source_id bigint;
    target_id bigint;
    expression text;
    query_type text;
    query_expr text;
    products_shard text;
    ids bigint[];
    queries text[];
    command text;
    results text[];
    failure text;
    first integer := 1;
BEGIN
    IF space = 'lexical' THEN
        m := prodmatch.model_id_or_null(model);
        query_expr := 'sl.vector';
        query_type := 'sparsevec';
    ELSE
        m := prodmatch.model_id(model);
        expression := prodmatch.vector_expr(m, space, 'e');
        query_type := prodmatch.index_type(m, space);
        query_expr := prodmatch.vector_expr(m, space, 's');
    END IF;
    source_id := prodmatch.catalog_id(source_catalog);
    target_id := prodmatch.catalog_id(target_catalog);
    SELECT shard_name(s.logicalrelid, s.shardid) INTO products_shard
      FROM pg_dist_shard s WHERE s.logicalrelid = 'prodmatch.products'::regclass;
    EXECUTE format($s$
        SELECT array_agg(sp.id ORDER BY sp.id), array_agg((%1$s)::text ORDER BY sp.id)
          FROM prodmatch.products sp
          LEFT JOIN prodmatch.embeddings s ON s.product_id = sp.id AND s.model_id = $2
          LEFT JOIN prodmatch.lexical sl ON sl.product_id = sp.id
         WHERE sp.catalog_id = $1 AND %1$s IS NOT NULL AND ($3::bigint[] IS NULL OR sp.id = ANY($3)) $s$,
        query_expr)
       INTO ids, queries USING source_id, m, source_ids;
    WHILE first <= coalesce(cardinality(ids), 0) LOOP
        -- run_command_on_colocated_placements puts each placement's two shard names in place of the two %s
        -- (with format()), so any other % is doubled.
        command := 'SELECT prodmatch.shard_nearest(''%s'', ''%s'', ' || replace(format(
            '%L, %L, %L, %L, %L, %L, %L, %L, %L)', products_shard, space, m, expression, query_type, target_id,
            k, ef_search, queries[first : first + batch_size - 1]), '%', '%%');
        SELECT array_agg(r.result) FILTER (WHERE r.success),
               min(r.nodename || ':' || r.nodeport || ': ' || r.result) FILTER (WHERE NOT r.success)
          INTO results, failure
          FROM run_command_on_colocated_placements('prodmatch.embeddings', 'prodmatch.lexical', command) r;
        IF failure IS NOT NULL THEN
            RAISE EXCEPTION 'prodmatch: candidates failed on the Citus worker %', failure;
        END IF;
        RETURN QUERY
        WITH found AS (
            SELECT ids[first + (x ->> 0)::integer - 1] AS source, (x ->> 1)::bigint AS product_id,
                   (x ->> 2)::float8 AS distance
              FROM unnest(results) AS r(result), json_array_elements(r.result::json) x
        ),
        best AS MATERIALIZED (
            SELECT ranked.* FROM (
                SELECT f.source, f.product_id,
                       row_number() OVER (PARTITION BY f.source ORDER BY f.distance, f.product_id) AS rank
                  FROM found f
            ) ranked WHERE ranked.rank <= k
        ),
        involved AS MATERIALIZED (SELECT b.source AS id FROM best b UNION SELECT b.product_id FROM best b),
        vectors AS MATERIALIZED (
            SELECT e.product_id, coalesce(e.fused_vector, e.fused_half::vector) AS fused,
                   coalesce(e.image_vector, e.image_half::vector) AS image,
                   coalesce(e.text_vector, e.text_half::vector) AS text
              FROM prodmatch.embeddings e
             WHERE e.model_id = m AND e.product_id = ANY (ARRAY(SELECT i.id FROM involved i))
        ),
        lexicals AS MATERIALIZED (
            SELECT l.product_id, l.vector FROM prodmatch.lexical l
             WHERE l.product_id = ANY (ARRAY(SELECT i.id FROM involved i))
        )
        SELECT b.source, b.product_id, b.rank::integer,
               (1 - (sv.fused <=> tv.fused))::real, (1 - (sv.image <=> tv.image))::real,
               (1 - (sv.text <=> tv.text))::real, (1 - (sl.vector <=> tl.vector))::real
          FROM best b
          LEFT JOIN vectors sv ON sv.product_id = b.source
          LEFT JOIN vectors tv ON tv.product_id = b.product_id
          LEFT JOIN lexicals sl ON sl.product_id = b.source
          LEFT JOIN lexicals tl ON tl.product_id = b.product_id
         ORDER BY b.source, b.rank;
        first := first + batch_size;
    END LOOP;
END
$$;
