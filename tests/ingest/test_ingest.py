"""Ingest: every file shape a real export comes in, bad rows, upsert semantics, bounded memory."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
from builders import catalog_products as products
from click.testing import CliRunner

from prodmatch.cli import main
from prodmatch.errors import IngestError
from prodmatch.ingest.columns import NAMES as COLUMN_NAMES
from prodmatch.ingest.columns import field_of
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.rows import parse_price
from prodmatch.ingest.sources import IngestOptions
from prodmatch.roles import role_of

ROWS = [
    {
        "external_id": "A1",
        "title": "Кроссовки беговые",
        "brand": "Nike",
        "price": "4 999,00",
        "image": "img/a1.jpg",
    },
    {
        "external_id": "A2",
        "title": "Red shoe, size 42",
        "brand": "Adidas",
        "price": "12.50",
        "image": "http://cdn.example/a2.jpg",
    },
    {"external_id": "A3", "title": 'Multi-line\n"quoted" title', "brand": "Puma", "price": "", "image": ""},
]


def write_csv(
    path: Path, rows: list[dict], *, delimiter=",", encoding="utf-8", header=None, extra=None
) -> Path:
    header = header or ["external_id", "title", "brand", "price", "image", "colour"]
    lines = [delimiter.join(header)]
    for i, row in enumerate(rows):
        values = [row.get(h, "") for h in ["external_id", "title", "brand", "price", "image"]]
        values.append(extra[i] if extra else "red")
        lines.append(delimiter.join(_quote(v, delimiter) for v in values))
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _quote(value: str, delimiter: str) -> str:
    if any(c in value for c in (delimiter, '"', "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_jsonl(path: Path, objects: list, *, raw_lines: list[str] = ()) -> Path:
    lines = [json.dumps(o, ensure_ascii=False) for o in objects] + list(raw_lines)
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "name, delimiter, encoding",
    [
        ("plain.csv", ",", "utf-8"),
        ("bom.csv", ",", "utf-8-sig"),
        ("legacy.csv", ";", "cp1251"),
        ("tabs.tsv", "\t", "utf-8"),
        ("pipes.txt", "|", "utf-8"),
        ("packed.csv.gz", ";", "utf-8"),
    ],
)
def test_csv_shapes_load_the_same_products(conn, tmp_path, name, delimiter, encoding):
    path = write_csv(tmp_path / name, ROWS, delimiter=delimiter, encoding=encoding)
    result = ingest_file(conn, path, "shop")
    assert (result.inserted, result.rejected) == (3, 0)
    assert result.delimiter == delimiter
    got = products(conn)
    assert got["A1"]["title"] == "Кроссовки беговые"
    assert got["A1"]["price"] == Decimal("4999.00")
    assert got["A2"]["price"] == Decimal("12.50")
    assert got["A3"]["title"] == 'Multi-line\n"quoted" title'
    assert got["A3"]["price"] is None
    assert got["A1"]["attributes"] == {"colour": "red"}
    assert got["A1"]["image"] == str(tmp_path / "img" / "a1.jpg")
    assert got["A2"]["image"] == "http://cdn.example/a2.jpg"


@pytest.mark.parametrize("name", ["items.jsonl", "items.jsonl.gz", "items.ndjson"])
def test_jsonl_loads_nested_attributes_and_numeric_prices(conn, tmp_path, name):
    objects = [
        # An absolute image path is kept when it lies inside the images root (the file's folder).
        {
            "id": "J1",
            "title": "Lamp",
            "price": 19.99,
            "image": str(tmp_path / "img" / "j1.png"),
            "size": {"h": 30},
        },
        {"external_id": "J2", "title": "Chair", "price": "1.299,00 €", "attributes": {"wood": "oak"}},
    ]
    result = ingest_file(conn, write_jsonl(tmp_path / name, objects), "shop")
    assert (result.format, result.inserted, result.rejected) == ("jsonl", 2, 0)
    got = products(conn)
    assert got["J1"]["price"] == Decimal("19.99")
    assert got["J1"]["attributes"] == {"size": {"h": 30}}
    assert got["J1"]["image"] == str(tmp_path / "img" / "j1.png")
    assert (got["J2"]["price"], got["J2"]["currency"]) == (Decimal("1299.00"), "EUR")
    assert got["J2"]["attributes"] == {"wood": "oak"}


TITLES_BY_PAGE = {
    "gbk": [
        "Nike 耐克 Air Max 270 男鞋 运动鞋 42码",
        "阿迪达斯 三叶草 板鞋 白色 女款",
        "回力 帆布鞋 经典款 黑色 透气",
    ],
    "big5": ["耐吉 運動鞋 男款 黑色 42碼", "愛迪達 板鞋 白色 女款", "回力 帆布鞋 經典款 透氣"],
    "cp932": [
        "ナイキ エアマックス 270 メンズ スニーカー 黒",
        "アディダス スタンスミス 白 27cm",
        "無印良品 ノート 5冊",
    ],
    "euc_jp": [
        "ナイキ エアマックス 270 メンズ スニーカー 黒",
        "アディダス スタンスミス 白 27cm",
        "無印良品 ノート 5冊",
    ],
    "cp949": ["나이키 에어맥스 270 남성 운동화 검정색", "아디다스 슈퍼스타 흰색 270mm", "농심 신라면 5개입"],
    "cp1252": ["Café moulu 250 g, été", "Crème brûlée à la française"],  # accents that also pair up as GBK
}


@pytest.mark.parametrize("written_in", sorted(TITLES_BY_PAGE))
def test_exports_in_east_asian_code_pages_read_as_written(conn, tmp_path, written_in):
    # Excel's "CSV" on a Windows set up for Chinese, Japanese or Korean writes its code page, not UTF-8; read as
    # a Cyrillic or Latin page they became mojibake without an error.
    titles = TITLES_BY_PAGE[written_in]
    rows = [{"external_id": f"E{i}", "title": t, "price": "599.00"} for i, t in enumerate(titles)]
    path = write_csv(tmp_path / "export.csv", rows, encoding=written_in)
    result = ingest_file(conn, path, "shop")
    assert (result.inserted, result.rejected) == (len(titles), 0)
    assert result.encoding == {"gbk": "gb18030"}.get(written_in, written_in)
    got = products(conn)
    assert [got[f"E{i}"]["title"] for i in range(len(titles))] == titles


def test_columns_named_in_the_shops_language_load_without_map(conn, tmp_path):
    path = tmp_path / "taobao.csv"
    path.write_text(
        "商品ID,商品名称,品牌,价格,颜色\nT1,耐克 Air Max 270 男鞋,耐克,599元,黑色\n", encoding="utf-8"
    )
    result = ingest_file(conn, path, "cn")
    assert (result.inserted, result.rejected) == (1, 0)
    assert result.columns == {"external_id": "商品ID", "title": "商品名称", "price": "价格"}
    assert "'商品名称' as title" in result.to_text()
    row = products(conn, "cn")["T1"]
    assert (row["title"], row["price"], row["currency"]) == (
        "耐克 Air Max 270 男鞋",
        Decimal("599.00"),
        "CNY",
    )
    # 品牌 stays an attribute whose role fills the brand; an unknown column stays an attribute
    assert row["brand"] == "耐克" and row["attributes"] == {"品牌": "耐克", "颜色": "黑色"}

    german = tmp_path / "shop.csv"
    german.write_text(
        "ID;Produkt-Name;Preis;Bild\nD1;Wanderschuh Lowa Renegade;189,95 €;\n", encoding="utf-8"
    )
    result = ingest_file(conn, german, "de")
    assert result.columns == {"title": "Produkt-Name", "price": "Preis", "image": "Bild"}
    assert products(conn, "de")["D1"]["price"] == Decimal("189.95")


def test_no_column_name_read_as_a_field_is_an_attribute_key_with_a_role():
    # `sku`, `код товара` and `商品编号` carry codes: read as the id, they would leave the code signals
    taken = {name: field_of(name) for names in COLUMN_NAMES.values() for name in names}
    assert taken and all(field_of(name) is not None for name in taken)
    assert [name for name in taken if role_of(name)] == []
    assert field_of("sku") is None and field_of("Артикул") is None and role_of("sku") == "code"


def test_a_shops_own_article_number_is_the_id_where_no_column_is(conn, tmp_path):
    # An Ozon seller's export names its rows by `Артикул` only: it is the id, and stays an attribute (a code)
    path = tmp_path / "ozon.csv"
    path.write_text(
        "Артикул;Наименование;Цена;Бренд\nTWK-1;Чайник Bosch TWK3A011;2 490 ₽;Bosch\n"
        "GC-7;Утюг Philips GC1742;1 990 ₽;Philips\nTWK-1;Чайник Bosch (копия);2 490 ₽;Bosch\n",
        encoding="utf-8",
    )
    result = ingest_file(conn, path, "ozon")
    assert result.columns == {"external_id": "Артикул", "title": "Наименование", "price": "Цена"}
    assert (result.inserted, result.rejected) == (2, 1)  # a repeated article is a reject, not an overwrite
    assert {r.field for r in result.rejects} == {"external_id"}
    row = products(conn, "ozon")["GC-7"]
    assert (row["title"], row["attributes"]) == (
        "Утюг Philips GC1742",
        {"Артикул": "GC-7", "Бренд": "Philips"},
    )

    rows = tmp_path / "feed.jsonl"
    write_jsonl(rows, [{"SKU": "S-1", "name": "Kettle", "model": "TWK3A011"}, {"name": "no article at all"}])
    result = ingest_file(conn, rows, "feed")
    assert result.columns == {"title": "name", "external_id": "SKU"} and (
        result.inserted,
        result.rejected,
    ) == (1, 1)
    assert products(conn, "feed")["S-1"]["attributes"] == {"SKU": "S-1", "model": "TWK3A011"}


def test_a_column_named_as_the_field_wins_over_one_that_means_it(conn, tmp_path):
    path = tmp_path / "both.csv"
    path.write_text("name,id,title\nBosch,B1,Kettle TWK 3A011\n", encoding="utf-8")
    result = ingest_file(conn, path, "shop")
    assert result.columns == {}
    row = products(conn)["B1"]
    assert (row["title"], row["attributes"]) == ("Kettle TWK 3A011", {"name": "Bosch"})

    rows = tmp_path / "ru.jsonl"
    write_jsonl(
        rows,
        [
            {
                "Наименование": "Чайник Bosch TWK 3A011",
                "id": "R1",
                "Артикул": "TWK3A011",
                "Цена": "2 490 руб.",
            },
            {"id": "R2", "title": "Утюг Philips", "Наименование": "другое имя"},
        ],
    )
    result = ingest_file(conn, rows, "ru")
    assert result.columns == {"title": "Наименование", "price": "Цена"}
    got = products(conn, "ru")
    assert (got["R1"]["title"], got["R1"]["price"]) == ("Чайник Bosch TWK 3A011", Decimal("2490.00"))
    assert got["R1"]["attributes"] == {"Артикул": "TWK3A011"}
    assert got["R2"]["title"] == "Утюг Philips" and got["R2"]["attributes"] == {"Наименование": "другое имя"}


def test_map_reads_columns_named_in_another_language(conn, tmp_path):
    path = tmp_path / "ru.csv"
    path.write_text(
        "Артикул;Наименование;Цена;Фото\nR1;Чайник;1 290,50 руб.;фото/r1.jpg\n", encoding="cp1251"
    )
    images = tmp_path / "pictures"
    options = IngestOptions(
        mapping={"external_id": "Артикул", "title": "Наименование", "price": "Цена", "image": "Фото"},
        images_root=images,
    )
    result = ingest_file(conn, path, "ru", options)
    assert result.encoding == "cp1251" and result.inserted == 1
    row = products(conn, "ru")["R1"]
    assert (row["title"], row["price"], row["currency"]) == ("Чайник", Decimal("1290.50"), "RUB")
    assert row["image"] == str(images / "фото" / "r1.jpg")


@pytest.mark.parametrize(
    "text, decimal_comma, expected",
    [
        ("4 999,00", None, "4999.00"),
        ("4\u00a0999,00 руб.", None, "4999.00"),
        ("1,299.99", None, "1299.99"),
        ("1.299,99", None, "1299.99"),
        ("12,50", None, "12.50"),
        ("12,500", None, "12500"),
        ("12,500", True, "12.500"),
        ("1.234.567", None, "1234567"),
        ("$15", None, "15"),
        ("0", None, "0"),
    ],
)
def test_parse_price(text, decimal_comma, expected):
    assert parse_price(text, decimal_comma)[0] == Decimal(expected)


@pytest.mark.parametrize(
    "text, amount, currency",
    [
        ("1 299,00 ₽", "1299.00", "RUB"),
        ("1299 руб.", "1299", "RUB"),
        ("RUB 1299", "1299", "RUB"),
        ("1.299,00 €", "1299.00", "EUR"),
        ("49,- €", "49", "EUR"),  # a whole amount, as German shops write it
        ("1299.-", "1299", None),
        ("R$ 1.299,90", "1299.90", "BRL"),  # the Brazilian real, not the dollar its sign ends with
        ("C$ 12.50", "12.50", "CAD"),
        ("US$12", "12", "USD"),
        ("$1,299.99", "1299.99", None),  # dollars, or pesos: Mexico, Colombia, Chile write "$" too
        ("¥1,299", "1299", None),  # yen or yuan
        ("￥88", "88", None),
        ("1 299 元", "1299", "CNY"),
        ("RMB 10", "10", "CNY"),
        ("3,980円", "3980", "JPY"),
        ("₹1,29,999", "129999", "INR"),  # India groups by lakhs and crores
        ("₩12,000", "12000", "KRW"),
        ("1 299 грн.", "1299", "UAH"),
    ],
)
def test_parse_price_reads_the_currency_a_price_names(text, amount, currency):
    assert parse_price(text) == (Decimal(amount), currency)


@pytest.mark.parametrize("text", ["abc", "12..5", "-5", "1,2,3.4.5", "12 34 56 x7,8.9,1", "12,34,56"])
def test_parse_price_refuses_what_is_not_a_price(text):
    with pytest.raises(ValueError):
        parse_price(text)


BAD_CSV = (
    "external_id,title,price\n"
    "G1,good one,10\n"
    ",no id,5\n"
    "G2,bad price,twelve\n"
    "G1,duplicate,7\n"
    "G3,too,many,fields\n"
    "G4,good two,11\n"
)


def test_bad_csv_rows_are_rejected_with_line_and_field_and_good_rows_load(conn, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    result = ingest_file(conn, path, "shop")
    assert (result.inserted, result.rejected) == (2, 4)
    assert set(products(conn)) == {"G1", "G4"}
    by_line = {r.line: r for r in result.rejects}
    assert (by_line[3].field, by_line[3].reason) == ("external_id", "missing external_id")
    assert by_line[4].field == "price" and "twelve" in by_line[4].reason
    assert by_line[5].field == "external_id" and "first seen on line 2" in by_line[5].reason
    assert "4 fields but the header has 3" in by_line[6].reason
    stored = conn.execute("SELECT line, field, file FROM prodmatch.ingest_rejects ORDER BY line").fetchall()
    assert [(line, f) for line, f, _ in stored] == [
        (3, "external_id"),
        (4, "price"),
        (5, "external_id"),
        (6, None),
    ]
    assert all(file == str(path) for _, _, file in stored)


def test_bad_jsonl_lines_are_rejected(conn, tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"id": "J1", "title": "ok"}],
        raw_lines=[
            '{"id": "J2", "title": "broken',
            '["not", "an", "object"]',
            '{"title": "no id"}',
            '{"id": "J5", "title": {"x": 1}}',
        ],
    )
    result = ingest_file(conn, path, "shop")
    assert (result.inserted, result.rejected) == (1, 4)
    reasons = {r.line: (r.field, r.reason) for r in result.rejects}
    assert reasons[2][1].startswith("broken JSON")
    assert reasons[3][1] == "expected a JSON object, got list"
    assert reasons[4] == ("external_id", "missing external_id")
    assert reasons[5][0] == "title"


def test_undecodable_bytes_reject_only_their_row(conn, tmp_path):
    path = tmp_path / "mixed.csv"
    good = "external_id,title\n" + "".join(f"U{i},Ünïcödé {i}\n" for i in range(50))
    path.write_bytes(good.encode() + b"U99,bad \xff\xfe bytes\n" + b"U100,fine\n")
    result = ingest_file(conn, path, "shop")
    assert result.encoding == "utf-8"
    assert (result.inserted, result.rejected) == (51, 1)
    assert result.rejects[0].line == 52 and "undecodable" in result.rejects[0].reason


def test_missing_required_column_fails_before_writing(conn, tmp_path):
    path = tmp_path / "nocol.csv"
    path.write_text("ean,label\n1,x\n")  # (`name` would be read as the title)
    with pytest.raises(IngestError, match=r"missing required column\(s\) title; .*--map title=COLUMN"):
        ingest_file(conn, path, "shop")
    assert conn.execute("SELECT count(*) FROM prodmatch.catalogs").fetchone()[0] == 0


@pytest.mark.parametrize("make", [lambda p: p, lambda p: (p.mkdir(), p)[1]])
def test_unreadable_file_is_a_clear_error(conn, tmp_path, make):
    path = make(tmp_path / "missing.csv")
    with pytest.raises(IngestError, match="missing.csv"):
        ingest_file(conn, path, "shop")


def test_strict_loads_nothing_when_a_row_is_bad(conn, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(IngestError, match="4 of 6 rows rejected; --strict loaded nothing"):
        ingest_file(conn, path, "shop", IngestOptions(strict=True))
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 0


def test_second_identical_ingest_changes_nothing(conn, tmp_path):
    path = write_csv(tmp_path / "a.csv", ROWS)
    ingest_file(conn, path, "shop")
    before = products(conn)
    again = ingest_file(conn, path, "shop")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert products(conn) == before


def test_changed_row_is_updated_and_marked_pending(conn, tmp_path):
    ingest_file(conn, write_csv(tmp_path / "a.csv", ROWS), "shop")
    model_id = _register_fake_model(conn)
    conn.execute("UPDATE prodmatch.embeddings SET status = 'done'")
    changed = [dict(ROWS[0], title="Кроссовки беговые v2"), *ROWS[1:]]
    result = ingest_file(conn, write_csv(tmp_path / "b.csv", changed), "shop")
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 2)
    status = dict(
        conn.execute(
            "SELECT p.external_id, e.status FROM prodmatch.embeddings e"
            " JOIN prodmatch.products p ON p.id = e.product_id WHERE e.model_id = %s",
            (model_id,),
        ).fetchall()
    )
    assert status == {"A1": "pending", "A2": "done", "A3": "done"}


def _register_fake_model(conn) -> int:
    """A models row as `prodmatch models add` would write it, plus the pending rows it creates."""
    model_id = conn.execute(
        "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
        " VALUES ('m', 'fake', 'clip', 4, 4, '{brand} {title}') RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO prodmatch.embeddings (model_id, product_id) SELECT %s, id FROM prodmatch.products",
        (model_id,),
    )
    return model_id


def test_plain_sql_insert_and_update_by_an_application_become_pending(conn, tmp_path):
    model_id = _register_fake_model(conn)
    catalog_id = conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('app') RETURNING id").fetchone()[
        0
    ]
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, price, image)"
        " VALUES (%s, 'X1', 'Kettle', 'Bosch', 39.90, 'http://img/x1.jpg')"
        " ON CONFLICT (catalog_id, external_id) DO UPDATE SET title = EXCLUDED.title",
        (catalog_id,),
    )
    pending = "SELECT status FROM prodmatch.embeddings WHERE model_id = %s"
    assert conn.execute(pending, (model_id,)).fetchall() == [("pending",)]
    conn.execute("UPDATE prodmatch.embeddings SET status = 'done'")
    conn.execute("UPDATE prodmatch.products SET price = 39.90 WHERE external_id = 'X1'")  # no real change
    assert conn.execute(pending, (model_id,)).fetchall() == [("done",)]
    conn.execute("UPDATE prodmatch.products SET title = 'Kettle 2' WHERE external_id = 'X1'")
    assert conn.execute(pending, (model_id,)).fetchall() == [("pending",)]


def test_large_file_streams_in_bounded_memory(conn, tmp_path):
    path = tmp_path / "big.csv.gz"
    description = "Lorem ipsum dolor sit amet; consectetur adipiscing elit " * 5
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        f.write("external_id,title,description,brand,price,image\n")
        for i in range(100_000):
            f.write(f"P{i},Product {i},{description},Brand {i % 50},{i % 997},img/{i}.jpg\n")
    text_size = len(description) * 100_000
    tracemalloc.start()
    try:
        result = ingest_file(conn, path, "big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.inserted == 100_000 and result.rejected == 0
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 100_000
    assert peak < 20 * 1024 * 1024 < text_size  # the file's text (28 MB) never sits in memory at once


def test_cli_ingest_json_and_exit_codes(settings, tmp_path):
    runner = CliRunner()
    args = ["--database-url", settings.database_url, "ingest"]
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    result = runner.invoke(main, [*args, str(bad), "--catalog", "shop", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["inserted"], report["rejected"]) == (2, 4)
    assert {r["line"] for r in report["rejects"]} == {3, 4, 5, 6}

    strict = runner.invoke(main, [*args, str(bad), "--catalog", "shop", "--strict"])
    assert strict.exit_code == 1 and "--strict loaded nothing" in strict.output

    hopeless = tmp_path / "hopeless.csv"
    hopeless.write_text("external_id,title,price\n,x,1\nB,y,zzz\n")
    nothing = runner.invoke(main, [*args, str(hopeless), "--catalog", "shop"])
    assert nothing.exit_code == 1 and "nothing could be loaded" in nothing.output

    missing = runner.invoke(main, [*args, str(tmp_path / "nope.csv"), "--catalog", "shop"])
    assert missing.exit_code == 1 and "no such file" in missing.output
    assert "Traceback" not in missing.output


def test_cli_map_option_is_validated(settings, tmp_path):
    path = write_csv(tmp_path / "a.csv", ROWS)
    result = CliRunner().invoke(
        main,
        ["--database-url", settings.database_url, "ingest", str(path), "--catalog", "c", "--map", "colour"],
    )
    assert result.exit_code == 2 and "expected FIELD=COLUMN" in result.output


def test_prune_deletes_what_a_full_export_no_longer_lists(conn, tmp_path):
    ingest_file(conn, write_csv(tmp_path / "full.csv", ROWS), "shop")
    ingest_file(conn, write_csv(tmp_path / "other.csv", ROWS), "rival")
    _register_fake_model(conn)
    # A1 is gone from the new export; A2 is still listed but its new price is bad (rejected, not deleted).
    export = [dict(ROWS[1], price="twelve"), ROWS[2], {"external_id": "A4", "title": "new", "price": "1"}]
    result = ingest_file(
        conn, write_csv(tmp_path / "next.csv", export), "shop", IngestOptions(prune=True, prune_max=0.5)
    )

    assert (result.inserted, result.rejected, result.deleted, result.prune_skipped) == (1, 1, 1, None)
    assert set(products(conn)) == {"A2", "A3", "A4"}
    assert products(conn)["A2"]["price"] == Decimal("12.50")  # the rejected row kept its old values
    assert set(products(conn, "rival")) == {"A1", "A2", "A3"}  # other catalogues are not touched
    orphans = conn.execute(
        "SELECT count(*) FROM prodmatch.embeddings e"
        " WHERE NOT EXISTS (SELECT 1 FROM prodmatch.products p WHERE p.id = e.product_id)"
    ).fetchone()[0]
    assert orphans == 0


def test_prune_is_skipped_when_a_row_id_cannot_be_read(conn, tmp_path):
    ingest_file(conn, write_csv(tmp_path / "full.csv", ROWS), "shop")
    export = [ROWS[1], {"external_id": "", "title": "which product is this?"}]
    result = ingest_file(conn, write_csv(tmp_path / "next.csv", export), "shop", IngestOptions(prune=True))
    assert result.deleted == 0
    assert result.prune_skipped == "1 row(s) have no readable external_id (first on line 3)"
    assert set(products(conn)) == {"A1", "A2", "A3"}

    empty = tmp_path / "empty.csv"
    empty.write_text("external_id,title\n")
    result = ingest_file(conn, empty, "shop", IngestOptions(prune=True))
    assert (result.deleted, result.prune_skipped) == (0, "the file has no rows")
    assert len(products(conn)) == 3


def test_cli_prune_reports_deleted_and_skipped(settings, tmp_path):
    runner = CliRunner()
    args = ["--database-url", settings.database_url, "ingest"]
    assert (
        runner.invoke(main, [*args, str(write_csv(tmp_path / "a.csv", ROWS)), "--catalog", "shop"]).exit_code
        == 0
    )
    pruned = runner.invoke(
        main, [*args, str(write_csv(tmp_path / "b.csv", ROWS[:1])), "--catalog", "shop", "--prune", "--force"]
    )
    assert pruned.exit_code == 0 and "deleted 2" in pruned.output
    bad = write_csv(tmp_path / "c.csv", [{"external_id": "", "title": "x"}, ROWS[0]])
    skipped = runner.invoke(main, [*args, str(bad), "--catalog", "shop", "--prune"])
    assert skipped.exit_code == 0 and "not pruned: 1 row(s) have no readable external_id" in skipped.output
