"""Attribute roles: the built-in keys, a catalogue's own roles (stored, shown, changed from the CLI) and what
reads them: the lexical space and product codes (recomputed when roles change) and `attribute_agreement`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from prodmatch import roles
from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.codes import extract_codes
from prodmatch.embed.lexical import LexicalEncoder, lexical_text
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.errors import ConfigError
from prodmatch.ingest.load import ingest_file
from prodmatch.match.hybrid import _products
from prodmatch.match.signals.attributes import attribute_agreement
from prodmatch.match.signals.features import PRODUCT_FEATURES, indexed_pair_features, pair_features
from prodmatch.store.catalogs import catalog_roles, list_catalogs, set_attribute_roles


@pytest.mark.parametrize(
    ("key", "role"),
    [
        ("Brand", "brand"),
        ("品牌", "brand"),
        ("Marke", "brand"),
        ("Marque", "brand"),
        ("Marca", "brand"),
        ("производитель", "brand"),
        ("货号", "code"),
        ("貨號", "code"),
        ("Artikelnummer", "code"),
        ("Art.-Nr.", "code"),
        ("Référence", "code"),
        ("reference", "code"),
        ("Referencia", "code"),
        ("Model Number", "code"),
        ("model_number", "code"),
        ("артикул", "code"),
        ("型番", "code"),
        ("EAN", "gtin"),
        ("штрихкод", "gtin"),
        ("颜色", "identifying"),
        ("颜色分类", "identifying"),
        ("顏色", "identifying"),
        ("尺码", "identifying"),
        ("鞋面材质", "identifying"),
        ("帮面材质", "identifying"),
        ("Farbe", "identifying"),
        ("Größe", "identifying"),
        ("GRÖSSE", "identifying"),
        ("Couleur", "identifying"),
        ("Taille", "identifying"),
        ("Talla", "identifying"),
        ("Colore", "identifying"),
        ("サイズ", "identifying"),
        ("объём", "identifying"),
        ("上市年份季节", None),
        ("销售渠道类型", None),
        ("URL", None),
        ("stock", None),
        ("鞋头款式", None),  # unknown: no role
        ("브랜드", "brand"),
        ("제조사", "brand"),
        ("모델명", "code"),
        ("품번", "code"),
        ("바코드", "gtin"),
        ("색상", "identifying"),
        ("사이즈", "identifying"),
        ("ยี่ห้อ", "brand"),
        ("รหัสสินค้า", "code"),
        ("สี", "identifying"),
        ("ขนาด", "identifying"),
        ("製造元", "brand"),
        ("배송", None),
    ],
)
def test_builtin_roles_in_many_languages(key, role):
    assert roles.role_of(key) == role


def test_colour_keys_in_six_scripts_compare_as_one_slot():
    slots = {roles.comparison_slot(k) for k in ("colour", "Farbe", "颜色", "カラー", "색상", "สี", "цвет")}
    assert slots == {"identifying:colour"}
    assert roles.brand_from_attributes({"브랜드": "Nike"}) == "Nike"
    assert roles.brand_from_attributes({"ยี่ห้อ": "Adidas"}) == "Adidas"


def test_keys_compare_without_case_accents_spaces_or_punctuation():
    assert roles.normalize_key("Référence") == roles.normalize_key("reference") == "reference"
    assert roles.normalize_key(" Art.-Nr. ") == "artnr"
    assert roles.normalize_key("ＳＫＵ") == "sku"  # full-width, NFKC
    assert roles.normalize_key("サイズ") == "サイズ"  # kana keep their voicing marks
    assert roles.role_of("Hersteller-Nr", {"herstellernr": "code"}) == "code"
    assert roles.role_of("Farbe", {"farbe": "none"}) is None  # a catalogue switches a built-in key off


def test_every_key_of_the_former_english_and_russian_lists_keeps_its_role():
    from prodmatch.embed.codes import CODE_ATTRIBUTE_KEYS, GTIN_ATTRIBUTE_KEYS
    from prodmatch.embed.lexical import LEXICAL_ATTRIBUTE_KEYS

    assert all(roles.role_of(k) == "code" for k in CODE_ATTRIBUTE_KEYS)
    assert all(roles.role_of(k) == "gtin" for k in GTIN_ATTRIBUTE_KEYS)
    assert all(roles.role_of(k) in roles.LEXICAL_ROLES for k in LEXICAL_ATTRIBUTE_KEYS)


@pytest.mark.parametrize(
    "value",
    [
        "other/其他",
        "其他",
        "无品牌",
        "no brand",
        "N/A",
        "нет",
        "без бренда",
        "Generic",
        " ",
        "ノーブランド品",
        "기타",
    ]
    + ["ไม่มียี่ห้อ", "Générique", "Sin marca", "keine Marke"],
)
def test_values_that_mean_no_brand(value):
    assert roles.is_no_brand(value)
    assert roles.brand_from_attributes({"品牌": value}) is None


@pytest.mark.parametrize("value", ["Nike/耐克", "Otto", "Nonstop", "Genesis", "Autrement", "安踏"])
def test_brands_are_not_taken_for_no_brand(value):
    assert not roles.is_no_brand(value)
    assert roles.brand_from_attributes({"品牌": value}) == value


def test_bad_assignments_say_the_form():
    assert roles.parse_assignment("Hersteller-Nr=code") == ("Hersteller-Nr", "code")
    assert roles.parse_assignment("a=b=Identifying") == ("a=b", "identifying")
    with pytest.raises(ConfigError, match="expected KEY=ROLE"):
        roles.parse_assignment("Hersteller-Nr")
    with pytest.raises(ConfigError, match="unknown role 'colour'"):
        roles.parse_assignment("Farbe=colour")
    with pytest.raises(ConfigError, match="no letters or digits"):
        roles.parse_assignment("--=code")


def test_lexical_space_and_codes_read_attributes_by_role():
    product = {
        "title": "休闲鞋",
        "attributes": {
            "货号": "F9943",
            "颜色分类": "黑色",
            "上市年份季节": "2018年春季",
            "Teile-ID": "HX-77",
        },
    }
    text = lexical_text(product)
    assert "F9943" in text and "黑色" in text and "2018" not in text and "HX-77" not in text
    assert extract_codes(product) == ["F9943"]
    overridden = roles.with_roles(dict(product), roles.normalize_roles({"Teile-ID": "code", "货号": "none"}))
    assert extract_codes(overridden) == ["HX77"]
    assert "HX-77" in lexical_text(overridden) and "F9943" not in lexical_text(overridden)
    assert LexicalEncoder().terms(overridden) != LexicalEncoder().terms(product)


def test_attribute_agreement_compares_roles_not_names_and_skips_noise():
    left = [
        {"Farbe": "Schwarz", "Saison": "2020"},
        {"货号": "F9943", "上市年份季节": "2018年春季"},
        {"Art.-Nr.": "AB-12"},
        {"Art.-Nr.": "AB-12"},
        {"size": "M"},
    ]
    right = [
        {"colour": "schwarz", "season": "2021"},  # colour by concept; season is noise: agreement 1, not 0.5
        {"artikelnummer": "f9943", "上市年份季节": "2019年秋季"},  # both code
        {"kod": "ab12"},  # unknown key on the right: nothing shared
        {"kod": "ab12"},
        {"尺码": "L"},
    ]
    plain = attribute_agreement(left, right)
    assert plain[0] == 1.0 and plain[1] == 1.0 and np.isnan(plain[2]) and plain[4] == 0.0
    with_roles = attribute_agreement(
        left, right, [None, None, None, None, None], [None, None, {"kod": "code"}, None, None]
    )
    assert with_roles[2] == 1.0 and np.isnan(with_roles[3])


@pytest.mark.parametrize(
    ("left", "right", "agree"),
    [
        ({"カラー": "ホワイト"}, {"colour": "White"}, 1.0),
        ({"colour": "Navy"}, {"color": "Blue"}, 0.0),  # one script: two shades a shop tells apart
        ({"цвет": "синий"}, {"color": "Blue"}, 1.0),
        ({"颜色分类": "黑色"}, {"색상": "블랙"}, 1.0),
        ({"สี": "ดำ"}, {"Farbe": "Weiß"}, 0.0),
        ({"容量": "500ml"}, {"Capacity": "0,5 л"}, 1.0),
        ({"容量": "500ml"}, {"capacity": "1 l"}, 0.0),
        ({"weight": "1,5 кг"}, {"重量": "1500克"}, 1.0),
        ({"鞋跟高": "高跟(5-8cm)"}, {"鞋跟高": "超高跟(大于8cm)"}, 0.0),  # classes, not quantities
        ({"артикул": "500ml"}, {"mpn": "0.5l"}, 0.0),  # codes compare as written
    ],
)
def test_attribute_values_in_two_languages_or_units_agree(left, right, agree):
    assert attribute_agreement([left], [right])[0] == agree


def test_batch_and_per_pair_attribute_agreement_stay_equal_with_catalogue_roles():
    rng = np.random.default_rng(5)
    keyed = [{"kod": "code"}, None, {"farbe": "none"}]
    values = [{"Art.-Nr.": "AB-12", "Farbe": "rot"}, {"kod": "ab12"}, {"artikul": "x", "цвет": "красный"}, {}]
    products = [
        roles.with_roles({"title": f"p{i}", "attributes": values[i % 4], "codes": []}, keyed[i % 3])
        for i in range(24)
    ]
    left, right = rng.integers(0, 24, 400), rng.integers(0, 24, 400)
    batch = indexed_pair_features(products, left, right)
    reference = pair_features([products[i] for i in left], [products[j] for j in right])
    column = PRODUCT_FEATURES.index("attribute_agreement")
    assert np.array_equal(batch.values[:, column], reference.values[:, column], equal_nan=True)
    assert (batch.values[:, column] == 1.0).any()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_catalogue_roles_are_stored_shown_and_make_lexical_rows_stale(conn, tmp_path: Path):
    rows = [
        {"id": str(i), "title": f"Wanderschuh {i}", "Teile-ID": f"HX-{i}7", "Farbe": "rot"} for i in range(6)
    ]
    ingest_file(conn, write_jsonl(tmp_path / "h.jsonl", rows), "haendler")
    ingest_file(conn, write_jsonl(tmp_path / "s.jsonl", [{"id": "1", "title": "x"}]), "shop")
    refresh_lexical(conn)
    assert conn.execute("SELECT count(*) FROM prodmatch.lexical WHERE codes <> '{}'").fetchone()[0] == 0

    stored = set_attribute_roles(conn, "haendler", {"Teile-ID": "code", "Farbe": "none"})
    assert stored == {"Teile-ID": "code", "Farbe": "none"}
    stale = conn.execute(
        "SELECT count(*) FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
        " WHERE l.content_hash <> p.content_hash"
    ).fetchone()[0]
    assert stale == 6  # the catalogue's rows, not shop's
    refresh_lexical(conn)  # a full rebuild here: most products are stale
    codes = conn.execute(
        "SELECT p.external_id, l.codes FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
        " WHERE p.external_id = '3' AND p.catalog_id = prodmatch.catalog_id('haendler')"
    ).fetchone()
    assert codes == ("3", ["HX37"])
    assert refresh_lexical(conn).encoded == 0  # nothing stale any more

    shown = catalog_roles(conn, "haendler")
    by_key = {k.key: k for k in shown.keys}
    assert shown.products == 6
    assert (
        by_key["Farbe"].products,
        by_key["Farbe"].builtin,
        by_key["Farbe"].catalog,
        by_key["Farbe"].role,
    ) == (
        6,
        "identifying",
        "none",
        None,
    )
    assert by_key["Teile-ID"].role == "code" and by_key["Teile-ID"].builtin is None
    assert "Teile-ID" in shown.to_text()

    # a spelling of the same key replaces it; unset goes back to the built-in role; the same roles change nothing
    assert set_attribute_roles(conn, "haendler", {"teile id": "code"}, unset=["FARBE"]) == {
        "teile id": "code"
    }
    refresh_lexical(conn)
    set_attribute_roles(conn, "haendler", {"Teile-ID": "code"})
    assert refresh_lexical(conn).encoded == 0

    # the matching reader attaches the catalogue's roles to each product mapping
    ids = np.array([r[0] for r in conn.execute("SELECT id FROM prodmatch.products ORDER BY id")])
    products = _products(conn, ids)
    attached = [p.get(roles.ROLES_FIELD) for p in products.values()]
    assert attached.count({"teileid": "code"}) == 6 and attached.count(None) == 1

    with pytest.raises(ConfigError, match="unknown role"):
        set_attribute_roles(conn, "haendler", {"Farbe": "colour"})
    with pytest.raises(ConfigError, match="nowhere"):
        set_attribute_roles(conn, "nowhere", {"Farbe": "none"})
    assert [c.name for c in list_catalogs(conn).catalogs] == ["haendler", "shop"]


def test_catalog_cli_lists_shows_sets_and_unsets(settings, conn, tmp_path: Path):
    rows = [
        {"id": str(i), "title": f"鞋 {i}", "品牌": "ZUYEK", "货号": f"F99{i}", "鞋头款式": "圆头"}
        for i in range(3)
    ]
    ingest_file(conn, write_jsonl(tmp_path / "ali.jsonl", rows), "ali")
    conn.commit()
    runner = CliRunner()
    base = ["--database-url", settings.database_url, "catalog"]
    listed = runner.invoke(main, [*base, "list"])
    assert listed.exit_code == 0 and "ali" in listed.output and "3" in listed.output
    shown = runner.invoke(main, [*base, "roles", "ali", "--json"])
    assert shown.exit_code == 0, shown.output
    keys = {k["key"]: k for k in json.loads(shown.output)["keys"]}
    assert (
        keys["货号"]["role"] == "code"
        and keys["品牌"]["role"] == "brand"
        and keys["鞋头款式"]["role"] is None
    )
    changed = runner.invoke(
        main, [*base, "roles", "ali", "--set", "鞋头款式=identifying", "--set", "货号=none", "--json"]
    )
    keys = {k["key"]: k for k in json.loads(changed.output)["keys"]}
    assert keys["鞋头款式"]["role"] == "identifying" and keys["货号"]["role"] is None
    back = runner.invoke(main, [*base, "roles", "ali", "--unset", "货号"])
    assert back.exit_code == 0 and "鞋头款式" in back.output
    assert json.loads(runner.invoke(main, [*base, "list", "--json"]).output)["catalogs"][0][
        "attribute_roles"
    ] == {"鞋头款式": "identifying"}
    bad = runner.invoke(main, [*base, "roles", "ali", "--set", "x=colour"])
    assert bad.exit_code == 1 and "unknown role 'colour'" in bad.output
    unknown = runner.invoke(main, [*base, "roles", "nowhere"])
    assert unknown.exit_code == 1 and "nowhere" in unknown.output
    lonely = runner.invoke(main, [*base, "roles", "ali", "--apply"])
    assert lonely.exit_code == 2 and "--learn-from" in lonely.output


def test_migration_adds_and_drops_the_column(empty_settings):
    db.upgrade(empty_settings)
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('c')")
        assert conn.execute("SELECT attribute_roles FROM prodmatch.catalogs").fetchone()[0] == {}
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE prodmatch.catalogs SET attribute_roles = '[]'")
    assert db.downgrade(empty_settings, "0009") == "0009"
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'prodmatch'"
                " AND table_name = 'catalogs'"
            )
        }
    assert "attribute_roles" not in columns and "name" in columns
