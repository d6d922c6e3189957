-- Partitioning by catalogue: prodmatch's products and embeddings as LIST partitions by catalog_id.
--
-- A sketch for one catalogue per partition (or a few big ones each alone, the rest in a DEFAULT partition), written
-- in its own schema `part` so it can be tried beside a live prodmatch schema; docs/scaling.md says what it buys
-- and what it costs. tests/store/test_partitioning.py runs this file and checks rows land in their partition,
-- the pending-embedding triggers fire, deletes cascade, and a one-catalogue query reads one partition.
--
-- What changes against prodmatch's schema: a partitioned table's primary key and unique keys must contain the
-- partition key, so products is keyed (catalog_id, id), and every table that points at a product carries the
-- product's catalog_id (composite foreign keys); the insert trigger copies catalog_id into the embeddings row.

CREATE SCHEMA IF NOT EXISTS part;

CREATE TABLE part.products (
    LIKE prodmatch.products INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS,
    PRIMARY KEY (catalog_id, id),
    UNIQUE (catalog_id, external_id)
) PARTITION BY LIST (catalog_id);
-- ids still come from one sequence, so an id names one product across partitions
CREATE SEQUENCE part.products_id_seq OWNED BY part.products.id;
ALTER TABLE part.products ALTER COLUMN id SET DEFAULT nextval('part.products_id_seq');
ALTER TABLE part.products ADD FOREIGN KEY (catalog_id) REFERENCES prodmatch.catalogs (id) ON DELETE CASCADE;

CREATE TABLE part.embeddings (
    catalog_id bigint NOT NULL,
    LIKE prodmatch.embeddings INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (catalog_id, model_id, product_id),
    FOREIGN KEY (catalog_id, product_id) REFERENCES part.products (catalog_id, id) ON DELETE CASCADE,
    FOREIGN KEY (model_id) REFERENCES prodmatch.models (id) ON DELETE CASCADE
) PARTITION BY LIST (catalog_id);

-- One partition per catalogue (created when the catalogue is), and a DEFAULT for the rest.
CREATE OR REPLACE FUNCTION part.add_catalog_partitions(catalog bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE part.products_%s PARTITION OF part.products FOR VALUES IN (%s)', catalog, catalog);
    EXECUTE format('CREATE TABLE part.embeddings_%s PARTITION OF part.embeddings FOR VALUES IN (%s)', catalog, catalog);
END
$$;
CREATE TABLE part.products_default PARTITION OF part.products DEFAULT;
CREATE TABLE part.embeddings_default PARTITION OF part.embeddings DEFAULT;

-- prodmatch's pending triggers (sql/pending.sql), with catalog_id carried into embeddings. Statement-level
-- triggers with transition tables are allowed on a partitioned table (not on its partitions).
CREATE OR REPLACE FUNCTION part.products_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO part.embeddings (catalog_id, model_id, product_id)
    SELECT n.catalog_id, m.id, n.id FROM new_rows n CROSS JOIN prodmatch.models m
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('prodmatch_pending', 'products');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION part.products_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE part.embeddings e
       SET status = 'pending', attempts = 0, error = NULL
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE e.catalog_id = n.catalog_id AND e.product_id = n.id
       AND n.content_hash IS DISTINCT FROM o.content_hash
       AND e.status <> 'pending';
    IF FOUND THEN
        PERFORM pg_notify('prodmatch_pending', 'products');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER products_inserted AFTER INSERT ON part.products
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION part.products_inserted();
CREATE TRIGGER products_updated AFTER UPDATE ON part.products
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION part.products_updated();
-- products_touch is a row trigger and needs no change (it is cloned onto every partition).
CREATE TRIGGER products_touch BEFORE UPDATE ON part.products FOR EACH ROW
    WHEN ((OLD.title, OLD.description, OLD.brand, OLD.category, OLD.price, OLD.currency, OLD.image, OLD.attributes)
          IS DISTINCT FROM
          (NEW.title, NEW.description, NEW.brand, NEW.category, NEW.price, NEW.currency, NEW.image, NEW.attributes))
    EXECUTE FUNCTION prodmatch.products_touch();
