-- One product's vectors, whatever its model's storage (prodmatch.vectors_v: vector or halfvec models alike),
-- and the 5 products nearest to its fused vector through the model's HNSW index (prodmatch.search).
-- Pick your product with e.g.  WHERE model = 'clip-vit-base-patch32' AND catalog = 'shop' AND external_id = 'SKU-123'
WITH product AS (
    SELECT v.model, v.catalog, v.external_id, v.title, v.fused_vector
      FROM prodmatch.vectors_v v
     WHERE v.status IN ('done', 'image_error')
     ORDER BY v.product_id, v.model_id
     LIMIT 1
)
SELECT product.model,
       product.catalog || ':' || product.external_id AS product,
       vector_dims(product.fused_vector) AS dimensions,
       n.catalog || ':' || n.external_id AS neighbour,
       n.title AS neighbour_title,
       round(n.similarity::numeric, 3) AS fused_similarity
  FROM product,
       prodmatch.search(product.fused_vector, k => 5, space => 'fused', model => product.model) AS n
 ORDER BY n.similarity DESC;
