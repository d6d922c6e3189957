"""Turn each record of a catalogue file into a validated product row, or a reject naming its line and field.

Every value is checked before it reaches PostgreSQL, so one bad row never sinks the file: NUL characters, lone
surrogates, NaN/Infinity, numbers Python will not parse, JSON nested deeper than `MAX_DEPTH`, ids over
`MAX_ID_BYTES` (the unique index's limit is ~2.7 KB), fields over `MAX_FIELD_CHARS`, lines over the line limit,
and CSV rows with fewer or more fields than the header all become rejects. A short CSV row on a last line
without a newline means the file was cut off: that is an IngestError, raised before anything is committed.
Files come as shops send them: a table's header may sit below a price list's title block, the products on a
workbook's other sheet, the products as a JSON document (an array, or a list inside an object), and a table
without an id column names its rows by their position (`row-5`).
Neighbours: `sources` opens the file and yields bounded lines; `load` copies these rows into the database.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

from prodmatch.currencies import iso_currency
from prodmatch.embed.images import LocalReferences
from prodmatch.errors import ImageError, IngestError
from prodmatch.ingest.columns import field_of, is_own_article, qualifier
from prodmatch.ingest.sheets import open_workbook
from prodmatch.ingest.sources import (
    _BAD_BYTES,
    OVERLONG,
    WORKBOOKS,
    EncodingChanged,
    IngestOptions,
    _open_binary,
    _Source,
)
from prodmatch.roles import brand_from_attributes, normalize_roles

FIELDS = ("external_id", "title", "description", "brand", "category", "price", "currency", "image")
TEXT_FIELDS = ("title", "description", "brand", "category", "currency", "image")
REQUIRED_FIELDS = ("title",)  # a table without an id column names its rows by their position
_EXTERNAL_ID, _CATEGORY = FIELDS.index("external_id"), FIELDS.index("category")
HEADER_SEARCH_ROWS = 30  # the header may sit below a title block of up to this many non-blank rows
ALIASES = {"id": "external_id"}
MAX_RAW = 2000
MAX_ID_BYTES = 1024
MAX_FIELD_CHARS = 100_000
MAX_DEPTH = 100
ROW_LIMIT_LINES = 8  # a CSV record may span this many line limits (quoted newlines), then the file is suspect
_SURROGATES = re.compile("[\ud800-\udfff]")


def parse_price(text: str, decimal_comma: bool | None = None) -> tuple[Decimal | None, str | None]:
    """A price such as "4 999,00 ₽", "$1,299.99" or "12.5" as (amount, ISO currency or None).

    Raises ValueError when the text is not a price.
    """
    text = text.strip()
    if not text:
        return None, None
    currency = iso_currency(text)
    digits = _PRICE_NOISE.sub("", text)
    digits = _NO_CENTS.sub("", digits).rstrip(".,")  # "499 руб." -> "499"; "49,-" -> "49"
    if not _PRICE_SHAPE.fullmatch(digits):
        raise ValueError(f"not a price: {text!r}")
    amount = Decimal(_normalise_separators(digits, decimal_comma))
    if amount < 0:
        raise ValueError(f"negative price: {text!r}")
    return amount, currency


_ENCODE_JSON = (  # json.dumps(..., ensure_ascii=False) without its per-call set-up; no circular check: the
    # attributes come from parsed text, which cannot hold a cycle
    json.encoder.c_make_encoder(
        None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
    )
    if json.encoder.c_make_encoder is not None
    else json.JSONEncoder(ensure_ascii=False, check_circular=False).iterencode
)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_WINDOWS_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")
_PRICE_NOISE = re.compile(r"[\s\u00a0\u2009\u202f'’`]|[^\d.,\-]")
_PLAIN_NUMBER = re.compile(r"\d{1,15}(?:\.\d{1,6})?")
_PRICE_SHAPE = re.compile(r"-?(\d[\d.,]*)")
_NO_CENTS = re.compile(r"(?<=\d)[.,]?-+$")  # "49,-", "1299.-": a whole amount (German and Swiss shops)


def _normalise_separators(digits: str, decimal_comma: bool | None) -> str:
    """Drop thousands separators and make the decimal separator a dot, or raise ValueError."""
    has_comma, has_dot = "," in digits, "." in digits
    if has_comma and has_dot:
        decimal = "," if digits.rfind(",") > digits.rfind(".") else "."
    elif has_comma or has_dot:
        sep = "," if has_comma else "."
        decimal = sep if _is_decimal_separator(digits, sep, decimal_comma) else None
    else:
        return digits
    whole, _, fraction = digits.rpartition(decimal) if decimal else (digits, "", "")
    thousands = "." if decimal == "," else ","
    if decimal is None:
        thousands = "," if has_comma else "."
    if (
        (thousands in whole and not _THOUSANDS[thousands].fullmatch(whole))
        or not fraction.isdigit()
        and decimal
    ):
        raise ValueError(f"not a price: {digits!r}")
    whole = whole.replace(thousands, "")
    return f"{whole}.{fraction}" if decimal else whole


_THOUSANDS = {  # "1,234,567", "1.234.567", and India's lakhs and crores: "12,34,567"
    ",": re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d{1,2}(?:,\d{2})+,\d{3})"),
    ".": re.compile(r"-?\d{1,3}(?:\.\d{3})+"),
}


def _is_decimal_separator(digits: str, sep: str, decimal_comma: bool | None) -> bool:
    """With only one kind of separator: is it the decimal point (or thousands)?"""
    if digits.count(sep) > 1:
        return False  # 1,234,567 or 1.234.567
    if decimal_comma is not None:
        return decimal_comma if sep == "," else not decimal_comma
    if sep == ",":
        return len(digits) - digits.rfind(",") - 1 != 3  # 4,99 -> decimal; 12,500 -> thousands
    return True  # a lone dot is a decimal point


class StagedRow(NamedTuple):
    """One record of a catalogue file as `ingest.load` copies it into its staging table (same column order).

    A good row has the product's fields and no reject_*; a rejected one has its line, the external id when it
    could be read, which field was wrong (None for the whole record), why, and the raw record.
    """

    line: int
    external_id: str | None
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    category: str | None = None
    price: Decimal | str | None = None  # a plain number stays text: PostgreSQL parses it
    currency: str | None = None
    image: str | None = None
    attributes: str | None = None  # a JSON object
    reject_field: str | None = None
    reject_reason: str | None = None
    raw: str | None = None


# The staging table's columns, in StagedRow's order.
STAGING_COLUMNS = ", ".join(StagedRow._fields)
_STAGING_COLUMNS = STAGING_COLUMNS


def read_rows(source: _Source, options: IngestOptions, base_dir: str) -> Iterator[StagedRow]:
    """Every non-blank record of an opened catalogue as a StagedRow, good or rejected, in file order.

    Relative image paths are resolved against `base_dir`.
    """
    builder = _RowBuilder(
        base_dir,
        options.decimal_comma,
        all_text=source.format in ("csv", *WORKBOOKS),
        attribute_roles=normalize_roles(options.attribute_roles),
    )
    if options.sheet and source.format not in WORKBOOKS:
        raise IngestError(
            f"{source.path}: --sheet {options.sheet!r} names a workbook's sheet, and this is {source.format}"
        )
    read = {
        "csv": _csv_rows,
        "jsonl": _jsonl_rows,
        "json": _json_rows,
        "xlsx": _workbook_rows,
        "xls": _workbook_rows,
    }[source.format]
    return read(source, options, builder)


class _RowError(Exception):
    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass
class _RowBuilder:
    """Turns a mapping of canonical fields + attributes into a staging row or a _RowError."""

    base_dir: str
    decimal_comma: bool | None
    all_text: bool = False  # every value is a str (CSV): skip per-type checks
    attribute_roles: dict[str, str] = field(
        default_factory=dict
    )  # the catalogue's, normalised (prodmatch.roles)

    def __post_init__(self) -> None:
        self._local_image = LocalReferences([self.base_dir])

    def build(
        self, line: int, values: list, attributes: dict, currency_named: str | None = None
    ) -> StagedRow:
        """`values` are in FIELDS order; `attributes` are the row's other columns; `currency_named` is the
        currency of a price that names none, as its column's name says (`Цена, руб.`)."""
        if self.all_text:
            texts = [v.strip() for v in values]
        else:
            texts = [None if n == "price" else _text(v, n) for v, n in zip(values, FIELDS, strict=True)]
        if not _plain_texts(texts):  # the usual row passes on one look at all its fields; else name the field
            for text, name in zip(texts, FIELDS, strict=True):
                if text:
                    _check_text(text, name)
        external_id, title, description, brand, category, _, currency, image = texts
        if not external_id:
            raise _RowError("external_id", "missing external_id")
        if len(external_id.encode("utf-8")) > MAX_ID_BYTES:
            raise _RowError("external_id", f"external_id is longer than {MAX_ID_BYTES} bytes")
        _check_json(attributes, "attributes")
        if (
            not brand and attributes
        ):  # no brand column, or empty: an attribute whose role is brand may name it
            brand = brand_from_attributes(attributes, self.attribute_roles)
        price, price_currency = self._price(values[5])
        if image and (not _URL.match(image) or _WINDOWS_DRIVE.match(image)):
            try:  # a local path must stay inside the images root: no absolute paths elsewhere, '..', '~', links out
                image = self._local_image(image)
            except ImageError as exc:
                raise _RowError("image", str(exc)) from None
        return StagedRow(
            line,
            external_id,
            title or None,
            description or None,
            brand or None,
            category or None,
            price,
            currency or price_currency or (currency_named if price is not None else None),
            image or None,
            _attributes_json(attributes),
        )

    def _price(self, value: object) -> tuple[Decimal | str | None, str | None]:
        if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value):
            return value, None  # the common case; Postgres parses it
        if value is None or isinstance(value, bool):
            if isinstance(value, bool):
                raise _RowError("price", f"unparseable price {value!r}")
            return None, None
        if isinstance(value, int | float):
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                raise _RowError("price", f"unparseable price {value!r}") from None
            if not amount.is_finite() or amount < 0:
                raise _RowError("price", f"unparseable price {value!r}")
            return amount, None
        if not isinstance(value, str):
            raise _RowError("price", f"unparseable price {value!r}")
        try:
            return parse_price(value, self.decimal_comma)
        except (ValueError, InvalidOperation):
            raise _RowError("price", f"unparseable price {value.strip()[:80]!r}") from None


def _attributes_json(attributes: dict) -> str:
    """`json.dumps(attributes, ensure_ascii=False)`: the same string, made by the json module's C encoder without
    `dumps`' per-call set-up (three times the encoding itself for a row's few attributes), which ingest pays on every row."""
    return "".join(_ENCODE_JSON(attributes, 0)) if attributes else "{}"


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, float) and not math.isfinite(value):
        raise _RowError(name, f"{name} is {value!r}, not a finite number")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _RowError(name, f"{name} must be text, got {type(value).__name__}")


def _check_text(text: str, name: str) -> None:
    """Reject text PostgreSQL cannot store (NUL, lone surrogates) or that is unreasonably long."""
    if "\x00" in text:
        raise _RowError(name, f"{name} contains a NUL character")
    if not text.isascii() and _SURROGATES.search(text):  # isascii: a flag of the string, no scan
        raise _RowError(name, f"{name} contains a lone surrogate (invalid Unicode)")
    if len(text) > MAX_FIELD_CHARS:
        raise _RowError(name, f"{name} is longer than {MAX_FIELD_CHARS:,} characters")


def _plain_texts(texts: list[str | None]) -> bool:
    """Whether `_check_text` would pass every one of `texts`, checked on all of them at once."""
    present = [text for text in texts if text]
    if any(len(text) > MAX_FIELD_CHARS for text in present):
        return False
    joined = "".join(present)
    return "\x00" not in joined and (joined.isascii() or not _SURROGATES.search(joined))


def _check_json(value: object, name: str, depth: int = 0) -> None:
    """Every string, key and number in a JSON value must fit jsonb; nesting at most MAX_DEPTH deep."""
    if depth == 0 and isinstance(value, dict) and _plain_text_mapping(value):
        return  # a CSV row's other columns: text keys and values, none with a NUL or a lone surrogate
    if depth > MAX_DEPTH:
        raise _RowError(name, f"{name} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value or _SURROGATES.search(value):
            _check_text(value, name)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _RowError(name, f"{name} holds {value!r}; JSON numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, name, depth + 1)
            _check_json(item, key if depth == 0 and isinstance(key, str) else name, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, name, depth + 1)


def _plain_text_mapping(value: dict) -> bool:
    """Whether every key and value is text jsonb can store, checked on all of them at once (the walk of
    `_check_json` then has nothing to find; it still runs, to name the field, when this says no)."""
    parts = [*value.keys(), *value.values()]
    if not all(type(part) is str for part in parts):
        return False
    joined = "".join(parts)
    return "\x00" not in joined and (joined.isascii() or not _SURROGATES.search(joined))


def _loads(text: str, name: str | None) -> object:
    """json.loads, with every way it can fail turned into a _RowError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        what = f"{name} is not valid JSON" if name else "broken JSON"
        raise _RowError(name, f"{what}: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise _RowError(name, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer over 4,300 digits
        raise _RowError(name, f"JSON value Python cannot read: {str(exc)[:120]}") from None


def _clean(text: str) -> str:
    """Text that is safe to store whatever it holds: undecodable bytes and NULs become U+FFFD."""
    return text.encode("utf-8", "replace").decode().replace("\x00", "\ufffd")


def _reject_row(line: int, external_id: object, error: _RowError, raw: str) -> StagedRow:
    ext = external_id.strip() if isinstance(external_id, str) else None
    if ext and (
        "\x00" in ext or _SURROGATES.search(ext) or len(ext.encode("utf-8", "replace")) > MAX_ID_BYTES
    ):
        ext = None  # an id we cannot store is an unreadable id (prune then deletes nothing)
    return StagedRow(
        line,
        ext or None,
        reject_field=error.field,
        reject_reason=_clean(error.reason),
        raw=_clean(raw[:MAX_RAW]),
    )


def _resolve_columns(
    header: list[str], mapping: dict[str, str], path: Path, aliased: dict[str, str]
) -> dict[str, int]:
    """Canonical field -> column index, from --map first, then names, then names that mean a field (each of
    those put in `aliased` as field -> column)."""
    normalised = [h.strip().lstrip("\ufeff").lower() for h in header]
    columns: dict[str, int] = {}
    for field_name, column in mapping.items():
        wanted = column.strip().lower()
        if wanted not in normalised:
            raise _NoHeader(
                f"{path}: --map {field_name}={column}: no column named {column!r}; "
                f"the header has: {', '.join(header)}"
            )
        columns[field_name] = normalised.index(wanted)
    for index, name in enumerate(normalised):
        canonical = ALIASES.get(name, name)
        if canonical in FIELDS and canonical not in columns and index not in columns.values():
            columns[canonical] = index
    for index, name in enumerate(header):  # then the names that mean a field (`Наименование`, `商品名称`)
        canonical = field_of(name.lstrip("\ufeff"))
        if canonical is not None and canonical not in columns and index not in columns.values():
            columns[canonical] = index
            aliased[canonical] = name.strip().lstrip("\ufeff")
    if "external_id" not in columns:  # no id column: a shop's own article number identifies its rows
        article = next(
            (i for i, h in enumerate(header) if i not in columns.values() and is_own_article(h)), None
        )
        if article is not None:
            columns["external_id"] = article
            aliased["external_id"] = header[article].strip().lstrip("\ufeff")
    missing = [f for f in REQUIRED_FIELDS if f not in columns]
    if missing:
        raise _NoHeader(
            f"{path}: missing required column(s) {', '.join(missing)}; the header has: "
            f"{', '.join(header)}. Name the columns with --map, e.g. --map {missing[0]}=COLUMN"
        )
    return columns


def _csv_rows(source: _Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[StagedRow]:
    # The field limit is process-wide in Python's csv module; every ingest sets its own.
    csv.field_size_limit(max(options.line_limit, 1024))
    source.record_limit = ROW_LIMIT_LINES * options.line_limit  # memory per record stays bounded
    reader = csv.reader(source.lines(), delimiter=source.delimiter)

    def candidates() -> Iterator[tuple[int, list[str]]]:  # the records that may be the header
        while True:
            start = reader.line_num + 1
            header = _next_record(reader, source)
            if header is None:
                return
            if start == 1 and source.sep_line:
                continue  # Excel's "sep=;": the delimiter's name, not a row
            if isinstance(header, _RowError):
                raise IngestError(f"{source.path}: cannot read the header row: {header.reason}")
            if _BAD_BYTES.search("".join(header)):
                if not source.settled:
                    raise EncodingChanged
                raise IngestError(
                    f"{source.path}: the header is not valid {source.encoding}; pass --encoding (e.g. cp1251)"
                )
            if any("\x00" in h or OVERLONG in h for h in header):
                raise IngestError(
                    f"{source.path}: the header holds a NUL character or is too long; is this a CSV file?"
                )
            yield start, header

    header, layout = _header_and_layout(candidates(), options, source, "the file is empty (no header row)")
    width = layout.width
    sections = _Sections(layout, source, "line")
    line = reader.line_num + 1
    while True:
        source.record_chars = 0
        record = _next_record(reader, source)
        if record is None:
            sections.tell()
            return
        start, line = line, reader.line_num + 1
        if isinstance(record, _RowError):
            yield _reject_row(start, None, record, "")
            continue
        if not record or record == [""] or sections.take(start, record):
            continue
        raw = source.delimiter.join(record)
        external_id = layout.id_of(record)
        try:
            if OVERLONG in raw:
                raise _RowError(None, f"a line longer than {options.line_limit:,} characters (line_limit)")
            if not raw.isascii() and _BAD_BYTES.search(raw):
                if not source.settled:
                    raise EncodingChanged
                raise _RowError(_field_with(record, header, _BAD_BYTES.search), _undecodable(source))
            if len(record) != width:
                if len(record) > width:
                    raise _RowError(None, f"{len(record)} fields but the header has {width}")
                if not source.last_line_complete:
                    raise IngestError(
                        f"{source.path}:{start}: the last line has {len(record)} of {width} fields and no "
                        "final newline: the file looks cut off. Nothing was loaded; fetch the whole file."
                    )
                raise _RowError(
                    None, f"{len(record)} fields but the header has {width} (a cut or broken line?)"
                )
            if "\x00" in raw:
                raise _RowError(_field_with(record, header, lambda v: "\x00" in v), "a NUL character")
            yield layout.build(builder, start, record, sections.current)
        except _RowError as error:
            yield _reject_row(start, external_id, error, raw)


@dataclass(frozen=True)
class _Layout:
    """Where a table's header puts each field, and which columns are attributes."""

    extra: list[tuple[int, str]]  # (column, attribute key) of the columns that are no field
    attributes_column: int | None  # a column named `attributes` holding a JSON object
    width: int
    indexes: list[int]  # per FIELDS, its column (`width` for none: a record is padded with one "")
    id_index: int | None  # None: no id column, a row is named by its position (`row-5`)
    currency_named: str | None = None  # the currency the price column's name gives (`Цена, руб.`)

    @classmethod
    def of(cls, header: list[str], options: IngestOptions, source: _Source) -> _Layout:
        """The layout of `header`; _NoHeader where it names no title column (it may be a title block's row)."""
        columns = _resolve_columns(header, options.mapping, source.path, source.aliased)
        mapped = set(columns.values())
        if "external_id" in source.aliased and is_own_article(source.aliased["external_id"]):
            mapped.discard(columns["external_id"])  # the article is the id and stays an attribute (a code)
        extra = [(i, h.strip()) for i, h in enumerate(header) if i not in mapped and h.strip()]
        width = len(header)
        return cls(
            extra,
            next((i for i, h in extra if h.lower() == "attributes"), None),
            width,
            [columns.get(name, width) for name in FIELDS],
            columns.get("external_id"),
            iso_currency(qualifier(header[columns["price"]])) if "price" in columns else None,
        )

    def id_of(self, record: list[str]) -> str | None:
        """The id a record's cells give, for its reject (None without an id column or cell)."""
        return record[self.id_index] if self.id_index is not None and self.id_index < len(record) else None

    def build(
        self, builder: _RowBuilder, line: int, record: list[str], section: str | None = None
    ) -> StagedRow:
        """The row of a record of `width` cells (raises _RowError for a bad value); `section` is its category
        where it has none (`_Sections`)."""
        record = [*record, ""]
        values = [record[i] for i in self.indexes]
        if section and not values[_CATEGORY].strip():
            values[_CATEGORY] = section
        if self.id_index is None:
            values[_EXTERNAL_ID] = row_id(line)
        attributes = {h: record[i] for i, h in self.extra if record[i] != ""}
        if self.attributes_column is not None and "attributes" in attributes:
            attributes.update(_json_object(attributes.pop("attributes")))
        return builder.build(line, values, attributes, self.currency_named)


def _workbook_rows(source: _Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[StagedRow]:
    """The rows of the workbook's sheet of products: --sheet's, else the active sheet, else the first other sheet
    whose header names a title column (`_header_and_layout`); a reject names the sheet's row number."""
    with open_workbook(source.path, source.format) as book:
        names = [book.sheet_named(options.sheet)] if options.sheet else book.names
        refused: _NoHeader | None = None
        for name in names:
            records = book.records(name, sized=lambda rows: setattr(source, "size", rows))
            try:
                header, layout = _header_and_layout(
                    _sheet_candidates(records, options, source),
                    options,
                    source,
                    f"sheet {name!r} is empty",
                    "row",
                )
            except _NoHeader as exc:
                refused = refused or exc
                continue
            if name != names[0]:
                source.notes.append(
                    f"read sheet {name!r}: the active sheet {names[0]!r} has no column of titles"
                )
            break
        else:
            others = (
                f" (nor has any other sheet: {', '.join(map(repr, names[1:]))})" if len(names) > 1 else ""
            )
            raise IngestError(f"{refused}{others}") from None
        yield from _sheet_rows(records, header, layout, options, source, builder)


def _sheet_candidates(records, options: IngestOptions, source: _Source) -> Iterator[tuple[int, list[str]]]:
    for line, header in records:
        while header and not header[-1].strip():
            header.pop()  # a sheet's rows run as wide as its widest one
        if any("\x00" in h or len(h) > options.line_limit for h in header):
            raise IngestError(f"{source.path}: the header row holds a NUL character or is too long")
        yield line, header


def _sheet_rows(records, header, layout: _Layout, options, source: _Source, builder) -> Iterator[StagedRow]:
    sections = _Sections(layout, source, "row")
    for line, record in records:
        if not any(record) or sections.take(line, record):
            continue
        source.rows_read = line
        raw = "\t".join(record)
        external_id = layout.id_of(record)
        try:
            if len(record) > layout.width and any(record[layout.width :]):
                raise _RowError(None, f"a value right of the header's {layout.width} columns")
            record = (record + [""] * layout.width)[: layout.width]
            if len(raw) > options.line_limit:
                raise _RowError(None, f"a row longer than {options.line_limit:,} characters (line_limit)")
            if "\x00" in raw:
                raise _RowError(_field_with(record, header, lambda v: "\x00" in v), "a NUL character")
            yield layout.build(builder, line, record, sections.current)
        except _RowError as error:
            yield _reject_row(line, external_id, error, raw)
    sections.tell()


class _Sections:
    """A price list's section rows: a group's name alone on its row ("Электроинструмент") above the products
    of that group, as 1C and many dealers' exports write them. Such a row is not a product: it becomes the
    category of the rows below it that have none (consecutive ones nest: "Инструмент / Дрели"). Only in a table
    with an id column and three or more columns, where a row of one value has no id or no title; a value
    outside the title column must hold no digit (a lone "009-1" is still a product). `tell` notes them."""

    def __init__(self, layout: _Layout, source: _Source, unit: str) -> None:
        self.on = layout.id_index is not None and layout.width >= 3
        self.title = layout.indexes[FIELDS.index("title")]
        self.source, self.unit = source, unit
        self.current: str | None = None
        self.last_line: int | None = None
        self.seen: list[tuple[int, str]] = []

    def take(self, line: int, record: list[str]) -> bool:
        """Whether `record` is a section row (then it is the current section)."""
        if not self.on:
            return False
        filled = [(index, cell.strip()) for index, cell in enumerate(record) if cell.strip()]
        if len(filled) != 1:
            return False
        index, name = filled[0]
        if not any(ch.isalpha() for ch in name) or (index != self.title and any(ch.isdigit() for ch in name)):
            return False
        name = name[:200]
        nested = self.current is not None and self.last_line is not None and self.last_line == line - 1
        self.current = f"{self.current} / {name}" if nested else name
        self.last_line = line
        self.seen.append((line, name))
        self.source.sections += 1
        return True

    def tell(self) -> None:
        if self.seen:
            named = ", ".join(repr(name) for _, name in self.seen[:3]) + (
                ", ..." if len(self.seen) > 3 else ""
            )
            self.source.notes.append(
                f"{len(self.seen)} section {self.unit}(s) with a single value ({named}; first on {self.unit} "
                f"{self.seen[0][0]}) were read as the category of the rows below them, not as products"
            )


class _NoHeader(IngestError):
    """A row that names no title column: not the header (or, searched to the end, a table without titles)."""


def _header_and_layout(
    candidates: Iterator[tuple[int, list[str]]],
    options: IngestOptions,
    source: _Source,
    empty: str,
    unit: str = "line",
) -> tuple[list[str], _Layout]:
    """The header and its layout: the first of the first HEADER_SEARCH_ROWS non-blank rows that names a title
    column. A price list puts its title, date and terms above the table; the rows above the header are
    told in `source.notes`, not read as products. Where no row names a title, the first row's _NoHeader."""
    refused: _NoHeader | None = None
    above: list[list[str]] = []
    for line, record in candidates:
        if not any(cell.strip() for cell in record):
            continue
        try:
            layout = _Layout.of(record, options, source)
        except _NoHeader as exc:
            source.aliased.clear()
            refused = refused or exc
            above.append(record)
            if len(above) >= HEADER_SEARCH_ROWS:
                break
            continue
        if above:
            first = " ".join(cell.strip() for cell in above[0] if cell.strip())[:80]
            were = f"{len(above)} {unit}s above it were" if len(above) > 1 else f"the {unit} above it was"
            source.notes.append(
                f"the header is on {unit} {line}; {were} not read as products ({first!r}"
                + (", ...)" if len(above) > 1 else ")")
            )
        if layout.id_index is None:
            source.row_ids = True
            source.notes.append(
                f"no id column: each row is named by its {unit} (row-{line + 1} for {unit} {line + 1}), which a "
                "later file keeps only if no row moves; name one with --map external_id=COLUMN"
            )
        return record, layout
    raise refused or _NoHeader(f"{source.path}: {empty}")


def row_id(line: int) -> str:
    """The external id of a row in a file without an id column: its line (a sheet's row, a document's item)."""
    return f"row-{line}"


def _next_record(reader, source: _Source) -> list[str] | _RowError | None:
    """The next CSV record, a _RowError for a record the csv module refused, or None at the end."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        return _RowError(None, f"broken CSV: {exc}")


def _field_with(record: list[str], header: list[str], test) -> str | None:
    for index, value in enumerate(record):
        if test(value):
            return header[index].strip() if index < len(header) else None
    return None


def _undecodable(source: _Source) -> str:
    return (
        f"undecodable bytes for encoding {source.encoding}; no single encoding fits the whole file. "
        "Pass --encoding with the file's real encoding (e.g. --encoding cp1252)"
    )


def _json_object(text: str) -> dict:
    value = _loads(text, "attributes")
    if not isinstance(value, dict):
        raise _RowError("attributes", "attributes must be a JSON object")
    return value


def _jsonl_rows(source: _Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[StagedRow]:
    read = _ObjectReader(options, source, builder)
    for line, text in enumerate(source.lines(), start=1):
        if not text.strip():
            continue
        try:
            if text.startswith(OVERLONG):
                raise _RowError(None, f"a line longer than {options.line_limit:,} characters (line_limit)")
            if _BAD_BYTES.search(text):
                if not source.settled:
                    raise EncodingChanged
                raise _RowError(None, _undecodable(source))
            obj = _loads(text, None)
        except _RowError as error:
            yield _reject_row(line, None, error, text.rstrip("\r\n"))
            continue
        yield read(line, obj, text.rstrip("\r\n"))


def _json_rows(source: _Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[StagedRow]:
    """The items of a JSON document: a top-level array, or the first array of objects inside an object
    (`{"products": [...]}`, as APIs export), streamed (ijson: memory stays flat whatever the file's size). A
    reject's line is the item's number in the array."""
    import ijson

    prefix = _items_prefix(source)
    read = _ObjectReader(options, source, builder)
    binary = source.binary
    if binary.peek(3)[:3] == b"\xef\xbb\xbf":
        binary.read(3)
    items = ijson.items(binary, prefix, use_float=True)
    number = 0
    while True:
        try:
            obj = next(items)
        except StopIteration:
            return
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise IngestError(
                f"{source.path}: broken JSON after item {number:,} ({_first_line(exc)}); nothing was loaded"
            ) from None
        number += 1
        try:
            raw = json.dumps(obj, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            raw = repr(obj)
        yield read(number, obj, raw)


def _items_prefix(source: _Source) -> str:
    """ijson's prefix of the document's products: `item` for a top-level array, else the first array reached
    through object keys alone whose first element is an object (else the first such array)."""
    import ijson

    first_array, opened = None, None
    with _open_binary(source.path) as binary:
        if binary.peek(3)[:3] == b"\xef\xbb\xbf":
            binary.read(3)
        try:
            for prefix, event, _ in ijson.parse(binary):
                if opened is not None:
                    if event == "start_map":
                        return f"{opened}.item"
                    opened = None
                if event != "start_array" or "item" in prefix.split("."):
                    continue
                if prefix == "":
                    return "item"
                first_array, opened = first_array or prefix, prefix
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise IngestError(
                f"{source.path}: broken JSON ({_first_line(exc)}); nothing was loaded"
            ) from None
    if first_array is None:
        raise IngestError(f"{source.path}: no list of products in this JSON document (an array of objects)")
    return f"{first_array}.item"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()


# How an API or schema.org nests a field's value: the keys that give it, in order of preference
_NESTED_TEXT = ("name", "title", "value", "text", "url", "@id", "id")
_NESTED_PRICE = ("price", "value", "amount", "lowPrice", "lowprice")
_NESTED_CURRENCY = ("priceCurrency", "currency", "currencyCode", "pricecurrency")


def _plain_fields(values: dict[str, object]) -> None:
    """A JSON object's nested field values made plain, as APIs and schema.org write them: `{"name": "Bosch"}`
    is Bosch, a list of image URLs its first, a list of categories a path (`Tools / Drills`), an offer
    `{"price": 3499, "priceCurrency": "RUB"}` (or a list of them: the first) its price and currency. A value
    that gives none stays as it is and is rejected naming its field."""
    price = values.get("price")
    if isinstance(price, list) and price:
        price = price[0]
    if isinstance(price, dict):
        currency = _first(price, _NESTED_CURRENCY)
        if currency is not None and not values.get("currency"):
            values["currency"] = currency
        price = _first(price, _NESTED_PRICE, price)
    if "price" in values:
        values["price"] = price
    for name in TEXT_FIELDS + ("external_id",):
        value = values.get(name)
        if isinstance(value, list) and value:
            items = [_first(item, _NESTED_TEXT, item) if isinstance(item, dict) else item for item in value]
            texts = [str(item) for item in items if isinstance(item, str | int) and str(item).strip()]
            if texts:
                values[name] = " / ".join(texts) if name == "category" else texts[0]
        elif isinstance(value, dict):
            values[name] = _first(value, _NESTED_TEXT, value)


def _first(mapping: dict, keys: tuple[str, ...], default: object = None) -> object:
    """The value of the first of `keys` that `mapping` holds as text or a number."""
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return value
    return default


class _ObjectReader:
    """A JSON object's row: keys named as a field (or meaning one, `商品名称`) are the fields, `attributes` and
    every other key the attributes. Where the first object has no id (nor a shop's own article number), the
    file has none: each object is named by its position (`row-3`), and one without an id elsewhere is a reject."""

    def __init__(self, options: IngestOptions, source: _Source, builder: _RowBuilder) -> None:
        self.rename = {column: field_name for field_name, column in options.mapping.items()}
        self.source, self.builder = source, builder
        self.first = True

    def __call__(self, line: int, obj: object, raw: str) -> StagedRow:
        external_id = None
        try:
            if not isinstance(obj, dict):
                raise _RowError(None, f"expected a JSON object, got {type(obj).__name__}")
            values: dict[str, object] = {}
            attributes: dict = {}
            others = []
            for key, value in obj.items():
                name = self.rename.get(key) or ALIASES.get(key.lower(), key.lower())
                if name in FIELDS and name not in values:
                    values[name] = value
                elif name == "attributes" and isinstance(value, dict):
                    attributes.update(value)
                else:
                    others.append((key, value))
            for key, value in others:  # a key that means a field, if no key named it (`商品名称`)
                name = field_of(key)
                if name is not None and name not in values:
                    values[name] = value
                    self.source.aliased.setdefault(name, key)
                else:
                    attributes[key] = value
            if "price" not in values:  # a schema.org product's price is in its offer
                offers = next((k for k in attributes if k.lower() == "offers"), None)
                if offers is not None:
                    values["price"] = attributes[offers]
            _plain_fields(values)
            # no id key: a shop's own article number is the id, kept as an attribute too
            if "external_id" not in values:
                article = next((k for k in attributes if is_own_article(k)), None)
                if article is not None:
                    values["external_id"] = attributes[article]
                    self.source.aliased.setdefault("external_id", article)
            if self.first and "external_id" not in values:
                self.source.row_ids = True
                self.source.notes.append(
                    "no id key: each object is named by its place in the file (row-7 for the 7th line or "
                    "item), which a later file keeps only if none moves; name one with --map external_id=KEY"
                )
            self.first = False
            if self.source.row_ids and "external_id" not in values:
                values["external_id"] = row_id(line)
            external_id = values.get("external_id")
            return self.builder.build(line, [values.get(name) for name in FIELDS], attributes)
        except _RowError as error:
            return _reject_row(line, external_id, error, raw)


# --- database --------------------------------------------------------------------------------------------
