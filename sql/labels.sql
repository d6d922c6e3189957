-- prodmatch: labels people give to candidate pairs (`prodmatch review`, `prodmatch labels import`).
-- Installed by migration 0006. Reference: docs/sql.md.
--
-- prodmatch.labels keeps every answer ever given; for each (source, target) pair exactly one row has
-- is_current = true (a partial unique index enforces it). The functions below are the only writers the
-- application uses, so that many people labelling at once neither lose nor duplicate an answer: each takes a
-- transaction-scoped advisory lock on the pair, so two answers to the same pair are applied one after the other
-- and the later one stays current while history keeps both.

-- The advisory-lock key of one pair (a 64-bit hash; a collision only makes two pairs wait for each other).
CREATE OR REPLACE FUNCTION prodmatch.label_pair_key(source_product_id bigint, target_product_id bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT hashtextextended('prodmatch.labels:' || source_product_id || ':' || target_product_id, 0) $$;

-- Record one answer and make it the pair's current label; returns the new row's id.
--
--   SELECT prodmatch.record_label(12, 345, 'match', 'alice');
--   SELECT prodmatch.record_label(12, 345, 'non-match', 'bob', run_id => 3);
CREATE OR REPLACE FUNCTION prodmatch.record_label(
    source_product_id bigint,
    target_product_id bigint,
    label text,
    labelled_by text,
    run_id bigint DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    new_id bigint;
BEGIN
    -- Held until the caller's transaction ends; every statement below runs with a fresh snapshot (READ
    -- COMMITTED), so it sees an answer that another session committed while we waited.
    PERFORM pg_advisory_xact_lock(prodmatch.label_pair_key(source_product_id, target_product_id));
    UPDATE prodmatch.labels l
       SET is_current = false
     WHERE l.source_product_id = record_label.source_product_id
       AND l.target_product_id = record_label.target_product_id
       AND l.is_current;
    INSERT INTO prodmatch.labels (source_product_id, target_product_id, label, labelled_by, run_id, is_current)
    VALUES (record_label.source_product_id, record_label.target_product_id, record_label.label,
            record_label.labelled_by, record_label.run_id, true)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- Take back the latest answer of one person: the row is deleted and, if it was the pair's current label, the
-- pair's previous answer (if any) becomes current again. Returns the pair and the withdrawn label, or no row.
--
--   SELECT * FROM prodmatch.undo_label('alice');
CREATE OR REPLACE FUNCTION prodmatch.undo_label(labelled_by text)
RETURNS TABLE (source_product_id bigint, target_product_id bigint, label text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    latest record;
    was_current boolean;
BEGIN
    FOR attempt IN 1..3 LOOP  -- another session may undo the same row between our read and our lock
        SELECT l.id, l.source_product_id, l.target_product_id, l.label INTO latest
          FROM prodmatch.labels l
         WHERE l.labelled_by = undo_label.labelled_by
         ORDER BY l.id DESC
         LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        PERFORM pg_advisory_xact_lock(prodmatch.label_pair_key(latest.source_product_id,
                                                               latest.target_product_id));
        DELETE FROM prodmatch.labels l WHERE l.id = latest.id RETURNING l.is_current INTO was_current;
        IF FOUND THEN
            IF was_current THEN
                UPDATE prodmatch.labels l
                   SET is_current = true
                 WHERE l.id = (SELECT max(p.id) FROM prodmatch.labels p
                                WHERE p.source_product_id = latest.source_product_id
                                  AND p.target_product_id = latest.target_product_id);
            END IF;
            source_product_id := latest.source_product_id;
            target_product_id := latest.target_product_id;
            label := latest.label;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- Current labels with both products' catalogue metadata: what `prodmatch labels export` writes.
--
--   SELECT source_external_id, target_external_id, label FROM prodmatch.labels_v WHERE label = 'match';
CREATE OR REPLACE VIEW prodmatch.labels_v AS
SELECT l.id AS label_id,
       l.label,
       l.labelled_by,
       l.labelled_at,
       l.run_id,
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
  FROM prodmatch.labels l
  JOIN prodmatch.products sp ON sp.id = l.source_product_id
  JOIN prodmatch.catalogs sc ON sc.id = sp.catalog_id
  JOIN prodmatch.products tp ON tp.id = l.target_product_id
  JOIN prodmatch.catalogs tc ON tc.id = tp.catalog_id
 WHERE l.is_current;
