-- Pairs to review by hand: the best candidates whose similarity lies closest to the decision threshold
-- (the model's saved threshold from `prodmatch eval --save`, else 0.9). These are the ones a human should
-- confirm or reject; their labels make good gold pairs for `prodmatch eval` and `prodmatch finetune`.
WITH latest AS (
    SELECT r.id, coalesce((md.settings ->> 'threshold')::float, 0.9) AS threshold
      FROM prodmatch.match_runs r JOIN prodmatch.models md ON md.id = r.model_id
     WHERE r.kind = 'link' ORDER BY r.created_at DESC, r.id DESC LIMIT 1
)
SELECT m.source_external_id,
       m.source_title,
       m.target_external_id,
       m.target_title,
       round(m.fused_similarity::numeric, 3) AS fused,
       round(m.image_similarity::numeric, 3) AS image,
       round(m.text_similarity::numeric, 3) AS text,
       round((m.fused_similarity - latest.threshold)::numeric, 3) AS margin
  FROM prodmatch.matches_v m
  JOIN latest ON latest.id = m.run_id
 WHERE m.rank = 1
 ORDER BY abs(m.fused_similarity - latest.threshold)
 LIMIT 50;
