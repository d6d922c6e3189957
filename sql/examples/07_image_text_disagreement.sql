-- Best candidates where the photo and the text disagree: a near-identical image with a different title (a
-- variant, or a reused stock photo) or the same title with a different image. Worth a look before trusting
-- fused scores in this category.
WITH latest AS (
    SELECT id FROM prodmatch.match_runs WHERE kind = 'link' ORDER BY created_at DESC, id DESC LIMIT 1
)
SELECT m.source_external_id,
       m.source_title,
       m.target_external_id,
       m.target_title,
       round(m.image_similarity::numeric, 3) AS image,
       round(m.text_similarity::numeric, 3) AS text,
       round(abs(m.image_similarity - m.text_similarity)::numeric, 3) AS disagreement
  FROM prodmatch.matches_v m
  JOIN latest ON latest.id = m.run_id
 WHERE m.image_similarity IS NOT NULL AND m.text_similarity IS NOT NULL
 ORDER BY abs(m.image_similarity - m.text_similarity) DESC
 LIMIT 50;
