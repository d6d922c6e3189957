"""Excel workbooks: a shop's .xlsx export loads as its CSV would, rejects name the sheet's row."""

from __future__ import annotations

import datetime as dt
import zipfile
from decimal import Decimal

import pytest
from builders import catalog_products
from click.testing import CliRunner
from openpyxl import Workbook

from prodmatch.cli import main
from prodmatch.errors import IngestError
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.sources import IngestOptions


def _workbook(path, rows: list[list], title: str = "Товары"):
    book = Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_a_workbook_loads_as_its_csv_would(conn, tmp_path):
    path = _workbook(
        tmp_path / "export.xlsx",
        [
            [None],  # a title row left empty above the table
            ["Артикул", "Наименование", "Бренд", "Цена", "Вес, кг", "Поступление", "Хит"],
            [1001, "Чайник электрический TWK 3A011", "Бош", 2490.0, 1.25, dt.date(2026, 11, 30), True],
            ["R-2", "Утюг Philips GC1742\nс паром", "Philips", "1 990,50 руб.", None, None, False],
            [None, None, None, None, None, None, None],  # an empty row inside the table
            [None, "Утюг Tefal FV1711", "Tefal", 990, None, None, None],  # no id: rejected, naming its row
        ],
    )
    result = ingest_file(conn, path, "ru", IngestOptions(mapping={"external_id": "Артикул"}))
    assert (result.format, result.encoding, result.delimiter) == ("xlsx", None, None)
    assert (result.inserted, result.rejected) == (2, 1)
    assert result.rejects[0].line == 6 and result.rejects[0].field == "external_id"
    assert result.columns == {"title": "Наименование", "price": "Цена"}
    got = catalog_products(conn, "ru")
    first = got["1001"]  # a number as id: written as a CSV export writes it, not 1001.0
    assert (first["title"], first["price"]) == ("Чайник электрический TWK 3A011", Decimal("2490.00"))
    assert first["brand"] == "Бош"  # from the brand attribute (Бренд), as for a CSV file
    assert first["attributes"] == {
        "Бренд": "Бош",
        "Вес, кг": "1.25",
        "Поступление": "2026-11-30",
        "Хит": "true",
    }
    second = got["R-2"]
    assert second["title"] == "Утюг Philips GC1742\nс паром"
    assert (second["price"], second["currency"]) == (Decimal("1990.50"), "RUB")


def test_a_workbook_is_found_by_its_bytes_and_a_broken_old_xls_is_refused(conn, tmp_path):
    # named .csv by a user, still a workbook (a zip archive): read as one
    path = _workbook(tmp_path / "feed.csv", [["id", "title", "price"], ["A1", "Kettle", 19.99]])
    result = ingest_file(conn, path, "shop")
    assert result.format == "xlsx" and result.inserted == 1
    assert catalog_products(conn, "shop")["A1"]["price"] == Decimal("19.99")
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    with pytest.raises(
        IngestError, match=r"old.xls: not a readable .xls workbook \(.*\); save it again as .xlsx or CSV"
    ):
        ingest_file(conn, old, "shop")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(IngestError, match="not a readable .xlsx workbook"):
        ingest_file(conn, broken, "shop")


def test_a_value_right_of_the_header_is_a_reject(conn, tmp_path):
    path = _workbook(
        tmp_path / "wide.xlsx", [["id", "title"], ["A1", "Kettle"], ["A2", "Iron", "stray note"]]
    )
    result = ingest_file(conn, path, "shop")
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.rejects[0].line == 3 and "right of the header" in result.rejects[0].reason


def test_the_cli_shows_a_workbooks_progress_in_rows_and_its_summary(settings, tmp_path):
    rows = [["id", "название", "цена"]] + [[f"P{i}", f"Товар номер {i}", 100 + i] for i in range(4500)]
    path = _workbook(tmp_path / "big.xlsx", rows)
    result = CliRunner().invoke(
        main, ["--database-url", settings.database_url, "ingest", str(path), "--catalog", "shop"]
    )
    assert result.exit_code == 0, result.output
    assert "4,500 rows, inserted 4,500" in result.stdout
    assert "'название' as title, 'цена' as price" in result.stderr
    assert "/4.50k [" in result.stderr and "row/s" in result.stderr  # the bar counts the sheet's rows


def test_a_sheet_that_declares_xml_entities_is_refused_not_expanded(conn, tmp_path):
    # A "billion laughs" sheet: with defusedxml, openpyxl refuses the entity declarations instead of
    # expanding them (nor would it fetch an external one); ingest says so and loads nothing.
    plain = _workbook(tmp_path / "plain.xlsx", [["id", "title"], ["A1", "Kettle"]])
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                entities = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">' + "".join(
                    f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)
                )
                declared = data.index(b"?>") + 2 if data.startswith(b"<?xml") else 0
                data = data[:declared] + entities.encode() + b"]>" + data[declared:]
                data = data.replace(b"Kettle", b"&i;")
            target.writestr(item, data)
    with pytest.raises(IngestError, match=r"bomb\.xlsx: .*(Entit|entit)"):
        ingest_file(conn, bomb, "shop")
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 0
