"""Catalogue rows into product rows: column mapping, field validation, prices and currencies, rejects.

`ingest.sources` opens a file and says its format, encoding and delimiter; this module reads its CSV or JSONL
records (`_csv_rows`, `_jsonl_rows`), maps columns to product fields (`--map`, aliases such as `id`), checks the
required ones, parses prices written the way shops write them (`parse_price`: thousands separators, decimal
commas, currency signs), resolves relative image paths, and turns each record into a `StagedRow` for
`ingest.load` to COPY, or a rejected row naming its line and field.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

from prodmatch.errors import IngestError
from prodmatch.ingest.sources import _BAD_BYTES, IngestOptions, Source

FIELDS = ("external_id", "title", "description", "brand", "category", "price", "currency", "image")
TEXT_FIELDS = ("title", "description", "brand", "category", "currency", "image")
REQUIRED_FIELDS = ("external_id", "title")
ALIASES = {"id": "external_id"}
MAX_RAW = 2000


def parse_price(text: str, decimal_comma: bool | None = None) -> tuple[Decimal | None, str | None]:
    """A price such as "4 999,00 ₽", "$1,299.99" or "12.5" as (amount, ISO currency or None).

    Raises ValueError when the text is not a price.
    """
    text = text.strip()
    if not text:
        return None, None
    currency = _currency_of(text)
    digits = _PRICE_NOISE.sub("", text).rstrip(".,")  # "499 руб." -> "499"
    if not _PRICE_SHAPE.fullmatch(digits):
        raise ValueError(f"not a price: {text!r}")
    amount = Decimal(_normalise_separators(digits, decimal_comma))
    if amount < 0:
        raise ValueError(f"negative price: {text!r}")
    return amount, currency


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_WINDOWS_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")
_PRICE_NOISE = re.compile(r"[\s\u00a0\u2009\u202f'’`]|[^\d.,\-]")
_PLAIN_NUMBER = re.compile(r"\d{1,15}(?:\.\d{1,6})?")
_PRICE_SHAPE = re.compile(r"-?(\d[\d.,]*)")
_CURRENCY_SIGNS = {
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "₽": "RUB",
    "руб": "RUB",
    "р.": "RUB",
    "¥": "JPY",
    "₴": "UAH",
    "₸": "KZT",
    "zł": "PLN",
}
_ISO_CURRENCY = re.compile(r"\b([A-Z]{3})\b")


def _currency_of(text: str) -> str | None:
    iso = _ISO_CURRENCY.search(text)
    if iso:
        return iso.group(1)
    lowered = text.lower()
    for sign, code in _CURRENCY_SIGNS.items():
        if sign in lowered:
            return code
    return None


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


_THOUSANDS = {sep: re.compile(r"-?\d{1,3}(?:" + re.escape(sep) + r"\d{3})+") for sep in ",."}


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


def read_rows(source: Source, options: IngestOptions, base_dir: str) -> Iterator[StagedRow]:
    """Every non-blank record of an opened catalogue as a StagedRow, good or rejected, in file order.

    Relative image paths are resolved against `base_dir`.
    """
    builder = _RowBuilder(base_dir, options.decimal_comma, all_text=source.format == "csv")
    read = _csv_rows if source.format == "csv" else _jsonl_rows
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

    def build(self, line: int, values: list, attributes: dict) -> StagedRow:
        """`values` are in FIELDS order; `attributes` are the row's other columns."""
        if self.all_text:
            texts = [v.strip() for v in values]
        else:
            texts = [None if n == "price" else _text(v, n) for v, n in zip(values, FIELDS, strict=True)]
        external_id, title, description, brand, category, _, currency, image = texts
        if not external_id:
            raise _RowError("external_id", "missing external_id")
        price, price_currency = self._price(values[5])
        if image and (not _URL.match(image) or _WINDOWS_DRIVE.match(image)):
            image = os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(image)))
        return StagedRow(
            line,
            external_id,
            title=title or None,
            description=description or None,
            brand=brand or None,
            category=category or None,
            price=price,
            currency=currency or price_currency,
            image=image or None,
            attributes=json.dumps(attributes, ensure_ascii=False) if attributes else "{}",
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


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _RowError(name, f"{name} must be text, got {type(value).__name__}")


def _reject_row(line: int, external_id: object, error: _RowError, raw: str) -> StagedRow:
    ext = external_id.strip() if isinstance(external_id, str) else None
    return StagedRow(
        line, ext or None, reject_field=error.field, reject_reason=error.reason, raw=raw[:MAX_RAW]
    )


def _resolve_columns(header: list[str], mapping: dict[str, str], path: Path) -> dict[str, int]:
    """Canonical field -> column index, from --map first, then names and aliases."""
    normalised = [h.strip().lstrip("\ufeff").lower() for h in header]
    columns: dict[str, int] = {}
    for field_name, column in mapping.items():
        wanted = column.strip().lower()
        if wanted not in normalised:
            raise IngestError(
                f"{path}: --map {field_name}={column}: no column named {column!r}; "
                f"the header has: {', '.join(header)}"
            )
        columns[field_name] = normalised.index(wanted)
    for index, name in enumerate(normalised):
        canonical = ALIASES.get(name, name)
        if canonical in FIELDS and canonical not in columns and index not in columns.values():
            columns[canonical] = index
    missing = [f for f in REQUIRED_FIELDS if f not in columns]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {', '.join(missing)}; the header has: "
            f"{', '.join(header)}. Name the columns with --map, e.g. --map {missing[0]}=COLUMN"
        )
    return columns


def _csv_rows(source: Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[StagedRow]:
    reader = csv.reader(source.text(), delimiter=source.delimiter)
    header = next(reader, None)
    if header is None:
        raise IngestError(f"{source.path}: the file is empty (no header row)")
    if _BAD_BYTES.search("".join(header)):
        raise IngestError(
            f"{source.path}: the header is not valid {source.encoding}; pass --encoding (e.g. cp1251)"
        )
    columns = _resolve_columns(header, options.mapping, source.path)
    mapped = set(columns.values())
    extra = [(i, h.strip()) for i, h in enumerate(header) if i not in mapped and h.strip()]
    attributes_column = next((i for i, h in extra if h.lower() == "attributes"), None)
    width = len(header)
    indexes = [columns.get(name, width) for name in FIELDS]  # `width` points at the padding ""
    id_index = columns["external_id"]
    line = reader.line_num + 1
    for record in reader:
        start, line = line, reader.line_num + 1
        if not record or record == [""]:
            continue
        raw = source.delimiter.join(record)
        external_id = record[id_index] if id_index < len(record) else None
        try:
            if _BAD_BYTES.search(raw):
                raise _RowError(None, f"undecodable bytes for encoding {source.encoding}")
            if len(record) != width:
                if len(record) > width:
                    raise _RowError(None, f"{len(record)} fields but the header has {width}")
                record += [""] * (width - len(record))  # short rows: trailing empty fields
            record.append("")
            values = [record[i] for i in indexes]
            attributes = {h: record[i] for i, h in extra if record[i] != ""}
            if attributes_column is not None and "attributes" in attributes:
                attributes.update(_json_object(attributes.pop("attributes")))
            yield builder.build(start, values, attributes)
        except _RowError as error:
            yield _reject_row(start, external_id, error, raw.encode("utf-8", "replace").decode())


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _RowError("attributes", f"attributes is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise _RowError("attributes", "attributes must be a JSON object")
    return value


def _jsonl_rows(source: Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[StagedRow]:
    rename = {column: field_name for field_name, column in options.mapping.items()}
    for line, text in enumerate(source.text(), start=1):
        if not text.strip():
            continue
        external_id = None
        try:
            if _BAD_BYTES.search(text):
                raise _RowError(None, f"undecodable bytes for encoding {source.encoding}")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _RowError(None, f"broken JSON: {exc.msg} at column {exc.colno}") from None
            if not isinstance(obj, dict):
                raise _RowError(None, f"expected a JSON object, got {type(obj).__name__}")
            values: dict[str, object] = {}
            attributes: dict = {}
            for key, value in obj.items():
                name = rename.get(key) or ALIASES.get(key.lower(), key.lower())
                if name in FIELDS and name not in values:
                    values[name] = value
                elif name == "attributes" and isinstance(value, dict):
                    attributes.update(value)
                else:
                    attributes[key] = value
            external_id = values.get("external_id")
            yield builder.build(line, [values.get(name) for name in FIELDS], attributes)
        except _RowError as error:
            raw = text.rstrip("\r\n").encode("utf-8", "replace").decode()
            yield _reject_row(line, external_id, error, raw)
