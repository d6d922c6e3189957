"""Day one with the files shops really send: a Chinese shop's Excel "CSV" in GBK with its columns named in
Chinese, against a marketplace's .xlsx workbook with English column names and Latin brands, linked by the
built-in matcher with no `--map`, no `--encoding` and no label."""

from __future__ import annotations

import json

from click.testing import CliRunner
from openpyxl import Workbook

from prodmatch import store as db
from prodmatch.cli import main

SHOES = [  # (model code, Chinese brand, Latin brand, Chinese kind, English kind, colour zh, colour en, price)
    ("DS7711", "双星", "Doublestar", "跑步鞋", "Running Shoe", "黑色", "Black", 199),
    ("DS7721", "双星", "Doublestar", "篮球鞋", "Basketball Shoe", "白色", "White", 259),
    ("DS7731", "双星", "Doublestar", "板鞋", "Skate Shoe", "红色", "Red", 159),
    ("WR5518", "回力", "Warrior", "帆布鞋", "Canvas Shoe", "白色", "White", 89),
    ("WR5528", "回力", "Warrior", "高帮帆布鞋", "High Top Canvas Shoe", "黑色", "Black", 109),
    ("NK2701", "耐克", "Nike", "气垫跑鞋", "Air Running Shoe", "灰色", "Grey", 899),
]


def _cli(settings, *args) -> dict:
    result = CliRunner().invoke(main, ["--database-url", settings.database_url, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_gbk_shop_file_and_a_marketplace_workbook_link_on_day_one(settings, tmp_path):
    shop = tmp_path / "店铺导出.csv"
    lines = ["商品ID,商品名称,品牌,货号,价格"]
    lines += [
        f"S{i},{b} {kind} {zh} 42码,{b},{code},{p}元"
        for i, (code, b, _, kind, _, zh, _, p) in enumerate(SHOES)
    ]
    shop.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    book = Workbook()
    book.active.append(["Offer ID", "Product Title", "Brand", "Price"])
    for i, (code, _, latin, _, kind, _, en, price) in enumerate(SHOES):
        book.active.append(
            [f"M{i}", f"{latin.upper()} {kind} {code} {en} - Size 42", latin, round(price * 0.14, 2)]
        )
        # the same shoe of the other brand: a look-alike without the code
        other = "Warrior" if latin != "Warrior" else "Doublestar"
        book.active.append([f"X{i}", f"{other.upper()} {kind} {en} - Size 42", other, round(price * 0.13, 2)])
    market = tmp_path / "marketplace.xlsx"
    book.save(market)

    loaded = _cli(settings, "ingest", str(shop), "--catalog", "shop")
    assert (loaded["encoding"], loaded["inserted"], loaded["rejected"]) == ("gb18030", len(SHOES), 0)
    # 品牌 (brand) and 货号 (article number) stay attributes, whose roles fill the brand and the codes
    assert loaded["columns"] == {"external_id": "商品ID", "title": "商品名称", "price": "价格"}
    ingested = _cli(settings, "ingest", str(market), "--catalog", "market", "--map", "external_id=Offer ID")
    assert (ingested["format"], ingested["inserted"]) == ("xlsx", 2 * len(SHOES))
    assert ingested["columns"] == {"title": "Product Title"}  # ("Price" and "Brand" are the fields)

    run = _cli(settings, "link", "--source", "shop", "--target", "market")
    with db.connection(settings) as conn:
        rows = conn.execute(
            "SELECT source_external_id, target_external_id, match_probability, accepted,"
            " (signals ->> 'brand_equal')::float8 FROM prodmatch.matches_v WHERE run_id = %s",
            (run["run_id"],),
        ).fetchall()
        shop_brands = dict(conn.execute("SELECT external_id, brand FROM prodmatch.products").fetchall())
    accepted = {(s, t) for s, t, _, ok, _ in rows if ok}
    twins = {(f"S{i}", f"M{i}") for i in range(len(SHOES))}
    assert shop_brands["S0"] == "双星"  # from the 品牌 column by its role
    assert twins <= accepted  # every twin found, with no label
    assert not {p for p in accepted if p[1].startswith("X")}  # no look-alike of another brand
    brand_equal = {(s, t): e for s, t, _, _, e in rows}
    assert brand_equal[("S0", "M0")] == 1.0  # 双星 = Doublestar, learned from the model codes both write
