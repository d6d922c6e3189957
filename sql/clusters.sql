-- prodmatch: clusters of offers across catalogues. Installed by migration 0011; `prodmatch clusters build`
-- (prodmatch.match.clusters) writes prodmatch.clusters / prodmatch.product_clusters, and `link --watch` keeps
-- them current. Reference: docs/sql.md.
--
-- A cluster is one product as it is sold in several catalogues (and listed more than once inside one): the
-- accepted pairs of link runs and the duplicate clusters of dedupe runs, joined by average linkage (at least
-- half the pairs between two groups of offers accepted; prodmatch.match.assign.offer_clusters). Products in
-- no cluster have no row; prodmatch.offers_of still answers for them (the product alone).

-- Every product of every cluster, with its catalogue and price.
CREATE OR REPLACE VIEW prodmatch.clusters_v AS
SELECT pc.cluster_id,
       size.cluster_size,
       size.catalogs,
       p.id AS product_id,
       c.name AS catalog,
       p.external_id,
       p.title,
       p.brand,
       p.price,
       p.currency,
       p.image,
       cl.created_at AS cluster_created_at,
       cl.updated_at AS cluster_updated_at
  FROM prodmatch.product_clusters pc
  JOIN prodmatch.clusters cl ON cl.id = pc.cluster_id
  JOIN prodmatch.products p ON p.id = pc.product_id
  JOIN prodmatch.catalogs c ON c.id = p.catalog_id
  JOIN (
      -- each cluster's size and in how many catalogues it is sold (a filter on cluster_id reaches in here)
      SELECT m.cluster_id, count(*) AS cluster_size, count(DISTINCT mp.catalog_id) AS catalogs
        FROM prodmatch.product_clusters m
        JOIN prodmatch.products mp ON mp.id = m.product_id
       GROUP BY m.cluster_id
  ) size ON size.cluster_id = pc.cluster_id;

-- Every offer of the product CATALOG:EXTERNAL_ID (offer_catalog: the shop selling it): the members of its cluster (the product itself first, then by
-- price, cheapest first), or the product alone when it is in no cluster. Errors name an unknown catalogue or
-- product.
--   SELECT * FROM prodmatch.offers_of('shop', 'SKU-123');
CREATE OR REPLACE FUNCTION prodmatch.offers_of(catalog text, external_id text)
RETURNS TABLE (
    cluster_id bigint,
    is_query boolean,
    offer_catalog text,
    product_id bigint,
    offer_external_id text,
    title text,
    brand text,
    price numeric,
    currency text,
    image text
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    wanted bigint;
    wanted_cluster bigint;
    wanted_catalog bigint := prodmatch.catalog_id(offers_of.catalog);  -- an unknown name raises, naming it
BEGIN
    SELECT p.id INTO wanted
      FROM prodmatch.products p
     WHERE p.catalog_id = wanted_catalog AND p.external_id = offers_of.external_id;
    IF wanted IS NULL THEN
        RAISE EXCEPTION 'prodmatch: no product %:%', offers_of.catalog, offers_of.external_id
            USING HINT = 'SELECT external_id FROM prodmatch.products WHERE catalog_id = prodmatch.catalog_id(...)';
    END IF;
    SELECT pc.cluster_id INTO wanted_cluster FROM prodmatch.product_clusters pc WHERE pc.product_id = wanted;
    RETURN QUERY
    SELECT wanted_cluster,
           p.id = wanted,
           c.name,
           p.id,
           p.external_id,
           p.title,
           p.brand,
           p.price,
           p.currency,
           p.image
      FROM prodmatch.products p
      JOIN prodmatch.catalogs c ON c.id = p.catalog_id
     WHERE p.id = ANY(
               -- the product, and its cluster's members through product_clusters_cluster_id_idx
               ARRAY(SELECT pc.product_id FROM prodmatch.product_clusters pc WHERE pc.cluster_id = wanted_cluster)
               || wanted)
     ORDER BY p.id = wanted DESC, p.price NULLS LAST, c.name, p.external_id;
END
$$;
