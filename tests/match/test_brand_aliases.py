"""Brands written in scripts that share no letters: a Chinese shop's "耐克" against a marketplace's "Nike".

Before brand aliases each such pair was a brand clash (brand_equal 0), on every true pair of a shop that writes
its brands in Chinese, Japanese or Korean against one that writes them in Latin letters. Now names in scripts
that share no letters give no evidence, unless the catalogues being matched say how the two scripts write the
brand: a marketplace's "Nike/耐克" makes 耐克 and Nike one brand, and 耐克 another brand than Adidas.
"""

from __future__ import annotations

import math

import pytest
from builders import shoes_in_two_scripts, shoes_sharing_model_codes

from prodmatch.embed.lexical import normalize
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.ingest.load import ingest_file
from prodmatch.match.hybrid import read_brand_aliases
from prodmatch.match.link import link
from prodmatch.match.signals import brand


def test_aliases_come_from_fields_in_two_scripts_and_not_from_a_stray_one():
    aliases = brand.brand_aliases(
        [("Nike/耐克", 30), ("Adidas/阿迪达斯", 12), ("Nike/阿迪达斯", 1), ("SONY (ソニー)", 3), ("回力", 5)],
        normalize,
    )
    # one offer's "Nike/阿迪达斯" is under a fifth of Nike's usual Chinese name: not an alias
    assert aliases == {
        "nike": ("耐克",),
        "耐克": ("nike",),
        "adidas": ("阿迪达斯",),
        "阿迪达斯": ("adidas",),
        "sony": ("ソニー",),
        "ソニー": ("sony",),
    }

    def names(written: str) -> tuple[str, ...]:
        own = brand.brand_names(written, normalize)
        return brand.offer_names(written, brand.aliases_of(own, aliases), normalize)

    assert brand.names_agree(names("耐克"), names("Nike")) == 1.0
    assert brand.names_agree(names("耐克"), names("Adidas")) == 0.0
    assert brand.names_agree(names("回力"), names("Adidas")) == 0.0  # Adidas is 阿迪达斯 in Chinese
    assert math.isnan(brand.names_agree(names("ナイキ"), names("Nike")))  # no alias in katakana: unknown
    assert brand.names_agree(names("361°"), names("Nike")) == 0.0  # a name without letters compares
    # without aliases, names that share no script are not evidence either way (they were a clash)
    assert math.isnan(brand.brand_equal(["耐克"], ["Adidas"])[0])
    assert brand.brand_equal(["Самсунг"], ["Samsung"], normalize=normalize)[0] == 1.0  # transliterated


@pytest.fixture
def two_scripts(conn, tmp_path):
    """The Chinese shop against the marketplace that writes some brands in both scripts ("taught"), and
    against the same marketplace writing Latin names only ("plain")."""
    for variant, teach in (("taught", True), ("plain", False)):
        shop, market = shoes_in_two_scripts(tmp_path / variant, teach=teach)
        ingest_file(conn, market, f"{variant}-market")
    ingest_file(conn, shop, "chinese-shop")
    return conn


def test_the_database_reads_the_aliases_its_catalogues_write(two_scripts):
    conn = two_scripts
    ids = {r[0] for r in conn.execute("SELECT id FROM prodmatch.catalogs").fetchall()}
    aliases = read_brand_aliases(conn, ids)
    assert aliases["回力"] == ("warrior",) and "耐克" in aliases["nike"]
    assert "doublestar" not in aliases and "双星" not in aliases  # never written in both scripts
    plain = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name <> 'taught-market'").fetchall()
    # without two-script fields: only the names prodmatch ships (Nike's, not Warrior's)
    assert read_brand_aliases(conn, {r[0] for r in plain}) == brand.known_aliases(normalize)
    assert "回力" not in brand.known_aliases(normalize)


def test_common_brands_are_known_in_several_scripts():
    known = brand.known_aliases(normalize)

    def names(written: str) -> tuple[str, ...]:
        own = brand.brand_names(written, normalize)
        return brand.offer_names(written, brand.aliases_of(own, known), normalize)

    assert brand.names_agree(names("ナイキ"), names("Nike")) == 1.0  # no catalogue needs to say so
    assert brand.names_agree(names("나이키"), names("耐克")) == 1.0
    assert brand.names_agree(names("Найк"), names("NIKE")) == 1.0  # a Russian spelling
    assert brand.names_agree(names("ナイキ"), names("Adidas")) == 0.0
    assert brand.names_agree(names("Levi's"), names("リーバイス")) == 1.0
    assert brand.names_agree(names("双星"), names("Adidas")) == 0.0  # Adidas is 阿迪达斯 in Chinese
    assert math.isnan(brand.names_agree(names("双星"), names("Doublestar")))  # not shipped: unknown


def _pairs(conn, market: str) -> dict[tuple[str, str], tuple[float, float | None]]:
    run = link(conn, "chinese-shop", market)
    rows = conn.execute(
        "SELECT s.external_id, t.external_id, m.match_probability, (m.signals ->> 'brand_equal')::float8"
        " FROM prodmatch.matches m JOIN prodmatch.products s ON s.id = m.source_product_id"
        " JOIN prodmatch.products t ON t.id = m.target_product_id WHERE m.run_id = %s",
        (run.run_id,),
    ).fetchall()
    return {(s, t): (p, equal) for s, t, p, equal in rows}


def test_a_shop_writing_brands_in_chinese_links_to_a_marketplace_writing_them_in_latin(two_scripts):
    conn = two_scripts
    taught, plain = _pairs(conn, "taught-market"), _pairs(conn, "plain-market")
    twins = {(f"s{i}", f"m{i}") for i in range(20)}
    by_brand = {b: {(f"s{i}", f"m{i}") for i in range(b, 20, 4)} for b in range(4)}
    shipped, doublestar, warrior = by_brand[0] | by_brand[1], by_brand[2], by_brand[3]
    lookalikes = {(f"s{i}", f"x{i - 12}") for i in range(12, 20)}  # the same shoe of the next brand
    unknown_pairs = {("s14", "x2"), ("s18", "x6")}  # 双星 against Warrior: neither known without teaching
    assert twins | lookalikes <= set(taught) & set(plain)
    # Nike and Adidas in Chinese are known without a label or a two-script field: each twin agrees
    assert all(plain[p][1] == 1.0 and taught[p][1] == 1.0 for p in shipped)
    # names alone of brands prodmatch does not ship: no evidence either way (each was a clash before)
    assert all(plain[p][1] is None for p in warrior | doublestar | unknown_pairs)
    # the marketplace's "Warrior/回力" teaches 回力 = Warrior, and so that 双星 is not Warrior
    assert all(taught[p][1] == 1.0 for p in warrior)
    assert all(taught[p][1] is None for p in doublestar)
    assert all(taught[p][1] == 0.0 for p in lookalikes)
    assert all(plain[p][1] == 0.0 for p in lookalikes - unknown_pairs)
    # the built-in matcher's probabilities move the right way: up for the taught twins, down for look-alikes
    assert min(taught[p][0] - plain[p][0] for p in warrior) > 0
    assert all(taught[p][0] <= plain[p][0] for p in unknown_pairs)
    for i in range(12, 20):  # where the brand is known, each shoe's twin above the other brand's same shoe
        if i % 4 != 2:  # (双星 is not: its twin and look-alike differ by a brand word only, no evidence)
            assert taught[(f"s{i}", f"m{i}")][0] >= taught[(f"s{i}", f"x{i - 12}")][0]


def test_brands_whose_offers_share_model_codes_are_aliases(conn, tmp_path):
    # Neither catalogue writes a brand in both scripts and prodmatch ships neither brand's names: the makers'
    # model numbers the two shops' offers share say that 双星 is Doublestar and 回力 Warrior.
    shop, market = shoes_sharing_model_codes(tmp_path)
    ingest_file(conn, shop, "chinese-shop")
    ingest_file(conn, market, "market")
    refresh_lexical(conn)
    ids = {r[0] for r in conn.execute("SELECT id FROM prodmatch.catalogs").fetchall()}
    aliases = read_brand_aliases(conn, ids)
    assert aliases["双星"] == ("doublestar",) and aliases["doublestar"] == ("双星",)
    assert aliases["回力"] == ("warrior",)  # two codes are enough; one (AB1234) names nothing
    for one in ids:  # a catalogue alone: no pair of offers to learn from
        assert "双星" not in read_brand_aliases(conn, {one})

    run = link(conn, "chinese-shop", "market")
    equal = dict(
        conn.execute(
            "SELECT s.external_id || '-' || t.external_id, (m.signals ->> 'brand_equal')::float8"
            " FROM prodmatch.matches m JOIN prodmatch.products s ON s.id = m.source_product_id"
            " JOIN prodmatch.products t ON t.id = m.target_product_id WHERE m.run_id = %s",
            (run.run_id,),
        ).fetchall()
    )
    assert equal["s0-m0"] == 1.0 and equal["w1-v1"] == 1.0  # each was no evidence (NaN) without the codes
    assert equal["c0-k0"] == 0.0  # 双星's slipper and Warrior's bag: two brands now, no evidence before


def test_a_russian_shops_brands_agree_with_their_latin_spelling():
    # Transliterated, `Бош` is bosh and `Филипс` filips: they were a brand clash with Bosch and Philips on every
    # true pair. Compared as they sound they agree, and different brands still clash.
    def equal(a: str, b: str) -> float:
        return brand.brand_equal([a], [b], normalize=normalize)[0]

    for russian, latin in [
        ("Бош", "Bosch"),
        ("Филипс", "Philips"),
        ("Сименс", "Siemens"),
        ("Хуавей", "Huawei"),
        ("Мулинекс", "Moulinex"),
        ("Электролюкс", "Electrolux"),
        ("Ксерокс", "Xerox"),
        ("Делонги", "De'Longhi"),
        ("Самсунг", "Samsung"),  # (agreed before too)
    ]:
        assert equal(russian, latin) == 1.0, (russian, latin)
    for a, b in [
        ("Бош", "Bose"),
        ("Филипс", "Panasonic"),
        ("Bosch", "Bose"),
        ("Asus", "Acer"),
        ("Braun", "Brown"),
    ]:
        assert equal(a, b) == 0.0, (a, b)
