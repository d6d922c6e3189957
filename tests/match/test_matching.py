"""Matching: the SQL API, similar/search/link/dedupe, filtered queries, index check, read-only access."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from builders import REPO, products_with_vectors
from click.testing import CliRunner

from prodmatch import match as matching
from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import embed
from prodmatch.errors import ProdmatchError
from prodmatch.ingest.load import ingest_file
from prodmatch.match.assign import cluster_duplicates
from prodmatch.store.models import index_type, update_settings, vector_expression

EXAMPLES = sorted((REPO / "sql" / "examples").glob("*.sql"))


def _id(conn, catalog: str, external_id: str) -> int:
    return db.find_product(conn, catalog, external_id)


@pytest.mark.parametrize("space", ["fused", "image", "text"])
def test_exact_duplicates_rank_first_in_every_space(settings, matched, space):
    with db.connection(settings) as conn:
        for i in range(16):
            rows = matching.similar(
                conn, _id(conn, "shop", f"shop-{i}"), k=3, space=space, other_catalog=True
            )
            assert rows[0].external_id == f"rival-{i}", (space, i, rows)
            assert rows[0].catalog == "rival"
            assert getattr(rows[0], f"{space}_similarity") == pytest.approx(1.0, abs=1e-4)
            assert {"fused_similarity", "image_similarity", "text_similarity"} <= set(rows[0].__dict__)


def test_similar_filters_and_errors(settings, matched):
    with db.connection(settings) as conn:
        kettle = _id(conn, "shop", "shop-0")  # category Kitchen
        same = matching.similar(conn, kettle, k=50, same_category=True)
        assert same and all(
            conn.execute("SELECT category FROM prodmatch.products WHERE id = %s", (r.product_id,)).fetchone()[
                0
            ]
            == "Kitchen"
            for r in same
        )
        band = matching.similar(conn, kettle, k=50, min_price_ratio=0.9, max_price_ratio=1.1)
        assert band and all(90 <= r.price <= 110 for r in band)
        only_rival = matching.similar(conn, kettle, k=50, in_catalog="rival")
        assert len(only_rival) == 24 and {r.catalog for r in only_rival} == {"rival"}
        with pytest.raises(ProdmatchError, match="no catalogue named"):
            matching.similar(conn, kettle, in_catalog="nope")
        with pytest.raises(ProdmatchError, match="space must be image, text or fused"):
            matching.similar(conn, kettle, space="audio")


def test_search_finds_a_product_by_its_text(settings, matched):
    with db.connection(settings) as conn:
        hits = matching.search(conn, "Acme lamp model 1", k=4, space="text")
    assert {h.external_id for h in hits[:2]} == {"shop-1", "rival-1"}
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)


def test_link_exact_and_ann_agree_and_reruns_replace(settings, matched, tmp_path):
    with db.connection(settings) as conn:
        exact = matching.link(conn, "shop", "rival", k=3, mode="exact")
        ann = matching.link(conn, "shop", "rival", k=3, mode="ann", ef_search=100)
        assert exact.run_id != ann.run_id and exact.pairs == ann.pairs == 24 * 3

        def top1(run_id):
            return dict(
                conn.execute(
                    "SELECT source_external_id, target_external_id FROM prodmatch.matches_v WHERE run_id = %s AND rank = 1",
                    (run_id,),
                ).fetchall()
            )

        assert top1(exact.run_id) == top1(ann.run_id)
        assert all(top1(exact.run_id)[f"shop-{i}"] == f"rival-{i}" for i in range(16))
        again = matching.link(conn, "shop", "rival", k=3, mode="exact")
        runs = conn.execute("SELECT id FROM prodmatch.match_runs WHERE kind = 'link' ORDER BY id").fetchall()
        assert [r[0] for r in runs] == [ann.run_id, again.run_id]  # the first exact run was replaced
        # ann with the default breadth records the ef_search it used, and is the same run as an explicit 100
        default_ann = matching.link(conn, "shop", "rival", k=3, mode="ann")
        assert default_ann.params["ef_search"] == matching.DEFAULT_EF_SEARCH == 100
        assert (
            conn.execute("SELECT count(*) FROM prodmatch.match_runs WHERE id = %s", (ann.run_id,)).fetchone()[
                0
            ]
            == 0
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM prodmatch.matches WHERE run_id = %s", (again.run_id,)
            ).fetchone()[0]
            == 72
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM prodmatch.matches WHERE run_id = %s", (exact.run_id,)
            ).fetchone()[0]
            == 0
        )
        row = conn.execute(
            "SELECT rank, fused_similarity, image_similarity, text_similarity, source_price, target_price"
            " FROM prodmatch.matches_v WHERE run_id = %s AND source_external_id = 'shop-3' AND rank = 1",
            (again.run_id,),
        ).fetchone()
        assert row[0] == 1 and all(s == pytest.approx(1.0, abs=1e-4) for s in row[1:4]) and row[5] > row[4]


def test_link_one_to_one_never_reuses_a_target_and_threshold_filters(settings, matched, tmp_path):
    with db.connection(settings) as conn:
        result = matching.link(conn, "shop", "rival", k=5, one_to_one=True, mode="exact")
        pairs = conn.execute(
            "SELECT source_product_id, target_product_id, rank FROM prodmatch.matches WHERE run_id = %s",
            (result.run_id,),
        ).fetchall()
        targets = [t for _, t, _ in pairs]
        sources = [s for s, _, _ in pairs]
        assert len(targets) == len(set(targets)) and len(sources) == len(set(sources))
        assert {r for _, _, r in pairs} == {1}
        assigned = dict(
            conn.execute(
                "SELECT source_external_id, target_external_id FROM prodmatch.matches_v WHERE run_id = %s",
                (result.run_id,),
            ).fetchall()
        )
        assert all(assigned[f"shop-{i}"] == f"rival-{i}" for i in range(16))  # twins take each other first
        strict = matching.link(conn, "shop", "rival", k=5, threshold=0.9999, mode="exact")
        assert strict.matched_sources == 16 and strict.pairs == 16


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_link_writes_pairs_to_a_file(settings, matched, tmp_path, suffix):
    out = tmp_path / f"pairs{suffix}"
    result = CliRunner().invoke(
        main,
        [
            "--database-url",
            settings.database_url,
            "link",
            "--source",
            "shop",
            "--target",
            "rival",
            "--k",
            "2",
            "--space",
            "fused",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "exact"  # small catalogues fit the memory budget
    if suffix == ".csv":
        rows = list(csv.DictReader(out.open()))
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 48 and {
        "source_external_id",
        "target_external_id",
        "fused_similarity",
        "rank",
    } <= set(rows[0])


def test_filtered_query_keeping_one_percent_still_returns_k_rows(settings, tiny_clip_dir):
    rng = np.random.default_rng(0)
    n, dim = 3000, 32
    vectors = rng.normal(size=(n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    categories = ["rare" if i % 100 == 0 else "common" for i in range(n)]  # 30 rare products: 1%
    with db.connection(settings) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip")
        ids = products_with_vectors(conn, model.id, "big", vectors, categories)
        rare_query = ids[0]
        rows = matching.similar(conn, rare_query, k=10, same_category=True)
        assert len(rows) == 10
        assert all(categories[ids.index(r.product_id)] == "rare" for r in rows)
        # exact answer: the 10 most similar rare products
        rare = [i for i in range(1, n) if categories[i] == "rare"]
        expected = sorted(rare, key=lambda i: -float(vectors[0] @ vectors[i]))[:10]
        assert len({r.product_id for r in rows} & {ids[i] for i in expected}) >= 9
        # the same query through the index without iterative scans loses rows: the test proves something
        conn.execute("SET hnsw.iterative_scan = off; SET enable_seqscan = off; SET enable_sort = off")
        expr = vector_expression(model, "fused").as_string(conn)
        plain = conn.execute(
            f"SELECT e.product_id FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
            f" WHERE e.model_id = {model.id} AND p.category = 'rare' AND e.product_id <> %s"
            f" ORDER BY {expr} <=> %s::{index_type(model, 'fused')}({dim}) LIMIT 10",
            (rare_query, vectors[0].astype(np.float32)),
        ).fetchall()
        assert len(plain) < 10


def test_dedupe_does_not_chain(settings, tiny_clip_dir):
    # A~B (0.95), B~C (0.95), A!~C (0.80): with threshold 0.9, A and C must not share a cluster.
    a = np.array([1.0, 0.0, 0.0])
    c = np.array([0.80, 0.6, 0.0])
    b = (a + c) / np.linalg.norm(a + c)
    assert a @ b > 0.9 and b @ c > 0.9 and a @ c < 0.9
    rng = np.random.default_rng(1)
    filler = rng.normal(size=(20, 3)) * np.array([0.1, 0.1, 1.0]) + np.array([0, 0, 3.0])
    base = np.vstack([a, b, c, filler])
    vectors = np.zeros((len(base), 32))
    vectors[:, :3] = base
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[4] = vectors[3]  # an exact duplicate pair among the filler
    with db.connection(settings) as conn:
        add_model(conn, str(tiny_clip_dir), name="clip")
        model_id = conn.execute("SELECT id FROM prodmatch.models").fetchone()[0]
        ids = products_with_vectors(conn, model_id, "dupes", vectors, ["x"] * len(vectors))
        result = matching.dedupe(conn, "dupes", threshold=0.9)
        clusters: dict[int, set[int]] = {}
        for cluster_id, product_id in conn.execute(
            "SELECT cluster_id, product_id FROM prodmatch.duplicates_v WHERE run_id = %s", (result.run_id,)
        ):
            clusters.setdefault(cluster_id, set()).add(product_id)
    a_id, b_id, c_id = ids[:3]
    assert not any({a_id, c_id} <= members for members in clusters.values())
    assert any({a_id, b_id} <= m or {b_id, c_id} <= m for m in clusters.values())
    assert any({ids[3], ids[4]} <= m for m in clusters.values())
    for members in clusters.values():  # complete linkage: every pair passes
        rows = [ids.index(p) for p in members]
        sims = vectors[rows] @ vectors[rows].T
        assert sims.min() >= 0.9 - 1e-6


def test_cluster_duplicates_connected_chain_is_split():
    # a chain of 6 products, each 0.95 to the next but far from the ones two steps away
    angles = np.arange(6) * np.arccos(0.95)
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, :5]
    clusters = cluster_duplicates(vectors, order, np.take_along_axis(sims, order, axis=1), 0.9)
    assert all(len(c) <= 2 for c in clusters) and sum(len(c) for c in clusters) >= 4


def test_index_check_reports_recall_per_ef_search(settings, tiny_clip_dir):
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(20, 32))
    vectors = centres[rng.integers(0, 20, 1500)] + 0.3 * rng.normal(size=(1500, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with db.connection(settings) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip")
        products_with_vectors(conn, model.id, "c", vectors, ["x"] * 1500)
    result = CliRunner().invoke(
        main, ["--database-url", settings.database_url, "index", "check", "--sample", "30", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    recalls = [r["recall"] for r in report["rows"]]
    assert recalls[-1] >= 0.99 and recalls == sorted(recalls) or max(recalls) >= 0.99
    assert report["recommended_ef_search"] in [r["ef_search"] for r in report["rows"]]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_query_runs_and_returns_rows(settings, matched, example, tmp_path):
    # a catalogue with a duplicate inside it and a product whose image is missing
    inhouse = tmp_path / "inhouse.csv"
    inhouse.write_text(
        "external_id,title,brand,image\n"
        "D1,Steel kettle 1.7 l,Acme,images/5.png\nD2,Steel kettle 1.7 l,Acme,images/5.png\n"
        "D3,Desk lamp,Acme,images/40.png\nBROKEN,Broken image,Acme,images/missing.jpg\n"
    )
    with db.connection(settings) as conn:
        ingest_file(conn, inhouse, "inhouse")
    embed(settings)
    with db.connection(settings) as conn:
        update_settings(conn, matched, {"threshold": 0.99})  # as `prodmatch eval --save` would
        matching.link(conn, "shop", "rival", k=3)
        matching.dedupe(conn, "inhouse", threshold=0.99)
        rows = conn.execute(example.read_text()).fetchall()
    assert rows, f"{example.name} returned no rows"


def test_cli_similar_search_dedupe(settings, matched):
    runner = CliRunner()
    base = ["--database-url", settings.database_url]
    result = runner.invoke(main, [*base, "similar", "shop:shop-2", "--k", "3", "--other-catalog", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["external_id"] == "rival-2"
    text = runner.invoke(main, [*base, "similar", "shop:shop-2", "--space", "image"])
    assert text.exit_code == 0 and "rival:rival-2" in text.output
    bad = runner.invoke(main, [*base, "similar", "shop-2"])
    assert bad.exit_code == 1 and "CATALOG:EXTERNAL_ID" in bad.output
    found = runner.invoke(main, [*base, "search", "Acme kettle model 0", "--space", "text", "--json"])
    assert found.exit_code == 0 and json.loads(found.stdout)[0]["external_id"] in ("shop-0", "rival-0")
    dedupe = runner.invoke(
        main, [*base, "dedupe", "--catalog", "shop", "--threshold", "0.999", "--space", "fused", "--json"]
    )
    assert dedupe.exit_code == 0 and json.loads(dedupe.stdout)["clusters"] == 0
