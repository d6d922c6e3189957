"""Brands written in scripts that share no letters: a Chinese shop's "耐克" against a marketplace's "Nike".

Before brand aliases each such pair was a brand clash (brand_equal 0), on every true pair of a shop that writes
its brands in Chinese, Japanese or Korean against one that writes them in Latin letters. Now names in scripts
that share no letters give no evidence, unless the catalogues being matched say how the two scripts write the
brand: a marketplace's "Nike/耐克" makes 耐克 and Nike one brand, and 耐克 another brand than Adidas.
"""

from __future__ import annotations

import math

import pytest
from builders import shoes_in_two_scripts

from prodmatch.embed.lexical import normalize
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
    assert aliases["nike"] == ("耐克",) and aliases["回力"] == ("warrior",)
    assert "anta" not in aliases and "安踏" not in aliases  # never written in both scripts
    plain = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name <> 'taught-market'").fetchall()
    assert read_brand_aliases(conn, {r[0] for r in plain}) == {}


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
    anta = {(f"s{i}", f"m{i}") for i in range(2, 20, 4)}  # 安踏 / Anta: no field says they are one brand
    lookalikes = {(f"s{i}", f"x{i - 12}") for i in range(12, 20)}  # the same shoe of the next brand
    assert twins | lookalikes <= set(taught) & set(plain)
    # the names alone: no evidence either way (each twin was a brand clash before)
    assert all(plain[p][1] is None for p in twins | lookalikes)
    # with the marketplace's "Nike/耐克": 耐克 is Nike, and not Adidas; 安踏 is not Warrior (回力) either
    assert all(taught[p][1] == 1.0 for p in twins - anta)
    assert all(taught[p][1] is None for p in anta)
    assert all(taught[p][1] == 0.0 for p in lookalikes)
    # the built-in matcher's probabilities move the right way: up for every twin, down for every look-alike
    up = [taught[p][0] - plain[p][0] for p in twins - anta]
    down = [plain[p][0] - taught[p][0] for p in lookalikes]
    assert min(up) > 0 and min(down) >= 0 and sum(down) / len(down) > 0.05
    for i in range(12, 20):  # each shoe's twin at least as likely as the other brand's same shoe
        assert taught[(f"s{i}", f"m{i}")][0] >= taught[(f"s{i}", f"x{i - 12}")][0]
