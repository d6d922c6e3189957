"""Learning attribute roles from two catalogues' likely matches: keys named differently on each side
(``Art.-Nr.`` and ``kod``) are found, given a role, shown with their evidence and stored; noise is not."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from prodmatch.cli import main
from prodmatch.ingest.load import ingest_file
from prodmatch.match.hybrid import _products
from prodmatch.match.learn_roles import learn_roles
from prodmatch.match.signals.attributes import attribute_agreement
from prodmatch.roles import is_no_brand
from prodmatch.store.catalogs import attribute_roles, catalog_id

ALI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ember-ali-shoes" / "val.parquet"
WORDS = "alpine trail summit ridge canyon glacier meadow harbor falcon cedar maple aspen willow comet nova orbit".split()
BRANDS = "Lowa Meindl Hanwag Salewa Scarpa Keen Merrell Asolo Dachstein Mammut Haix Columbia".split()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def two_shops(conn, tmp_path: Path, n: int = 60) -> None:
    rng = random.Random(3)
    source, target = [], []
    for i in range(n):
        words = rng.sample(WORDS, 3) + [f"w{i}x"]
        brand, code = rng.choice(BRANDS), f"QX-{1000 + i * 7}"
        source.append(
            {"id": f"s{i}", "title": "Wanderschuh " + " ".join(words), "Art.-Nr.": code, "Produzent": brand,
             "Lager": str(rng.randrange(1000))}
        )  # fmt: skip
        rng.shuffle(words)
        target.append(
            {"id": f"t{i}", "title": "Boty " + " ".join(words), "brand": brand, "kod": code.replace("-", ""),
             "výrobce": brand.upper(), "sklad": str(rng.randrange(1000))}
        )  # fmt: skip
    ingest_file(conn, write_jsonl(tmp_path / "quelle.jsonl", source), "quelle")
    ingest_file(conn, write_jsonl(tmp_path / "ziel.jsonl", target), "ziel")


def test_keys_named_differently_on_each_side_are_learned_and_stored(conn, tmp_path: Path):
    two_shops(conn, tmp_path)
    learned = learn_roles(conn, "quelle", "ziel")
    assert learned.likely_matches >= 50
    found = {(e.source_key, e.target_key): e for e in learned.suggestions}
    code = found[("Art.-Nr.", "kod")]
    assert code.role == "code" and code.agreement == 1.0 and code.random_agreement < 0.05
    assert code.source_distinct >= 50 and code.source_role == "code" and code.target_role is None
    assert found[("Produzent", "výrobce")].role == "brand"
    assert not any("Lager" in pair or "sklad" in pair for pair in found)
    text = learned.to_text()
    assert "Art.-Nr." in text and "kod" in text and "--apply" in text
    assert attribute_roles(conn, catalog_id(conn, "ziel")) == {}  # nothing stored without apply

    applied = learn_roles(conn, "quelle", "ziel", apply=True)
    assert applied.applied
    assert attribute_roles(conn, catalog_id(conn, "ziel")) == {"kod": "code", "výrobce": "brand"}
    assert attribute_roles(conn, catalog_id(conn, "quelle")) == {"Produzent": "brand"}  # Art.-Nr. is built in
    ids = np.array([r[0] for r in conn.execute("SELECT id FROM prodmatch.products ORDER BY id")])
    products = _products(conn, ids)
    by_ref = {(p["title"].split()[0], p["id"]): p for p in products.values()}
    first = [p for (kind, _), p in sorted(by_ref.items()) if kind == "Wanderschuh"][0]
    twin = [
        p
        for p in products.values()
        if p["attributes"].get("kod") == first["attributes"]["Art.-Nr."].replace("-", "")
    ]
    assert attribute_agreement([first["attributes"]], [twin[0]["attributes"]], [first.get("attribute_roles")],
                               [twin[0].get("attribute_roles")])[0] == 1.0  # fmt: skip


def test_catalog_roles_learn_from_prints_the_evidence_and_applies(settings, conn, tmp_path: Path):
    two_shops(conn, tmp_path)
    conn.commit()
    runner = CliRunner()
    base = ["--database-url", settings.database_url, "catalog", "roles", "quelle", "--learn-from", "ziel"]
    shown = runner.invoke(main, [*base, "--json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert any(
        e["source_key"] == "Art.-Nr." and e["target_key"] == "kod" and e["suggested"]
        for e in report["evidence"]
    )
    assert runner.invoke(main, [*base, "--apply"]).exit_code == 0
    assert attribute_roles(conn, catalog_id(conn, "ziel"))["kod"] == "code"


@pytest.mark.skipif(not ALI.exists(), reason="needs ../shared/data/ember-ali-shoes (development data)")
def test_learning_on_real_chinese_shoe_offers_finds_the_article_number(conn, tmp_path: Path):
    import pyarrow.parquet as pq

    left, right = {}, {}
    for row in pq.read_table(ALI).to_pylist():
        for side, records in (("left", left), ("right", right)):
            pairs = (kv.split("#:#", 1) for kv in (row[f"pv_pairs_{side}"] or "").split("#;#"))
            attributes = {k: v for k, v in (p for p in pairs if len(p) == 2) if k and v}
            records[row[f"id_{side}"]] = {"id": str(row[f"id_{side}"]), "title": row[f"title_{side}"],
                                          "category": row[f"cate_name_{side}"], **attributes}  # fmt: skip
    ingest_file(conn, write_jsonl(tmp_path / "a.jsonl", list(left.values())), "ali-a")
    ingest_file(conn, write_jsonl(tmp_path / "b.jsonl", list(right.values())), "ali-b")
    # no brand column: the brand comes from 品牌, unless it says "other/其他"
    named = [
        r["品牌"] for r in [*left.values(), *right.values()] if r.get("品牌") and not is_no_brand(r["品牌"])
    ]
    brands = conn.execute("SELECT brand FROM prodmatch.products WHERE brand IS NOT NULL").fetchall()
    assert sorted(b for (b,) in brands) == sorted(named) and len(named) > 500
    learned = learn_roles(conn, "ali-a", "ali-b")
    found = {(e.source_key, e.target_key): e for e in learned.suggestions}
    article = found[("货号", "货号")]
    assert article.role == "code" and article.agreement > 10 * article.random_agreement
    assert all(e.source_key not in ("上市年份季节", "销售渠道类型") for e in learned.evidence)
    print(learned.to_text())
