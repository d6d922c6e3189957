"""The review app's retrain hook is the real matcher training: labels in, cross-validated F1 and scores out."""

from __future__ import annotations

from prodmatch.demo.catalogues import generate
from prodmatch.ingest import ingest_file
from prodmatch.match.link import link
from prodmatch.quality.gold import read_gold
from prodmatch.quality.matchers import review_retrainer
from prodmatch.review.labels import record_label


def test_retrain_hook_trains_a_matcher_on_the_labels_and_scores_the_run(settings, conn, tmp_path):
    files = generate(tmp_path / "demo", 80, seed=5, image_size=32)
    ingest_file(conn, files.shop, "shop")
    ingest_file(conn, files.competitor, "competitor")
    conn.commit()
    run = link(conn, "shop", "competitor", k=3)
    ids = {
        (c, e): pid
        for c, e, pid in conn.execute(
            "SELECT c.name, p.external_id, p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        )
    }
    gold = {(ids[("shop", p.source_id)], ids[("competitor", p.target_id)]) for p in read_gold(files.gold)}
    pairs = conn.execute(
        "SELECT source_product_id, target_product_id FROM prodmatch.matches WHERE run_id = %s ORDER BY 1, 2",
        (run.run_id,),
    ).fetchall()
    retrain = review_retrainer(settings, run_id=run.run_id)
    first = retrain(conn)  # no labels yet: says so, no score
    assert "score" not in first
    for s, t in pairs[:120]:  # a person answers from what they see (here: the gold pairs)
        record_label(conn, s, t, "match" if (s, t) in gold else "non-match", "tester", run.run_id)
    conn.commit()
    result = retrain(conn)
    assert 0.5 < result["f1"] <= 1.0 and 0.0 < result["threshold"] < 1.0
    assert result["matcher"] == "review-shop-competitor"
    scores = result["score"]([_Pair(s, t) for s, t in pairs])
    assert len(scores) == len(pairs) and all(0.0 <= p <= 1.0 for p in scores)
    true = [p for (s, t), p in zip(pairs, scores, strict=True) if (s, t) in gold]
    false = [p for (s, t), p in zip(pairs, scores, strict=True) if (s, t) not in gold]
    assert sum(true) / len(true) > sum(false) / len(false) + 0.3  # matches score higher than non-matches


class _Pair:
    def __init__(self, source: int, target: int) -> None:
        self.source_product_id, self.target_product_id = source, target
