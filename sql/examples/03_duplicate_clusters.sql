-- Duplicate clusters of the newest `prodmatch dedupe` run, largest first, centre product on top.
WITH latest AS (
    SELECT id FROM prodmatch.match_runs WHERE kind = 'dedupe' ORDER BY created_at DESC, id DESC LIMIT 1
)
SELECT d.cluster_id,
       d.cluster_size,
       d.is_centre,
       round(d.similarity_to_centre::numeric, 3) AS similarity_to_centre,
       d.catalog,
       d.external_id,
       d.brand,
       d.title,
       d.price
  FROM prodmatch.duplicates_v d
  JOIN latest ON latest.id = d.run_id
 ORDER BY d.cluster_size DESC, d.cluster_id, d.is_centre DESC, d.similarity_to_centre DESC;
