-- All offers of a product with their prices and shops: every member of its cluster (`prodmatch clusters build`),
-- the product itself first, then cheapest first. For your own product:
--   SELECT * FROM prodmatch.offers_of('shop', 'SKU-123');
-- Here: the product with the most offers (a product in no cluster has one offer, itself).
WITH chosen AS (
    SELECT c.name AS catalog, p.external_id
      FROM prodmatch.product_clusters pc
      JOIN (SELECT cluster_id, count(*) AS offers FROM prodmatch.product_clusters GROUP BY cluster_id) size
        ON size.cluster_id = pc.cluster_id
      JOIN prodmatch.products p ON p.id = pc.product_id
      JOIN prodmatch.catalogs c ON c.id = p.catalog_id
     ORDER BY size.offers DESC, p.id
     LIMIT 1
), any_product AS (  -- no clustering yet: any product, which is its own only offer
    SELECT * FROM chosen
    UNION ALL
    (SELECT c.name, p.external_id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id
      WHERE NOT EXISTS (SELECT 1 FROM chosen) ORDER BY p.id LIMIT 1)
)
SELECT o.cluster_id,
       o.offer_catalog AS shop,
       o.offer_external_id AS external_id,
       o.brand,
       o.title,
       o.price,
       o.currency,
       round(o.price / nullif(min(o.price) OVER (), 0) - 1, 3) AS above_cheapest,
       o.is_query
  FROM any_product, prodmatch.offers_of(any_product.catalog, any_product.external_id) o;
