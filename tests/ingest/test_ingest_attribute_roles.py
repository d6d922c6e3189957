"""Ingest and attribute roles: a brand from an attribute whose role is brand, roles given with --attribute-role."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from prodmatch.cli import main
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.sources import IngestOptions


def brands(conn, catalog: str) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT p.external_id, p.brand FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = %s",
        (catalog,),
    ).fetchall()
    return dict(rows)


def test_a_row_without_brand_takes_it_from_a_brand_attribute_in_any_language(conn, tmp_path: Path):
    path = tmp_path / "offers.jsonl"
    rows = [
        {"id": "1", "title": "休闲鞋", "品牌": "ZUYEK/足意尔康", "货号": "F9943"},
        {"id": "2", "title": "乐福鞋", "品牌": "other/其他"},
        {"id": "3", "title": "Schuh", "Marke": "Lowa", "Farbe": "rot"},
        {"id": "4", "title": "Chaussure", "brand": "", "Marque": "Aigle"},
        {"id": "5", "title": "Кеды", "производитель": "без бренда"},
        {"id": "6", "title": "Shoe", "brand": "Nike", "Marke": "Adidas"},
        {"id": "7", "title": "Zapato", "Marca": "n/a"},
        {"id": "8", "title": "靴", "品牌": "无品牌"},
        {"id": "9", "title": "Sneaker", "manufacturer": "Generic"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    result = ingest_file(conn, path, "mixed")
    assert result.rejected == 0
    assert brands(conn, "mixed") == {
        "1": "ZUYEK/足意尔康",  # as written
        "2": None,
        "3": "Lowa",
        "4": "Aigle",  # an empty brand column counts as none
        "5": None,
        "6": "Nike",  # a brand column wins over the attribute
        "7": None,
        "8": None,
        "9": None,
    }
    attributes = conn.execute("SELECT attributes FROM prodmatch.products WHERE external_id = '1'").fetchone()[
        0
    ]
    assert attributes["品牌"] == "ZUYEK/足意尔康"  # the attribute stays


def test_attribute_role_option_is_stored_and_names_the_brand_column(settings, conn, tmp_path: Path):
    path = tmp_path / "haendler.csv"
    path.write_text(
        "id,title,Hersteller,Hersteller-Nr,Saison\n1,Wanderschuh,Lowa,LW-310,2020\n2,Stiefel,,MX-9,2021\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    base = ["--database-url", settings.database_url, "ingest", str(path), "--catalog", "haendler"]
    result = runner.invoke(
        main, [*base, "--attribute-role", "Hersteller-Nr=code", "--attribute-role", "Hersteller=brand"]
    )
    assert result.exit_code == 0, result.output
    stored = conn.execute(
        "SELECT attribute_roles FROM prodmatch.catalogs WHERE name = 'haendler'"
    ).fetchone()[0]
    assert stored == {"Hersteller-Nr": "code", "Hersteller": "brand"}
    assert brands(conn, "haendler") == {"1": "Lowa", "2": None}

    # a later ingest without the option keeps the catalogue's roles; a bad role loads nothing
    again = runner.invoke(main, base)
    assert again.exit_code == 0, again.output
    bad = runner.invoke(main, [*base, "--attribute-role", "Hersteller-Nr=model"])
    assert bad.exit_code != 0 and "unknown role 'model'" in bad.output
    missing = runner.invoke(main, [*base, "--attribute-role", "Hersteller-Nr"])
    assert missing.exit_code != 0 and "expected KEY=ROLE" in missing.output
    assert conn.execute("SELECT attribute_roles FROM prodmatch.catalogs WHERE name = 'haendler'").fetchone()[
        0
    ] == {
        "Hersteller-Nr": "code",
        "Hersteller": "brand",
    }


def test_switching_a_builtin_brand_key_off_leaves_the_brand_empty(conn, tmp_path: Path):
    path = tmp_path / "shop.csv"
    path.write_text("id,title,Marke\n1,Schuh,Lowa\n", encoding="utf-8")
    ingest_file(conn, path, "shop", IngestOptions(attribute_roles={"marke": "none"}))
    assert brands(conn, "shop") == {"1": None}
