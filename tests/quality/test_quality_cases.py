"""The benchmark's end-to-end cases: catalogue files prodmatch ingests as they are, and a gold file it reads."""

import json
import sys
from pathlib import Path

import pytest

from prodmatch.ingest.load import ingest_file
from prodmatch.quality.gold import read_gold

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from quality_cases import DATA, build_case, load_case  # noqa: E402

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"needs ../shared/data (the development data; not found at {DATA})"
)


@pytest.mark.parametrize("name", ["walmart-amazon-structured", "wdc-products-80cc"])
def test_a_case_ingests_and_its_gold_names_ingested_products(conn, tmp_path, name):
    paths = build_case(name, "test", tmp_path)
    for path, catalog, count in (
        (paths.source_path, paths.source_catalog, paths.n_source),
        (paths.target_path, paths.target_catalog, paths.n_target),
    ):
        result = ingest_file(conn, path, catalog)
        assert (result.inserted, result.rejected) == (count, 0)
    gold = read_gold(paths.gold_path)
    assert len(gold) == paths.n_gold > 100
    assert {(g.source_catalog, g.target_catalog, g.label) for g in gold} == {
        (paths.source_catalog, paths.target_catalog, 1)
    }
    ids = {
        catalog: {row[0] for row in rows}
        for catalog, rows in (
            (
                c,
                conn.execute(
                    "SELECT p.external_id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                    " WHERE c.name = %s",
                    (c,),
                ).fetchall(),
            )
            for c in (paths.source_catalog, paths.target_catalog)
        )
    }
    assert all(g.source_id in ids[g.source_catalog] and g.target_id in ids[g.target_catalog] for g in gold)


def test_walmart_amazon_records_keep_model_numbers_and_prices(tmp_path):
    paths = build_case("walmart-amazon-structured", "train", tmp_path)
    rows = [json.loads(line) for line in paths.source_path.read_text().splitlines()]
    assert sum(1 for r in rows if r["attributes"].get("modelno")) > len(rows) / 2
    assert all(r["price"] is None or r["price"] > 0 for r in rows)
    assert all(r["title"] and "COL " not in r["title"] for r in rows)


def test_wdc_offers_are_split_between_the_catalogues():
    case = load_case("wdc-products-80cc", "train")
    assert case.pool_split
    source_ids = {p["id"] for p in case.source_products}
    assert not source_ids & {p["id"] for p in case.target_products}  # no offer is its own trivial match
    assert {s for s, _ in case.gold} <= source_ids


@pytest.mark.skipif(
    not (DATA / "ember-ali-shoes").is_dir(),
    reason="needs ../shared/data/ember-ali-shoes (the development data)",
)
def test_ember_shoes_offers_carry_their_attributes_and_the_gold_of_equal_clusters(conn, tmp_path):
    case = load_case("ember-ali-shoes", "test")
    products = case.source_products + case.target_products
    assert case.pool_split and not {p["id"] for p in case.source_products} & {
        p["id"] for p in case.target_products
    }
    assert all(p["brand"] is None and p["title"] for p in products)  # the brand is the 品牌 attribute's
    assert sum(1 for p in products if p["attributes"].get("货号")) > len(products) / 2
    assert all(p["attributes"]["image_url"].startswith("http") for p in products)
    assert all(" / " in p["category"] for p in products)  # cate_level_name / cate_name
    assert len(case.gold) > 1000
    paths = build_case("ember-ali-shoes", "test", tmp_path)
    result = ingest_file(conn, paths.source_path, paths.source_catalog)
    assert (result.inserted, result.rejected) == (paths.n_source, 0)
    stored = conn.execute(
        "SELECT attributes, image FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = %s LIMIT 1",
        (paths.source_catalog,),
    ).fetchone()
    assert "image_url" in stored[0] and stored[1] is None  # a remote picture is not the product's image


@pytest.mark.parametrize("name", ["walmart-amazon-structured", "ember-ali-shoes"])
def test_non_matches_label_the_sources_without_a_twin(tmp_path, name):
    """With `non_matches`, the file's label-0 pairs between A and B join the gold file as label 0: never a gold
    pair, always a source of A and a target of B, and they name sources that have no twin at all."""
    plain = read_gold(build_case(name, "test", tmp_path / "plain").gold_path)
    paths = build_case(name, "test", tmp_path / "labelled", non_matches=True)
    gold = read_gold(paths.gold_path)
    matches = {(g.source_id, g.target_id) for g in gold if g.label == 1}
    non_matches = {(g.source_id, g.target_id) for g in gold if g.label == 0}
    assert matches == {(g.source_id, g.target_id) for g in plain} and len(matches) == paths.n_gold
    assert non_matches and not matches & non_matches
    a = {json.loads(line)["id"] for line in paths.source_path.read_text().splitlines()}
    b = {json.loads(line)["id"] for line in paths.target_path.read_text().splitlines()}
    assert all(s in a and t in b for s, t in non_matches)
    assert {s for s, _ in non_matches} - {s for s, _ in matches}  # sources known only as having no twin
