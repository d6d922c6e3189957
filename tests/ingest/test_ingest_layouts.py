"""Files laid out as shops really send them: a price list's title block above its header, the products on a
workbook's second sheet, a JSON document instead of JSON lines, no id column at all."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from decimal import Decimal

import pytest
import xlwt
from builders import catalog_products
from click.testing import CliRunner
from openpyxl import Workbook

from prodmatch.cli import main
from prodmatch.errors import IngestError
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.sources import IngestOptions

PRICE_LIST = (
    'Прайс-лист ООО "Ромашка" на 01.12.2026;;;\n'
    ";;;\n"
    "Цены указаны с НДС;;;\n"
    "Артикул;Наименование;Цена;Бренд\n"
    "009-1;Дрель GSB 13 RE;3499;Bosch\n"
    "009-2;Шуруповёрт DF333DWAE;7990;Makita\n"
)


def test_a_price_list_header_below_its_title_block_is_found(conn, tmp_path):
    path = tmp_path / "price.csv"
    path.write_bytes(PRICE_LIST.encode("cp1251"))
    result = ingest_file(conn, path, "ru")
    assert (result.inserted, result.rejected, result.rows) == (2, 0, 2)
    assert result.columns["external_id"] == "Артикул"
    # the lines above the header are not lost silently: the summary says which were skipped
    assert any("line 4" in note and "Прайс-лист" in note for note in result.notes), result.notes
    got = catalog_products(conn, "ru")
    assert got["009-1"]["title"] == "Дрель GSB 13 RE" and got["009-1"]["price"] == Decimal("3499")
    assert got["009-2"]["brand"] == "Makita"


def test_a_title_block_without_delimiters_still_finds_the_header(conn, tmp_path):
    path = tmp_path / "price.csv"
    path.write_text(
        "Price list of Example Ltd, December 2026\n\nsku,name,price\nA-1,Kettle TWK 3A011,24.90\n"
        "A-2,Iron GC1742,19.90\n"
    )
    result = ingest_file(conn, path, "en")
    assert (result.inserted, result.rejected, result.delimiter) == (2, 0, ",")
    assert set(catalog_products(conn, "en")) == {"A-1", "A-2"}


def test_a_file_without_any_title_column_still_fails_naming_its_first_row(conn, tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text("ean,label\n" + "".join(f"{i},x{i}\n" for i in range(30)))
    with pytest.raises(
        IngestError, match=r"numbers.csv: missing required column\(s\) title; the header has: ean, label"
    ):
        ingest_file(conn, path, "shop")


def _book(path, sheets: dict[str, list[list]], active: int = 0):
    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.active = active
    book.save(path)
    return path


def test_the_products_sheet_is_found_when_the_active_one_has_none(conn, tmp_path):
    path = _book(
        tmp_path / "price.xlsx",
        {
            "Инфо": [["Прайс от 01.12.2026"], ["Менеджер: Иванов"]],
            "Товары": [
                ["ООО Ромашка"],
                [None],
                ["Артикул", "Наименование", "Цена"],
                ["009-1", "Дрель GSB 13 RE", 3499],
                ["009-2", "Шуруповёрт DF333DWAE", 7990],
            ],
        },
    )
    result = ingest_file(conn, path, "ru")
    assert (result.inserted, result.rejected) == (2, 0)
    assert any("'Товары'" in note and "'Инфо'" in note for note in result.notes), result.notes
    assert catalog_products(conn, "ru")["009-2"]["price"] == Decimal("7990")
    # a reject names the row of the sheet it is on
    _book(path, {"Инфо": [["x"]], "Товары": [["Артикул", "Наименование"], ["1", "ok"], [None, "no id"]]})
    again = ingest_file(conn, path, "ru2")
    assert again.rejects[0].line == 3


def test_section_rows_of_a_price_list_become_the_category_of_their_products(conn, tmp_path):
    path = _book(
        tmp_path / "1c.xlsx",
        {
            "TDSheet": [
                ["Прайс-лист"],
                ["Артикул", "Номенклатура", "Цена", "Ед."],
                [None, "Электроинструмент", None, None],
                [None, "Дрели", None, None],  # a subgroup right under its group
                ["009-1", "Дрель GSB 13 RE", 3499, "шт"],
                ["Садовая техника", None, None, None],  # a group's name in the first column (merged cells)
                ["010-7", "Триммер ART 23", 5990, "шт"],
                ["010-8", None, None, None],  # an id alone is no section: a product known by its id only
            ]
        },
    )
    result = ingest_file(conn, path, "ru")
    assert (result.inserted, result.rejected) == (3, 0)
    assert any("3 section row(s)" in note and "'Электроинструмент'" in note for note in result.notes), (
        result.notes
    )
    assert _categories(conn, "ru") == {
        "009-1": "Электроинструмент / Дрели",
        "010-7": "Садовая техника",
        "010-8": "Садовая техника",
    }
    # a CSV export of the same list, a section as a line of one field; a category column wins where filled
    csv_path = tmp_path / "1c.csv"
    csv_path.write_text(
        "Артикул;Номенклатура;Цена;Категория\nЭлектроинструмент\n009-1;Дрель GSB 13 RE;3499;\n"
        "009-2;Шуруповёрт DF333;7990;Аккумуляторный инструмент\n"
    )
    again = ingest_file(conn, csv_path, "ru_csv")
    assert (again.inserted, again.rejected) == (2, 0)
    assert _categories(conn, "ru_csv") == {"009-1": "Электроинструмент", "009-2": "Аккумуляторный инструмент"}
    # without an id column a row of one value may be a product with a title only: it stays one
    bare = tmp_path / "bare.csv"
    bare.write_text("title,brand,price\nKettle TWK 3A011,,\nIron GC1742,Philips,19.90\n")
    assert ingest_file(conn, bare, "bare").inserted == 2


def _categories(conn, catalog: str) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT p.external_id, p.category FROM prodmatch.products p"
            " JOIN prodmatch.catalogs c ON c.id = p.catalog_id WHERE c.name = %s",
            (catalog,),
        ).fetchall()
    )


def test_a_sheet_is_chosen_by_name(conn, settings, tmp_path):
    path = _book(
        tmp_path / "two.xlsx",
        {
            "Shop": [["id", "title"], ["S1", "Kettle"]],
            "Archive": [["id", "title"], ["A1", "Old kettle"], ["A2", "Old iron"]],
        },
    )
    assert set(catalog_products(conn, "shop") or {}) == set()
    ingest_file(conn, path, "shop")
    assert set(catalog_products(conn, "shop")) == {"S1"}  # the active sheet, when it has products
    ingest_file(conn, path, "archive", IngestOptions(sheet="Archive"))
    assert set(catalog_products(conn, "archive")) == {"A1", "A2"}
    with pytest.raises(
        IngestError, match=r"two.xlsx: no sheet named 'Stock'; the workbook has: 'Shop', 'Archive'"
    ):
        ingest_file(conn, path, "x", IngestOptions(sheet="Stock"))
    out = CliRunner().invoke(
        main,
        [
            "--database-url",
            settings.database_url,
            "ingest",
            str(path),
            "--catalog",
            "archive2",
            "--sheet",
            "archive",
        ],
    )
    assert out.exit_code == 0, out.output
    assert set(catalog_products(conn, "archive2")) == {"A1", "A2"}  # a sheet's name in any case


@pytest.mark.parametrize("name", ["items.json", "items.json.gz"])
@pytest.mark.parametrize(
    "wrap",
    [lambda items: items, lambda items: {"total": len(items), "products": items}],
    ids=["array", "object"],
)
def test_a_json_document_loads_item_by_item(conn, tmp_path, name, wrap):
    items = [
        {"id": "1", "title": "Дрель Bosch GSB 13 RE", "price": 3499.5, "attributes": {"Мощность": "600 Вт"}},
        {"id": "2", "Наименование": "Шуруповёрт Makita DF333DWAE", "price": "7 990 ₽"},
        ["not", "an", "object"],
        {"id": "4", "title": "bad price", "price": "cheap"},
    ]
    text = json.dumps(wrap(items), ensure_ascii=False, indent=2)  # pretty-printed: one item spans many lines
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    result = ingest_file(conn, path, "shop")
    assert (result.format, result.inserted, result.rejected) == ("json", 2, 2)
    # a reject names the item's place in the document
    assert [(r.line, r.field) for r in result.rejects] == [(3, None), (4, "price")]
    assert "expected a JSON object" in result.rejects[0].reason
    got = catalog_products(conn, "shop")
    assert got["1"]["price"] == Decimal("3499.50") and got["1"]["attributes"] == {"Мощность": "600 Вт"}
    assert got["2"]["title"] == "Шуруповёрт Makita DF333DWAE" and got["2"]["currency"] == "RUB"


def test_a_broken_json_document_loads_nothing(conn, tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('[{"id": "1", "title": "a"}, {"id": "2", "title": "b"')
    with pytest.raises(IngestError, match=r"cut.json: broken JSON .*nothing was loaded"):
        ingest_file(conn, path, "shop")
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 0
    empty = tmp_path / "empty.json"
    empty.write_text('{\n  "count": 0,\n  "note": "no list here"\n}\n')
    with pytest.raises(IngestError, match=r"empty.json: no list of products"):
        ingest_file(conn, empty, "shop")


def test_rows_without_an_id_column_are_named_by_their_row(conn, tmp_path):
    path = tmp_path / "noid.csv"
    path.write_text(
        "Наименование;Цена;Бренд;货号\nДрель GSB 13 RE;3499;Bosch;GSB13RE\nДрель GSB 13 RE;3499;Bosch;GSB13RE\n"
    )
    result = ingest_file(conn, path, "ru")
    assert (result.inserted, result.rejected) == (2, 0)  # two equal rows: both kept, as two rows
    assert any("row-2 for line 2" in note and "--map external_id" in note for note in result.notes), (
        result.notes
    )
    got = catalog_products(conn, "ru")
    assert set(got) == {"row-2", "row-3"}
    assert got["row-2"]["attributes"] == {"Бренд": "Bosch", "货号": "GSB13RE"}
    # the same file again: the same rows, unchanged
    again = ingest_file(conn, path, "ru")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    # ids by position cannot tell a removed product from a moved one: no pruning with them
    pruned = ingest_file(conn, path, "ru", IngestOptions(prune=True))
    assert pruned.deleted == 0 and "position" in pruned.prune_skipped
    # JSON lines without ids: named by their line
    lines = tmp_path / "noid.jsonl"
    lines.write_text('{"name": "Kettle"}\n\n{"name": "Iron", "price": 9}\n')
    assert set(catalog_products(conn, "en") or {}) == set()
    ingest_file(conn, lines, "en")
    assert set(catalog_products(conn, "en")) == {"row-1", "row-3"}


def test_the_cli_prints_what_it_noticed_about_the_layout(tmp_path, settings):
    path = tmp_path / "price.csv"
    path.write_bytes(PRICE_LIST.encode("cp1251"))
    out = CliRunner().invoke(
        main, ["--database-url", settings.database_url, "ingest", str(path), "--catalog", "ru"]
    )
    assert out.exit_code == 0, out.output
    assert "2 rows, inserted 2" in out.output
    assert "line 4" in out.output and "Прайс-лист" in out.output


@pytest.mark.parametrize(
    ("header", "price", "currency"),
    [
        ("Цена, руб.", "3499", "RUB"),
        ("Цена (руб)", "3 499,00", "RUB"),
        ("Price (EUR)", "34.99", "EUR"),
        ("价格(元)", "349", "CNY"),
        ("Price (EUR)", "34.99 USD", "USD"),  # a price that names its currency keeps it
        ("Цена, с НДС", "3499", None),  # a qualifier that names no currency names none
    ],
)
def test_a_price_column_named_with_its_currency(conn, tmp_path, header, price, currency):
    path = tmp_path / "prices.csv"
    path.write_text(f'Код;Наименование;"{header}"\n1001;Дрель GSB 13 RE;"{price}"\n', encoding="utf-8")
    result = ingest_file(conn, path, "shop")
    # 1C's `Код` is the shop's own item code: the id where no column is named as one
    assert result.columns == {"external_id": "Код", "title": "Наименование", "price": header}
    row = catalog_products(conn, "shop")["1001"]
    assert row["price"] is not None and row["currency"] == currency


def test_a_sheet_asked_of_a_csv_file_is_a_clear_error(conn, tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("id,title\n1,Kettle\n")
    with pytest.raises(
        IngestError, match=r"shop.csv: --sheet 'Товары' names a workbook's sheet, and this is csv"
    ):
        ingest_file(conn, path, "shop", IngestOptions(sheet="Товары"))


def test_an_excel_97_2003_price_list_loads_as_its_xlsx_would(conn, tmp_path):
    # 1C and WPS still save .xls: a cover sheet, a title block, sections, a date, a price named with its currency
    book = xlwt.Workbook(encoding="utf-8")
    book.add_sheet("Инфо").write(0, 0, "Прайс-лист")
    sheet = book.add_sheet("Товары")
    rows = [
        ["ООО Ромашка"],
        [],
        ["Код", "Номенклатура", "Цена, руб.", "Поступление", "Хит"],
        [None, "Дрели", None, None, None],
        [1001, "Дрель GSB 13 RE", 3499.5, dt.date(2026, 12, 1), True],
        ["R-2", "Дрель SBE 650", 4290, None, False],
    ]
    dates = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                sheet.write(r, c, value, dates if isinstance(value, dt.date) else xlwt.Style.default_style)
    path = tmp_path / "price.xls"
    book.save(str(path))
    result = ingest_file(conn, path, "ru")
    assert (result.format, result.inserted, result.rejected, result.sections) == ("xls", 2, 0, 1)
    assert any("'Товары'" in note for note in result.notes), result.notes
    got = catalog_products(conn, "ru")
    first = got["1001"]  # a number as id, as a CSV export writes it
    assert (first["price"], first["currency"]) == (Decimal("3499.50"), "RUB")
    assert first["attributes"] == {"Код": "1001", "Поступление": "2026-12-01", "Хит": "true"}
    assert _categories(conn, "ru") == {"1001": "Дрели", "R-2": "Дрели"}


def test_nested_values_as_apis_and_schema_org_write_them(conn, tmp_path):
    items = [
        {
            "@type": "Product",
            "sku": "GSB13RE",
            "name": "Дрель Bosch GSB 13 RE",
            "brand": {"@type": "Brand", "name": "Bosch"},
            "image": ["https://cdn.example.com/gsb13re.jpg", "https://cdn.example.com/side.jpg"],
            "category": ["Инструмент", "Дрели"],
            "offers": {"@type": "Offer", "price": "3499.00", "priceCurrency": "RUB"},
        },
        {"id": "DF333", "title": "Шуруповёрт Makita DF333", "price": [{"amount": 7990, "currency": "KZT"}]},
        {
            "id": "X",
            "title": "no price in its offer",
            "offers": {"@type": "Offer", "availability": "InStock"},
        },
    ]
    path = tmp_path / "products.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    result = ingest_file(conn, path, "shop")
    assert (result.inserted, result.rejected) == (2, 1)
    assert (result.rejects[0].line, result.rejects[0].field) == (3, "price")  # named, not lost
    got = catalog_products(conn, "shop")
    drill = got["GSB13RE"]  # the sku is the id where no key is
    assert (drill["title"], drill["brand"], drill["image"]) == (
        "Дрель Bosch GSB 13 RE",
        "Bosch",
        "https://cdn.example.com/gsb13re.jpg",
    )
    assert (drill["price"], drill["currency"]) == (Decimal("3499.00"), "RUB")
    assert _categories(conn, "shop")["GSB13RE"] == "Инструмент / Дрели"
    assert (got["DF333"]["price"], got["DF333"]["currency"]) == (Decimal("7990"), "KZT")


def test_excels_sep_line_names_the_delimiter_and_is_no_row(conn, tmp_path):
    path = tmp_path / "excel.csv"
    # without the line, commas in the titles and decimal commas would make the delimiter a guess
    path.write_bytes(
        "sep=;\r\nid;title;price\r\n1;Kettle, steel, 1,7 l;19,90\r\n2;Iron, 2400 W;9,90\r\n".encode("cp1252")
    )
    result = ingest_file(conn, path, "shop")
    assert (result.delimiter, result.inserted, result.rejected, result.notes) == (";", 2, 0, [])
    assert catalog_products(conn, "shop")["1"]["title"] == "Kettle, steel, 1,7 l"
