"""Property-based fuzzing of ingest (Hypothesis): whatever bytes, encodings, delimiters and JSON shapes a file
holds, ingest either loads it with every row accounted for (loaded or rejected) or raises IngestError for the
whole file. Never a traceback, never a row silently lost. One database per test; the catalogue is emptied
between examples."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prodmatch.errors import IngestError
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.rows import _attributes_json
from prodmatch.ingest.sources import IngestOptions

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
# Text with the characters that broke ingest before: NUL, lone surrogates, quotes, newlines, delimiters.
nasty_text = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, exclude_categories=()),
        st.sampled_from(["\x00", "\ud800", "\udcff", '"', "\n", "\r", ",", ";", "\t", "|", "®", "é", "Ж"]),
    ),
    max_size=30,
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3),
    max_leaves=8,
)
product = st.fixed_dictionaries(
    {"id": st.one_of(nasty_text, st.integers(), st.none())},
    optional={"title": json_value, "price": json_value, "brand": nasty_text, "extra": json_value},
)
ENCODINGS = ["utf-8", "cp1252", "cp1251", "latin-1", "utf-16", "gb18030", "cp932"]


def _reset(conn) -> None:
    conn.rollback()
    conn.execute("DELETE FROM prodmatch.catalogs WHERE name = 'fuzz'")
    conn.commit()


def _ingest(conn, path, options: IngestOptions | None = None):
    """The result, or None when the whole file was refused with an IngestError."""
    try:
        return ingest_file(conn, path, "fuzz", options)
    except IngestError:
        return None
    finally:
        _reset(conn)


def _accounted(result, rows: int) -> bool:
    # a price list's section rows (one value alone) are neither: the category of the rows below them
    return result.loaded + result.rejected == result.rows and result.rows + result.sections == rows


def test_fuzz_random_bytes_never_crash(conn, tmp_path):
    stats = Counter()

    @FUZZ
    @given(
        data=st.binary(max_size=3000),
        header=st.sampled_from([b"id,title\n", b"id;title;price\n", b"", b'{"id": 1}\n']),
        suffix=st.sampled_from([".csv", ".jsonl", ".txt", ".csv.gz"]),
        gz=st.booleans(),
    )
    def run(data: bytes, header: bytes, suffix: str, gz: bool) -> None:
        import gzip

        body = header + data
        path = tmp_path / f"random{suffix}"
        path.write_bytes(gzip.compress(body) if gz else body)
        result = _ingest(conn, path)
        stats["files"] += 1
        stats["rows"] += result.rows if result else 0
        stats["refused"] += result is None
        if result is not None:
            assert result.loaded + result.rejected == result.rows

    run()
    print(f"\nrandom bytes: {dict(stats)}")
    assert stats["files"] >= 100


def test_fuzz_jsonl_every_row_is_loaded_or_rejected(conn, tmp_path):
    stats = Counter()

    @FUZZ
    @given(
        rows=st.lists(product, min_size=1, max_size=12),
        encoding=st.sampled_from(ENCODINGS),
        ascii_only=st.booleans(),
    )
    def run(rows: list[dict], encoding: str, ascii_only: bool) -> None:
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows)
        path = tmp_path / "rows.jsonl"
        path.write_bytes(text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace"))
        result = _ingest(conn, path)
        stats["files"] += 1
        stats["rows"] += len(rows)
        if result is None:
            stats["refused"] += 1
            return
        stats["loaded"] += result.loaded
        stats["rejected"] += result.rejected
        assert _accounted(result, len(rows))

    run()
    print(f"\njsonl: {dict(stats)}")
    assert stats["loaded"] > 0 and stats["rejected"] > 0


def test_fuzz_json_document_every_item_is_loaded_or_rejected(conn, tmp_path):
    stats = Counter()

    @FUZZ
    @given(
        items=st.lists(st.one_of(product, json_value), min_size=1, max_size=12),
        wrapped=st.booleans(),
        indent=st.sampled_from([None, 2]),
        gzipped=st.booleans(),
    )
    def run(items: list, wrapped: bool, indent: int | None, gzipped: bool) -> None:
        document = {"count": len(items), "products": items} if wrapped else items
        data = json.dumps(document, indent=indent).encode("utf-8", errors="surrogatepass")
        path = tmp_path / ("items.json.gz" if gzipped else "items.json")
        path.write_bytes(gzip.compress(data) if gzipped else data)
        result = _ingest(conn, path)
        stats["files"] += 1
        if result is None:
            stats["refused"] += 1
            return
        stats["loaded"] += result.loaded
        stats["rejected"] += result.rejected
        assert result.format == "json"
        assert _accounted(result, len(items))

    run()
    print(f"\njson: {dict(stats)}")
    assert stats["loaded"] > 0 and stats["rejected"] > 0


def test_fuzz_csv_every_row_is_loaded_or_rejected(conn, tmp_path):
    stats = Counter()

    @FUZZ
    @given(
        rows=st.lists(st.tuples(nasty_text, nasty_text, nasty_text), min_size=1, max_size=12),
        delimiter=st.sampled_from([",", ";", "\t", "|"]),
        encoding=st.sampled_from(ENCODINGS),
        given_delimiter=st.booleans(),
    )
    def run(rows: list[tuple], delimiter: str, encoding: str, given_delimiter: bool) -> None:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        writer.writerow(["id", "title", "price"])
        writer.writerows(rows)
        path = tmp_path / "rows.csv"
        path.write_bytes(
            out.getvalue().encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")
        )
        options = IngestOptions(delimiter=delimiter if given_delimiter else None)
        result = _ingest(conn, path, options)
        stats["files"] += 1
        stats["rows"] += len(rows)
        if result is None:
            stats["refused"] += 1
            return
        stats["loaded"] += result.loaded
        stats["rejected"] += result.rejected
        if given_delimiter and encoding != "utf-16":
            # Rows made only of empty fields are blank lines to CSV; every other row is accounted for.
            blank = sum(1 for r in rows if all(v == "" for v in r))
            assert result.loaded + result.rejected == result.rows
            assert result.rows + result.sections >= len(rows) - blank
        else:
            assert result.loaded + result.rejected == result.rows

    run()
    print(f"\ncsv: {dict(stats)}")
    assert stats["loaded"] > 0


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(nasty_text, json_value, max_size=5))
def test_attributes_are_written_as_json_dumps_writes_them(attributes):
    # Ingest writes a row's attributes with the json module's C encoder directly (a tenth of dumps' cost per row);
    # the text it sends to jsonb must be json.dumps' own, character for character.
    assert _attributes_json(attributes) == (
        json.dumps(attributes, ensure_ascii=False) if attributes else "{}"
    )


def _workbook_cell(text):
    """A cell's value as a workbook library writes it: empty, a boolean, a number, a date or `text`."""
    import datetime as dt

    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**15), max_value=10**15),
        st.floats(allow_nan=False, allow_infinity=False),
        st.dates(min_value=dt.date(1900, 3, 1)),
        text,
    )


def test_fuzz_xlsx_every_row_is_loaded_or_rejected(conn, tmp_path):

    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    stats = Counter()
    cell = _workbook_cell(
        nasty_text.map(lambda t: ILLEGAL_CHARACTERS_RE.sub("", t.encode("utf-8", "replace").decode()))
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows=st.lists(st.lists(cell, min_size=0, max_size=5), min_size=1, max_size=10))
    def run(rows: list[list]) -> None:
        book = Workbook()
        book.active.append(["id", "title", "price", "extra"])
        for row in rows:
            book.active.append(row or [None])
        path = tmp_path / "fuzz.xlsx"
        book.save(path)
        result = _ingest(conn, path)
        stats["files"] += 1
        assert result is not None  # a workbook openpyxl wrote is always readable
        written = [r for r in rows if any(v is not None and v != "" for v in r)]
        stats["rows"] += len(written)
        stats["loaded"] += result.loaded
        stats["rejected"] += result.rejected
        assert _accounted(result, len(written))

    run()
    print(f"\nxlsx: {dict(stats)}")
    assert stats["loaded"] > 0 and stats["rejected"] > 0


def test_fuzz_xls_every_row_is_loaded_or_rejected_and_random_bytes_are_refused(conn, tmp_path):
    import datetime as dt

    import xlwt

    stats = Counter()
    cell = _workbook_cell(
        nasty_text.map(lambda t: t.encode("utf-8", "replace").decode().replace("\x00", "")[:200])
    )
    dates = xlwt.easyxf(num_format_str="YYYY-MM-DD")

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        rows=st.lists(st.lists(cell, min_size=0, max_size=5), min_size=1, max_size=10),
        garbage=st.binary(min_size=0, max_size=2000),
    )
    def run(rows: list[list], garbage: bytes) -> None:
        book = xlwt.Workbook(encoding="utf-8")
        sheet = book.add_sheet("Sheet1")
        for c, name in enumerate(["id", "title", "price", "extra"]):
            sheet.write(0, c, name)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.write(
                        r, c, value, dates if isinstance(value, dt.date) else xlwt.Style.default_style
                    )
        path = tmp_path / "fuzz.xls"
        book.save(str(path))
        result = _ingest(conn, path)
        stats["files"] += 1
        assert result is not None  # a workbook xlwt wrote is always readable
        written = [r for r in rows if any(v is not None and v != "" for v in r)]
        stats["loaded"] += result.loaded
        stats["rejected"] += result.rejected
        assert _accounted(result, len(written))
        # an OLE2 header over random bytes: refused as a whole file, never a traceback
        broken = tmp_path / "broken.xls"
        broken.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + garbage)
        assert _ingest(conn, broken) is None

    run()
    print(f"\nxls: {dict(stats)}")
    assert stats["loaded"] > 0 and stats["rejected"] > 0
