-- prodmatch: how products become pending for embedding.
--
-- Any INSERT into prodmatch.products — by `prodmatch ingest` or by an application's plain SQL — creates one
-- 'pending' row in prodmatch.embeddings for every registered model. An UPDATE that changes a product's content
-- (its generated content_hash) marks that product's embeddings 'pending' again; the old vectors stay queryable
-- until the worker replaces them. Both wake `prodmatch embed --watch` with NOTIFY prodmatch_pending.
--
-- Statement-level triggers with transition tables: a 100,000-row upsert fires each trigger once, not 100,000 times.

CREATE OR REPLACE FUNCTION prodmatch.products_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO prodmatch.embeddings (model_id, product_id)
    SELECT m.id, n.id FROM new_rows n CROSS JOIN prodmatch.models m
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('prodmatch_pending', 'products');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION prodmatch.products_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE prodmatch.embeddings e
       SET status = 'pending', attempts = 0, error = NULL
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE e.product_id = n.id
       AND n.content_hash IS DISTINCT FROM o.content_hash
       AND e.status <> 'pending';
    IF FOUND THEN
        PERFORM pg_notify('prodmatch_pending', 'products');
    END IF;
    RETURN NULL;
END
$$;

-- Keep updated_at honest for applications that update rows without setting it.
CREATE OR REPLACE FUNCTION prodmatch.products_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS products_inserted ON prodmatch.products;
CREATE TRIGGER products_inserted
    AFTER INSERT ON prodmatch.products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prodmatch.products_inserted();

DROP TRIGGER IF EXISTS products_updated ON prodmatch.products;
CREATE TRIGGER products_updated
    AFTER UPDATE ON prodmatch.products
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prodmatch.products_updated();

DROP TRIGGER IF EXISTS products_touch ON prodmatch.products;
CREATE TRIGGER products_touch
    BEFORE UPDATE ON prodmatch.products
    FOR EACH ROW
    WHEN ((OLD.title, OLD.description, OLD.brand, OLD.category, OLD.price, OLD.currency, OLD.image, OLD.attributes)
          IS DISTINCT FROM
          (NEW.title, NEW.description, NEW.brand, NEW.category, NEW.price, NEW.currency, NEW.image, NEW.attributes))
    EXECUTE FUNCTION prodmatch.products_touch();
