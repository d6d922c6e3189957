"""Excel workbooks (.xlsx, .xlsm, and Excel 97-2003 .xls): a worksheet's rows, read as a CSV file's would be.

Shops and marketplaces export their catalogues as workbooks as often as CSV. `open_workbook` opens one once
(openpyxl in read-only mode: constant memory whatever the sheets' size) and `Book.records` streams a sheet's rows
with each cell as text, the way a CSV export would have written it: `4999.0` as `4999`, a date as
`2026-12-07`, an empty cell as "". Cached values are read, never formulas (nothing in a workbook runs), and
with defusedxml installed openpyxl parses the workbook's XML without entity expansion or external references.
Which sheet holds the products is the ingest's choice (`rows._workbook_rows`): the active one first, then the others.
An old `.xls` (an OLE2 compound file, as 1C and WPS still save price lists) is read with xlrd, which holds no
formula engine either: its cells give the values the file stores.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from xml.etree.ElementTree import ParseError

from prodmatch.errors import IngestError

# The first bytes of an Excel 97-2003 workbook (an OLE2 compound file), which openpyxl cannot read (xlrd does)
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
# what a broken or hostile sheet raises while its rows are read (defusedxml's refusals are ValueErrors)
_SHEET_ERRORS = (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, ParseError)


class _Sheets:
    """What both kinds of workbook give: the sheets' names (the active one first), found by name."""

    path: Path
    names: list[str]

    def sheet_named(self, name: str) -> str:
        """The sheet called `name` (in any case), or an IngestError naming the sheets there are."""
        found = [n for n in self.names if n == name] or [
            n for n in self.names if n.casefold() == name.casefold()
        ]
        if not found:
            raise IngestError(
                f"{self.path}: no sheet named {name!r}; the workbook has: {', '.join(map(repr, self.names))}"
            )
        return found[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class Book(_Sheets):
    """An open .xlsx workbook: its sheets' names (the active one first) and their rows."""

    def __init__(self, path: Path) -> None:
        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close(); a workbook named .csv still reads
        try:
            self._workbook = load_workbook(self._file, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
            self._file.close()
            raise IngestError(
                f"{path}: not a readable .xlsx workbook ({_innermost(exc)}); save it again as .xlsx or CSV"
            ) from exc
        active = self._workbook.active or self._workbook.worksheets[0]
        others = [sheet.title for sheet in self._workbook.worksheets if sheet.title != active.title]
        self.names: list[str] = [active.title, *others]

    def records(
        self, name: str, sized: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, list[str]]]:
        """(row number in the sheet, cells as text) of every row of sheet `name`; `sized` is told the sheet's row
        count (as its dimension says) before the first row."""
        sheet = self._workbook[name]
        if sized is not None and sheet.max_row:
            sized(sheet.max_row)
        rows = enumerate(sheet.iter_rows(values_only=True), start=1)
        while True:
            try:
                number, row = next(rows)
            except StopIteration:
                return
            except _SHEET_ERRORS as exc:
                raise IngestError(f"{self.path}: sheet {name!r} cannot be read ({_innermost(exc)})") from exc
            yield number, [cell_text(value) for value in row]

    def close(self) -> None:
        try:
            self._workbook.close()
        finally:
            self._file.close()


class XlsBook(_Sheets):
    """An open Excel 97-2003 workbook (.xls, read whole by xlrd: such a sheet holds at most 65,536 rows)."""

    def __init__(self, path: Path) -> None:
        import xlrd

        self.path, self._xlrd = path, xlrd
        try:
            self._book = xlrd.open_workbook(str(path))
            sheets = self._book.sheets()
        except Exception as exc:  # noqa: BLE001 - xlrd fails on a broken file in many ways; each is this error
            raise IngestError(
                f"{path}: not a readable .xls workbook ({_innermost(exc)}); save it again as .xlsx or CSV"
            ) from exc
        if not sheets:
            raise IngestError(f"{path}: the workbook has no sheet")
        active = next((sheet for sheet in sheets if sheet.sheet_selected), sheets[0])
        self.names = [active.name, *(sheet.name for sheet in sheets if sheet.name != active.name)]

    def records(
        self, name: str, sized: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, list[str]]]:
        """(row number in the sheet, cells as text) of every row of sheet `name`."""
        sheet = self._book.sheet_by_name(name)
        if sized is not None:
            sized(sheet.nrows)
        for index in range(sheet.nrows):
            yield index + 1, [self._text(cell) for cell in sheet.row(index)]

    def _text(self, cell) -> str:
        xlrd = self._xlrd
        if cell.ctype == xlrd.XL_CELL_DATE:
            try:
                return cell_text(xlrd.xldate_as_datetime(cell.value, self._book.datemode))
            except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                return cell_text(cell.value)
        if cell.ctype == xlrd.XL_CELL_BOOLEAN:
            return cell_text(bool(cell.value))
        if cell.ctype == xlrd.XL_CELL_ERROR:
            return xlrd.error_text_from_code.get(cell.value, "#ERROR")
        return cell_text(cell.value if cell.ctype != xlrd.XL_CELL_BLANK else None)

    def close(self) -> None:
        self._book.release_resources()


def open_workbook(path: Path, fmt: str = "xlsx") -> _Sheets:
    """The workbook at `path`: an .xlsx (`Book`) or, for format "xls", an Excel 97-2003 one (`XlsBook`)."""
    return XlsBook(path) if fmt == "xls" else Book(path)


def _innermost(exc: BaseException) -> str:
    """What went wrong first, under the wrappers openpyxl raises ("could not read worksheets")."""
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def cell_text(value: object) -> str:
    """A cell's value as a CSV export writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, Decimal | int):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") if value.time() != dt.time() else value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)
