-- Products of the newest link run's source catalogue with no candidate at or above the decision threshold
-- (the model's saved threshold from `prodmatch eval --save`, else 0.9) — the ones the competitor (or the master
-- catalogue) probably does not carry.
WITH latest AS (
    SELECT r.id, r.source_catalog_id, coalesce((md.settings ->> 'threshold')::float, 0.9) AS threshold
      FROM prodmatch.match_runs r JOIN prodmatch.models md ON md.id = r.model_id
     WHERE r.kind = 'link' ORDER BY r.created_at DESC, r.id DESC LIMIT 1
)
SELECT p.external_id,
       p.brand,
       p.title,
       p.price,
       max(x.fused_similarity) AS best_similarity
  FROM latest
  JOIN prodmatch.products p ON p.catalog_id = latest.source_catalog_id
  LEFT JOIN prodmatch.matches x ON x.run_id = latest.id AND x.source_product_id = p.id
 GROUP BY p.id, p.external_id, p.brand, p.title, p.price
HAVING coalesce(max(x.fused_similarity), -1) < min(latest.threshold)
 ORDER BY best_similarity NULLS FIRST, p.external_id;
