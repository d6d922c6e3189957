-- prodmatch: the SQL API for matching. Installed and upgraded by the Alembic migrations; `prodmatch similar`,
-- `search`, `link` and `dedupe` call these same functions. Reference: docs/sql.md.
--
-- Vectors live in prodmatch.embeddings with no fixed dimension: a model with `vector` storage in
-- (image|text|fused)_vector, one with `halfvec` storage (2-byte floats) in (image|text|fused)_half. Each model has
-- partial HNSW indexes on its columns cast to its dimension (prodmatch.vector_expr builds that expression), so every
-- nearest-neighbour query here orders by exactly that expression and filters on the model id: the planner then
-- uses the model's index. Filtered queries use pgvector's iterative index scans (hnsw.iterative_scan), so a
-- filter that keeps 1% of the rows still returns k rows when k exist.

-- The id of a model by name; with no name, the only registered model.
CREATE OR REPLACE FUNCTION prodmatch.model_id(model text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found integer;
    n integer;
BEGIN
    IF model IS NOT NULL THEN
        SELECT m.id INTO found FROM prodmatch.models m WHERE m.name = model;
        IF found IS NULL THEN
            RAISE EXCEPTION 'prodmatch: no model named %', model
                USING HINT = 'SELECT name FROM prodmatch.models;';
        END IF;
        RETURN found;
    END IF;
    SELECT count(*), min(m.id) INTO n, found FROM prodmatch.models m;
    IF n = 0 THEN
        RAISE EXCEPTION 'prodmatch: no model is registered' USING HINT = 'prodmatch models add MODEL';
    ELSIF n > 1 THEN
        RAISE EXCEPTION 'prodmatch: % models are registered; name one with model => ''NAME''', n;
    END IF;
    RETURN found;
END
$$;

-- The id of a model by name; with no name, the only registered model, or NULL when none or several are
-- registered (for the lexical space, which needs no model).
CREATE OR REPLACE FUNCTION prodmatch.model_id_or_null(model text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF model IS NOT NULL THEN
        RETURN prodmatch.model_id(model);
    END IF;
    RETURN (SELECT CASE WHEN count(*) = 1 THEN min(m.id) END FROM prodmatch.models m);
END
$$;

-- The dimension of the hashed lexical space (prodmatch.embed.lexical.DIMENSIONS): the type of lexical.vector.
CREATE OR REPLACE FUNCTION prodmatch.lexical_dimensions() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 1048576 $$;

-- hnsw.ef_search for the rest of the calling transaction, as set_config(..., true) does. On Citus, sql/citus.sql
-- replaces it by a SET LOCAL command, which Citus passes on to the workers where the index scans run.
CREATE OR REPLACE FUNCTION prodmatch.set_ef_search(ef_search integer) RETURNS void
LANGUAGE sql AS $$ SELECT set_config('hnsw.ef_search', ef_search::text, true) $$;

-- The id of a catalogue by name; the error lists the catalogues that exist.
CREATE OR REPLACE FUNCTION prodmatch.catalog_id(catalog text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found bigint;
BEGIN
    SELECT c.id INTO found FROM prodmatch.catalogs c WHERE c.name = catalog;
    IF found IS NULL THEN
        RAISE EXCEPTION 'prodmatch: no catalogue named % (catalogues: %)', coalesce(quote_literal(catalog), 'NULL'),
            coalesce((SELECT string_agg(c.name, ', ' ORDER BY c.name) FROM prodmatch.catalogs c), 'none')
            USING HINT = 'SELECT name FROM prodmatch.catalogs;';
    END IF;
    RETURN found;
END
$$;

-- The expression a model's HNSW index is built on, e.g. (e.fused_vector::vector(512)) for `vector` storage or
-- (e.fused_half::halfvec(512)) for `halfvec` storage.
CREATE OR REPLACE FUNCTION prodmatch.vector_expr(model_id integer, space text, alias text DEFAULT 'e')
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    half boolean;
BEGIN
    SELECT m.storage = 'halfvec' INTO half FROM prodmatch.models m WHERE m.id = vector_expr.model_id;
    RETURN format('(%I.%I::%s)', alias, space || CASE WHEN half THEN '_half' ELSE '_vector' END,
                  prodmatch.index_type(model_id, space));
END
$$;

-- The type a query vector is cast to for the model's index on `space`, e.g. vector(512) or halfvec(512).
CREATE OR REPLACE FUNCTION prodmatch.index_type(model_id integer, space text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    dim integer;
    storage text;
BEGIN
    IF space IS NULL OR space NOT IN ('image', 'text', 'fused') THEN
        RAISE EXCEPTION 'prodmatch: space must be image, text or fused, not %', coalesce(space, 'NULL');
    END IF;
    SELECT CASE WHEN space = 'fused' THEN m.fused_dimension ELSE m.dimension END, m.storage INTO dim, storage
      FROM prodmatch.models m WHERE m.id = index_type.model_id;
    RETURN format('%s(%s)', CASE WHEN storage = 'halfvec' THEN 'halfvec' ELSE prodmatch.vector_type(dim) END, dim);
END
$$;

-- pgvector indexes `vector` up to 2,000 dimensions and `halfvec` up to 4,000.
CREATE OR REPLACE FUNCTION prodmatch.vector_type(dimension integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN dimension <= 2000 THEN 'vector' ELSE 'halfvec' END $$;

-- The last step of prodmatch.similar(): the query that joins its k nearest rows (%1$s: a query of product_id and
-- distance, run as a materialized CTE) to the products and computes every space's similarity (its parameters are
-- similar()'s: $1 the query's lexical vector, $15-$17 its fused, image and text vectors, $19 the model). One node
-- LEFT JOINs `embeddings` and `lexical`; sql/citus.sql replaces this function only (the rest of similar() is the
-- same on Citus), because Citus plans that outer join by copying the whole sharded table to the coordinator.
CREATE OR REPLACE FUNCTION prodmatch.similar_rows_sql() RETURNS text
LANGUAGE sql IMMUTABLE
AS $f$ SELECT $q$
        WITH nearest AS MATERIALIZED (%1$s)
        SELECT n.product_id, c.name, p.external_id, p.title, p.brand, p.price,
               (1 - (coalesce(e.fused_vector, e.fused_half::vector) <=> $15))::real,
               (1 - (coalesce(e.image_vector, e.image_half::vector) <=> $16))::real,
               (1 - (coalesce(e.text_vector, e.text_half::vector) <=> $17))::real, (1 - (l.vector <=> $1))::real
          FROM nearest n
          JOIN prodmatch.products p ON p.id = n.product_id
          JOIN prodmatch.catalogs c ON c.id = p.catalog_id
          LEFT JOIN prodmatch.embeddings e ON e.product_id = n.product_id AND e.model_id = $19
          LEFT JOIN prodmatch.lexical l ON l.product_id = n.product_id
         ORDER BY n.distance, n.product_id
        $q$::text $f$;

-- The k products most similar to one product, with the fused, image, text and lexical similarities side by side.
--
--   SELECT * FROM prodmatch.similar(42);                                   -- top 10, fused space
--   SELECT * FROM prodmatch.similar(42, k => 5, space => 'image', other_catalog => true);
--   SELECT * FROM prodmatch.similar(42, space => 'lexical');                -- no neural model needed
--   SELECT * FROM prodmatch.similar(42, in_catalog => 'competitor', same_category => true,
--                                   min_price_ratio => 0.5, max_price_ratio => 2, unmatched_only => true);
--
-- space: which vectors rank the candidates (fused, image, text, or lexical: hashed character n-grams of the
-- product's text, weighted by IDF, kept in prodmatch.lexical); model: a model name (default: the only one; for
-- the lexical space no model is needed, and the neural similarities are NULL when none is registered);
-- in_catalog: only candidates from this catalogue; other_catalog: only candidates from other catalogues;
-- same_category / same_brand: equal category / brand (brand compared case-insensitively);
-- min/max_price_ratio: candidate price between ratio x the product's price; unmatched_only: skip candidates that
-- are already the best match (rank 1) of some stored link run; ef_search: HNSW search breadth (default 100:
-- recall@10 1.000 at 6.7 ms on 200,000 clustered vectors, where pgvector's own default of 40 gave 0.965;
-- NULL uses the session's hnsw.ef_search). Similarities are cosine similarities in [-1, 1]; NULL where a product lacks
-- that vector (e.g. its image failed).
CREATE OR REPLACE FUNCTION prodmatch.similar(
    query_product_id bigint,
    k integer DEFAULT 10,
    space text DEFAULT 'fused',
    model text DEFAULT NULL,
    in_catalog text DEFAULT NULL,
    other_catalog boolean DEFAULT false,
    same_category boolean DEFAULT false,
    same_brand boolean DEFAULT false,
    min_price_ratio numeric DEFAULT NULL,
    max_price_ratio numeric DEFAULT NULL,
    unmatched_only boolean DEFAULT false,
    ef_search integer DEFAULT 100
)
RETURNS TABLE (
    product_id bigint, catalog text, external_id text, title text, brand text, price numeric,
    fused_similarity real, image_similarity real, text_similarity real, lexical_similarity real
)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    m integer;
    expr text;
    query_type text;
    p0 record;
    q record;
    query_lexical sparsevec;
    query_vector vector;
    has_embedding boolean;
    catalog_id bigint;
    nearest text;
BEGIN
    IF space = 'lexical' THEN
        m := prodmatch.model_id_or_null(model);
    ELSE
        m := prodmatch.model_id(model);
        expr := prodmatch.vector_expr(m, space);  -- also validates space
    END IF;
    SELECT p.catalog_id, p.category, p.brand, p.price INTO p0 FROM prodmatch.products p WHERE p.id = query_product_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prodmatch: no product with id %', query_product_id;
    END IF;
    SELECT e.status, coalesce(e.image_vector, e.image_half::vector) AS image_vector,
           coalesce(e.text_vector, e.text_half::vector) AS text_vector,
           coalesce(e.fused_vector, e.fused_half::vector) AS fused_vector INTO q
      FROM prodmatch.embeddings e WHERE e.product_id = query_product_id AND e.model_id = m;
    has_embedding := FOUND;
    SELECT l.vector INTO query_lexical FROM prodmatch.lexical l WHERE l.product_id = query_product_id;
    IF space = 'lexical' THEN
        IF query_lexical IS NULL THEN
            RAISE EXCEPTION 'prodmatch: product % has no lexical vector yet', query_product_id
                USING HINT = 'run: prodmatch embed (or prodmatch link), which brings the lexical space up to date';
        END IF;
        nearest := format($n$
            SELECT l.product_id, l.vector <=> $1::sparsevec(%1$s) AS distance
              FROM prodmatch.lexical l
              JOIN prodmatch.products p ON p.id = l.product_id
             WHERE true AND $n$, prodmatch.lexical_dimensions());
        nearest := nearest || '%%FILTERS%%' || ' ORDER BY l.vector <=> $1::sparsevec('
                   || prodmatch.lexical_dimensions() || ') LIMIT $14';
    ELSE
        IF NOT has_embedding THEN
            RAISE EXCEPTION 'prodmatch: no product with id % (or it has no embedding row for this model)', query_product_id;
        END IF;
        query_vector := CASE space WHEN 'fused' THEN q.fused_vector WHEN 'image' THEN q.image_vector
                                   WHEN 'text' THEN q.text_vector END;
        IF query_vector IS NULL THEN
            RAISE EXCEPTION 'prodmatch: product % has no % vector yet (embedding status %)', query_product_id,
                space, q.status USING HINT = 'run: prodmatch embed; or pick another space';
        END IF;
        query_type := prodmatch.index_type(m, space);
        nearest := format($n$
            SELECT e.product_id, %1$s <=> $18::%2$s AS distance
              FROM prodmatch.embeddings e
              JOIN prodmatch.products p ON p.id = e.product_id
             WHERE e.model_id = %3$s AND $n$, expr, query_type, m);
        nearest := nearest || '%%FILTERS%%' || format(' ORDER BY %1$s <=> $18::%2$s LIMIT $14', expr, query_type);
    END IF;
    IF in_catalog IS NOT NULL THEN
        catalog_id := prodmatch.catalog_id(in_catalog);
    END IF;
    IF ef_search IS NOT NULL THEN
        PERFORM prodmatch.set_ef_search(ef_search);
    END IF;
    nearest := replace(nearest, '%%FILTERS%%', $f$
                   p.id <> $2
               AND ($3::bigint IS NULL OR p.catalog_id = $3)
               AND (NOT $4 OR p.catalog_id <> $5)
               AND (NOT $6 OR p.category IS NOT DISTINCT FROM $7)
               AND (NOT $8 OR lower(p.brand) IS NOT DISTINCT FROM lower($9))
               AND ($10::numeric IS NULL OR p.price >= $10 * $12)
               AND ($11::numeric IS NULL OR p.price <= $11 * $12)
               AND (NOT $13 OR NOT EXISTS (SELECT 1 FROM prodmatch.matches mm
                                            WHERE mm.target_product_id = p.id AND mm.rank = 1)) $f$);
    RETURN QUERY EXECUTE format(prodmatch.similar_rows_sql(), nearest)
    USING query_lexical, query_product_id, catalog_id, other_catalog, p0.catalog_id, same_category, p0.category,
          same_brand, p0.brand, min_price_ratio, max_price_ratio, p0.price, unmatched_only, k,
          q.fused_vector, q.image_vector, q.text_vector, query_vector, m;
END
$$;

-- The k products nearest to a query vector (e.g. a text embedded by the model's text tower: `prodmatch search`).
--
--   SELECT * FROM prodmatch.search('[0.1, ...]'::vector, k => 10, space => 'image');
CREATE OR REPLACE FUNCTION prodmatch.search(
    query vector,
    k integer DEFAULT 10,
    space text DEFAULT 'image',
    model text DEFAULT NULL,
    in_catalog text DEFAULT NULL,
    ef_search integer DEFAULT 100
)
RETURNS TABLE (
    product_id bigint, catalog text, external_id text, title text, brand text, price numeric, similarity real
)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
AS $$
DECLARE
    m integer := prodmatch.model_id(model);
    expr text := prodmatch.vector_expr(m, space);  -- also validates space
    catalog_id bigint;
BEGIN
    IF in_catalog IS NOT NULL THEN
        catalog_id := prodmatch.catalog_id(in_catalog);
    END IF;
    IF ef_search IS NOT NULL THEN
        PERFORM prodmatch.set_ef_search(ef_search);
    END IF;
    RETURN QUERY EXECUTE format($query$
        WITH nearest AS MATERIALIZED (
            SELECT e.product_id, %1$s <=> $1::%2$s AS distance
              FROM prodmatch.embeddings e
              JOIN prodmatch.products p ON p.id = e.product_id
             WHERE e.model_id = %3$s AND ($2::bigint IS NULL OR p.catalog_id = $2)
             ORDER BY %1$s <=> $1::%2$s
             LIMIT $3
        )
        SELECT n.product_id, c.name, p.external_id, p.title, p.brand, p.price, (1 - n.distance)::real
          FROM nearest n
          JOIN prodmatch.products p ON p.id = n.product_id
          JOIN prodmatch.catalogs c ON c.id = p.catalog_id
         ORDER BY n.distance, n.product_id
        $query$,
        expr, prodmatch.index_type(m, space), m)
    USING query, catalog_id, k;
END
$$;

-- For every product of one catalogue, its k nearest products in another (HNSW, one LATERAL query per source):
-- what `prodmatch link --mode ann` stores. source_ids limits the sources (the CLI passes chunks of ids).
-- space 'lexical' ranks by the lexical space (no model needed); the other similarities come alongside.
--
--   SELECT * FROM prodmatch.candidates('shop', 'competitor', k => 3);
--   SELECT * FROM prodmatch.candidates('shop', 'competitor', k => 3, space => 'lexical');
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
    has_query text;
BEGIN
    IF space = 'lexical' THEN
        m := prodmatch.model_id_or_null(model);
        nearest := format($n$
            SELECT l.product_id, l.vector <=> sl.vector AS distance
              FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id
             WHERE p.catalog_id = $2 ORDER BY l.vector <=> sl.vector LIMIT $3 $n$);
        has_query := 'sl.vector IS NOT NULL';
    ELSE
        m := prodmatch.model_id(model);
        nearest := format($n$
            SELECT e.product_id, %1$s <=> %2$s AS distance
              FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id
             WHERE e.model_id = %3$s AND p.catalog_id = $2 ORDER BY %1$s <=> %2$s LIMIT $3 $n$,
            prodmatch.vector_expr(m, space, 'e'), prodmatch.vector_expr(m, space, 's'), m);
        has_query := prodmatch.vector_expr(m, space, 's') || ' IS NOT NULL';
    END IF;
    source_id := prodmatch.catalog_id(source_catalog);
    target_id := prodmatch.catalog_id(target_catalog);
    IF ef_search IS NOT NULL THEN
        PERFORM prodmatch.set_ef_search(ef_search);
    END IF;
    RETURN QUERY EXECUTE format($query$
        SELECT sp.id, t.product_id, t.rank::integer,
               (1 - (coalesce(s.fused_vector, s.fused_half::vector)
                     <=> coalesce(te.fused_vector, te.fused_half::vector)))::real,
               (1 - (coalesce(s.image_vector, s.image_half::vector)
                     <=> coalesce(te.image_vector, te.image_half::vector)))::real,
               (1 - (coalesce(s.text_vector, s.text_half::vector)
                     <=> coalesce(te.text_vector, te.text_half::vector)))::real,
               (1 - (sl.vector <=> tl.vector))::real
          FROM prodmatch.products sp
          LEFT JOIN prodmatch.embeddings s ON s.product_id = sp.id AND s.model_id = $5
          LEFT JOIN prodmatch.lexical sl ON sl.product_id = sp.id
          CROSS JOIN LATERAL (
              SELECT nearest.*, row_number() OVER (ORDER BY nearest.distance, nearest.product_id) AS rank
                FROM (%1$s) nearest
          ) t
          LEFT JOIN prodmatch.embeddings te ON te.product_id = t.product_id AND te.model_id = $5
          LEFT JOIN prodmatch.lexical tl ON tl.product_id = t.product_id
         WHERE sp.catalog_id = $1 AND %2$s
           AND ($4::bigint[] IS NULL OR sp.id = ANY($4))
         ORDER BY sp.id, t.rank
        $query$, nearest, has_query)
    USING source_id, target_id, k, source_ids, m;
END
$$;

-- Stored link runs, one row per candidate pair, with both products' catalogue metadata.
CREATE OR REPLACE VIEW prodmatch.matches_v AS
SELECT r.id AS run_id,
       r.kind,
       md.name AS model,
       r.created_at AS run_at,
       x.rank,
       x.fused_similarity,
       x.image_similarity,
       x.text_similarity,
       x.lexical_similarity,
       x.match_probability,
       x.accepted,
       mt.name AS matcher,
       x.signals,
       sc.name AS source_catalog,
       sp.id AS source_product_id,
       sp.external_id AS source_external_id,
       sp.title AS source_title,
       sp.brand AS source_brand,
       sp.category AS source_category,
       sp.price AS source_price,
       sp.currency AS source_currency,
       tc.name AS target_catalog,
       tp.id AS target_product_id,
       tp.external_id AS target_external_id,
       tp.title AS target_title,
       tp.brand AS target_brand,
       tp.category AS target_category,
       tp.price AS target_price,
       tp.currency AS target_currency
  FROM prodmatch.matches x
  JOIN prodmatch.match_runs r ON r.id = x.run_id
  LEFT JOIN prodmatch.models md ON md.id = r.model_id
  LEFT JOIN prodmatch.matchers mt ON mt.id = r.matcher_id
  JOIN prodmatch.products sp ON sp.id = x.source_product_id
  JOIN prodmatch.catalogs sc ON sc.id = sp.catalog_id
  JOIN prodmatch.products tp ON tp.id = x.target_product_id
  JOIN prodmatch.catalogs tc ON tc.id = tp.catalog_id;

-- Duplicate clusters found by `prodmatch dedupe`, one row per member, with its metadata.
CREATE OR REPLACE VIEW prodmatch.duplicates_v AS
SELECT d.run_id,
       d.cluster_id,
       count(*) OVER (PARTITION BY d.run_id, d.cluster_id) AS cluster_size,
       d.is_centre,
       d.similarity AS similarity_to_centre,
       c.name AS catalog,
       p.id AS product_id,
       p.external_id,
       p.title,
       p.brand,
       p.category,
       p.price,
       p.image
  FROM prodmatch.duplicate_clusters d
  JOIN prodmatch.products p ON p.id = d.product_id
  JOIN prodmatch.catalogs c ON c.id = p.catalog_id;

-- Products whose embedding failed or lost its image, with the reason.
CREATE OR REPLACE VIEW prodmatch.embedding_errors_v AS
SELECT md.name AS model,
       c.name AS catalog,
       p.id AS product_id,
       p.external_id,
       p.title,
       p.image,
       e.status,
       e.error,
       e.attempts,
       e.embedded_at
  FROM prodmatch.embeddings e
  JOIN prodmatch.models md ON md.id = e.model_id
  JOIN prodmatch.products p ON p.id = e.product_id
  JOIN prodmatch.catalogs c ON c.id = p.catalog_id
 WHERE e.status IN ('image_error', 'failed');
