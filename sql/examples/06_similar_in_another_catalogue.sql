-- The 5 products most like one product, from other catalogues only, in a similar price band (0.5x to 2x),
-- with image, text and fused similarity side by side. Replace the sub-select with your product's id, e.g.
--   (SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id
--     WHERE c.name = 'shop' AND p.external_id = 'SKU-123')
SELECT s.*
  FROM prodmatch.similar(
           (SELECT e.product_id FROM prodmatch.embeddings e
             WHERE e.status IN ('done', 'image_error') ORDER BY e.product_id LIMIT 1),
           k => 5,
           other_catalog => true,
           min_price_ratio => 0.5,
           max_price_ratio => 2.0
       ) AS s;
