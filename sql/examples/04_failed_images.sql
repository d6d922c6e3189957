-- Products whose image could not be used (missing file, broken download, not an image, ...), per catalogue,
-- with the reason. They still have text and fused vectors; fix the image and run `prodmatch embed --retry-errors`.
SELECT catalog,
       external_id,
       title,
       image,
       status,
       error,
       attempts
  FROM prodmatch.embedding_errors_v
 ORDER BY catalog, external_id;
