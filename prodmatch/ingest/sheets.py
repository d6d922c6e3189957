"""Excel workbooks (.xlsx, .xlsm): the first worksheet's rows, read as a CSV file's records would be.

Shops and marketplaces export their catalogues as workbooks as often as CSV. `sheet_records` streams the active
worksheet (openpyxl in read-only mode: constant memory whatever the sheet's size) and gives each row's cells as
text, the way a CSV export would have written them: `4999.0` as `4999`, a date as `2026-12-07`, an empty cell as
"". Cached values are read, never formulas (nothing in a workbook runs), and with defusedxml installed openpyxl
parses the workbook's XML without entity expansion or external references.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from xml.etree.ElementTree import ParseError

from prodmatch.errors import IngestError

# The first bytes of an Excel 97-2003 workbook (an OLE2 compound file), which openpyxl cannot read
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"


def sheet_records(path: Path, sized: Callable[[int], None] | None = None) -> Iterator[tuple[int, list[str]]]:
    """(row number in the sheet, cells as text) of every row of the workbook's active worksheet; `sized` is
    told the sheet's row count (as its dimension says) before the first row."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    with open(path, "rb") as file:  # a file, not a name: a workbook named .csv by its user is still read
        try:
            workbook = load_workbook(file, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
            raise IngestError(
                f"{path}: not a readable .xlsx workbook ({_innermost(exc)}); save it again as .xlsx or CSV"
            ) from exc
        try:
            sheet = workbook.active or workbook.worksheets[0]
            if sized is not None and sheet.max_row:
                sized(sheet.max_row)
            rows = enumerate(sheet.iter_rows(values_only=True), start=1)
            while True:
                try:
                    number, row = next(rows)
                except StopIteration:
                    return
                except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, ParseError) as exc:
                    # broken XML, and what defusedxml refuses (entities, external references: ValueErrors)
                    raise IngestError(f"{path}: the sheet cannot be read ({_innermost(exc)})") from exc
                yield number, [cell_text(value) for value in row]
        finally:
            workbook.close()


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
