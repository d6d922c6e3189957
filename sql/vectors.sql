-- One way to read a product's vectors, whatever its model's storage (migration 0012).
--
-- A model with `vector` storage keeps 4-byte floats in embeddings.image_vector / text_vector / fused_vector; one
-- with `halfvec` storage (the default) keeps 2-byte floats in image_half / text_half / fused_half, and its
-- *_vector columns are NULL. This view gives every model's vectors as `vector` in image_vector, text_vector and
-- fused_vector, beside the product and model they belong to:
--
--   SELECT external_id, fused_vector FROM prodmatch.vectors_v
--    WHERE model = 'clip-vit-base-patch32' AND catalog = 'shop' AND external_id = 'SKU-123';
--
-- Nearest neighbours through the HNSW index: prodmatch.similar / prodmatch.search, which take a query vector
-- read here, e.g.
--
--   SELECT * FROM prodmatch.search((SELECT fused_vector FROM prodmatch.vectors_v
--                                    WHERE model = 'clip-vit-base-patch32' AND catalog = 'shop'
--                                      AND external_id = 'SKU-123'),
--                                  k => 10, space => 'fused', model => 'clip-vit-base-patch32');
--
-- Ordering by this view's columns (`ORDER BY v.fused_vector <=> ...`) is an exact scan, fine for a few
-- thousand rows: the index is on the storage column cast to the model's dimension, prodmatch.vector_expr.
CREATE OR REPLACE VIEW prodmatch.vectors_v AS
SELECT m.id AS model_id,
       m.name AS model,
       m.storage,
       c.name AS catalog,
       p.id AS product_id,
       p.external_id,
       p.title,
       e.status,
       coalesce(e.image_vector, e.image_half::vector) AS image_vector,
       coalesce(e.text_vector, e.text_half::vector) AS text_vector,
       coalesce(e.fused_vector, e.fused_half::vector) AS fused_vector,
       e.embedded_at
  FROM prodmatch.embeddings e
  JOIN prodmatch.models m ON m.id = e.model_id
  JOIN prodmatch.products p ON p.id = e.product_id
  JOIN prodmatch.catalogs c ON c.id = p.catalog_id;

COMMENT ON VIEW prodmatch.vectors_v IS
    'Every product''s image, text and fused vectors per model, as vector whatever the model''s storage (vector or halfvec)';
