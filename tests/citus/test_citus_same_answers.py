"""The same catalogues on one node and on the Citus cluster give the same answers: ingest (COPY and upsert),
embed (the claims' Citus form), similar / search (HNSW per shard, k rows merged), link (exact, lexical) and
dedupe."""

from __future__ import annotations

from builders import matched_items, write_items
from psycopg import sql

from prodmatch import store as db
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.ingest.load import ingest_file
from prodmatch.match import queries
from prodmatch.match.link import dedupe, link


def _catalogues(tmp_path):
    """shop and rival as in tests/conftest.py's `matched`, and a rival file with 4 changed titles."""
    shop, rival = matched_items(tmp_path)
    changed = rival[:20] + [(e, f"{t} v2", image, price) for e, t, image, price in rival[20:]]
    return (
        write_items(tmp_path, "shop", shop),
        write_items(tmp_path, "rival", rival),
        write_items(tmp_path, "rival2", changed),
    )


def _answers(settings, clip_dir, files) -> dict:
    """Everything a user sees, in terms that do not depend on where rows live (external ids, rounded scores)."""
    shop, rival, rival_changed = files
    out = {}
    with db.connection(settings) as conn:
        add_model(conn, str(clip_dir), name="clip", precision="fp32")
        out["ingest"] = [
            (r.inserted, r.updated, r.unchanged, r.rejected)
            for r in (
                ingest_file(conn, shop, "shop"),
                ingest_file(conn, rival, "rival"),
                ingest_file(conn, rival_changed, "rival"),
            )
        ]
    summaries = embed(settings, EmbedOptions(batch_size=8))
    out["embedded"] = [(s.embedded, s.image_errors, s.failed) for s in summaries]
    with db.connection(settings) as conn:
        ids = dict(conn.execute("SELECT external_id, id FROM prodmatch.products"))
        out["pending"] = conn.execute(
            "SELECT count(*) FROM prodmatch.embeddings WHERE status <> 'done'"
        ).fetchone()
        for name, kwargs in {
            "exact": {"mode": "exact", "threshold": 0.9},
            "ann": {"mode": "ann", "threshold": 0.9},
            "lexical": {"space": "lexical", "threshold": 0.5},
        }.items():
            run = link(conn, "shop", "rival", k=3, **kwargs)
            out[f"link {name}"] = (run.pairs, run.matched_sources)
            out[f"link {name} rows"] = conn.execute(
                "SELECT source_external_id, target_external_id, rank, round(fused_similarity::numeric, 4),"
                " round(lexical_similarity::numeric, 4), accepted"
                " FROM prodmatch.matches_v WHERE run_id = %s ORDER BY 1, 3",
                (run.run_id,),
            ).fetchall()
        for space in ("fused", "image", "lexical"):
            for ref in ("shop-0", "shop-5", "rival-20"):
                hits = queries.similar(conn, ids[ref], k=6, space=space)
                out[f"similar {space} {ref}"] = _neighbours(hits)
        hits = queries.similar(conn, ids["shop-3"], k=5, in_catalog="rival")
        out["similar in rival"] = _neighbours(hits)
        hits = queries.search(conn, "kettle model", k=5, space="image")
        out["search"] = [(h.external_id, round(h.similarity, 4)) for h in hits]
        for space in ("fused", "lexical"):
            # the searched space's similarity: a tie there at the k-th place may be filled by either product
            query = sql.SQL(
                "SELECT s.external_id, t.external_id, round(c.{}::numeric, 4)"
                " FROM prodmatch.candidates('shop', 'rival', k => 2, space => %s) c"
                " JOIN prodmatch.products s ON s.id = c.source_product_id"
                " JOIN prodmatch.products t ON t.id = c.target_product_id ORDER BY 1, c.rank"
            ).format(sql.Identifier(f"{space}_similarity"))
            rows = conn.execute(query, (space,)).fetchall()
            by_source: dict[str, list] = {}
            for source, target, score in rows:
                by_source.setdefault(source, []).append((target, score))
            out[f"candidates() {space}"] = {
                source: ([s for _, s in found], sorted(t for t, s in found if s != found[-1][1]))
                for source, found in by_source.items()
            }
        result = dedupe(conn, "rival", 0.95)
        out["dedupe"] = (result.clusters, result.duplicates, result.largest)
        out["dedupe clusters"] = sorted(
            sorted(r[0])
            for r in conn.execute(
                "SELECT array_agg(p.external_id) FROM prodmatch.duplicate_clusters d"
                " JOIN prodmatch.products p ON p.id = d.product_id WHERE d.run_id = %s GROUP BY d.cluster_id",
                (result.run_id,),
            )
        )
    return out


def _neighbours(hits) -> tuple[list, list]:
    """The k rows' scores, and which products they are, except those tied with the k-th row: products with the
    same picture and title are at the same distance, and which of them fills the last place is the index's
    choice on one node (the first it meets) and the merge's on the cluster (the lowest id)."""
    scores = [
        tuple(
            None if s is None else round(s, 4)
            for s in (h.fused_similarity, h.image_similarity, h.text_similarity, h.lexical_similarity)
        )
        for h in hits
    ]
    return scores, sorted(h.external_id for h, s in zip(hits, scores, strict=False) if s != scores[-1])


def test_one_node_and_the_cluster_give_the_same_answers(citus_settings, settings, tiny_clip_dir, tmp_path):
    files = _catalogues(tmp_path)
    db.upgrade(citus_settings)
    single = _answers(settings, tiny_clip_dir, files)
    cluster = _answers(citus_settings, tiny_clip_dir, files)
    assert single["embedded"][0][0] == 48 and single["link exact"][0] > 0  # the scenario exercises something
    assert cluster.keys() == single.keys()
    for key in single:
        assert (key, cluster[key]) == (key, single[key])
