-- Competitor matches whose price differs by more than 20%, from the newest link run.
-- Rank 1 only (each product's best candidate), and only confident pairs: at or above the model's saved
-- threshold (`prodmatch eval --save`), else 0.9.
WITH latest AS (
    SELECT r.id, coalesce((md.settings ->> 'threshold')::float, 0.9) AS threshold
      FROM prodmatch.match_runs r JOIN prodmatch.models md ON md.id = r.model_id
     WHERE r.kind = 'link' ORDER BY r.created_at DESC, r.id DESC LIMIT 1
)
SELECT m.source_external_id,
       m.source_title,
       m.source_price,
       m.target_catalog,
       m.target_external_id,
       m.target_price,
       round(100 * (m.target_price - m.source_price) / m.source_price, 1) AS price_gap_percent,
       round(m.fused_similarity::numeric, 3) AS similarity
  FROM prodmatch.matches_v m
  JOIN latest ON latest.id = m.run_id
 WHERE m.rank = 1
   AND m.fused_similarity >= latest.threshold
   AND m.source_price > 0
   AND abs(m.target_price - m.source_price) > 0.2 * m.source_price
 ORDER BY abs(m.target_price - m.source_price) / m.source_price DESC;
