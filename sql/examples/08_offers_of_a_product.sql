-- All offers of a product with their prices and shops: every member of its cluster (`prodmatch clusters build`),
-- the product itself first, then cheapest first. For your own product:
--   SELECT * FROM prodmatch.offers_of('shop', 'SKU-123');
-- Here: the product with the most offers (a product in no cluster has one offer, itself).
WITH chosen AS (
    SELECT c.name AS catalog, p.external_id
      FROM prodmatch.products p
      JOIN prodmatch.catalogs c ON c.id = p.catalog_id
      LEFT JOIN prodmatch.product_clusters pc ON pc.product_id = p.id
      LEFT JOIN LATERAL (
          SELECT count(*) AS offers FROM prodmatch.product_clusters m WHERE m.cluster_id = pc.cluster_id
      ) size ON true
     ORDER BY size.offers DESC, p.id
     LIMIT 1
)
SELECT o.cluster_id,
       o.offer_catalog AS shop,
       o.offer_external_id AS external_id,
       o.brand,
       o.title,
       o.price,
       o.currency,
       round(o.price / min(o.price) OVER () - 1, 3) AS above_cheapest,
       o.is_query
  FROM chosen, prodmatch.offers_of(chosen.catalog, chosen.external_id) o;
