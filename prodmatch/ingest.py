"""Read catalogue files, validate rows, COPY them into a staging table, upsert products, record rejects.

A file (CSV or JSONL, optionally gzipped, in UTF-8 or a legacy encoding) streams through in constant memory:
each row is validated in Python, written with COPY into a temporary staging table (bad rows too, with their
reason), and one set-based SQL statement upserts the good rows into `prodmatch.products` by (catalogue, external
id). Rows whose content did not change are left alone; changed rows are updated, which the triggers in
`sql/pending.sql` turn into pending embeddings. Bad rows land in `prodmatch.ingest_rejects` with file, line, field
and reason. Next on the data's path: `worker.py` embeds what is pending.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import psycopg
from tqdm import tqdm

from prodmatch.errors import IngestError

FORMATS = ("csv", "jsonl")
FIELDS = ("external_id", "title", "description", "brand", "category", "price", "currency", "image")
TEXT_FIELDS = ("title", "description", "brand", "category", "currency", "image")
REQUIRED_FIELDS = ("external_id", "title")
ALIASES = {"id": "external_id"}
DELIMITERS = ",;\t|"
MAX_RAW = 2000
MAX_LISTED_REJECTS = 1000
SAMPLE_BYTES = 256 * 1024

csv.field_size_limit(64 * 1024 * 1024)


@dataclass(frozen=True)
class IngestOptions:
    """How to read a file; None means detect."""

    format: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # canonical field -> column name in the file
    images_root: Path | None = None
    encoding: str | None = None
    delimiter: str | None = None
    decimal_comma: bool | None = None  # True: "1,234" is 1.234; False: 1234; None: decide per value
    strict: bool = False
    prune: bool = False  # delete the catalogue's products the file no longer lists (a full export)
    progress: bool = False


@dataclass(frozen=True)
class Reject:
    """A row that was not loaded, and why."""

    file: str
    line: int
    field: str | None
    reason: str
    external_id: str | None = None
    raw: str | None = None


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did."""

    catalog: str
    file: str
    format: str
    encoding: str | None
    delimiter: str | None
    ingest_run_id: int | None
    rows: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    seconds: float
    rejects: list[Reject]
    deleted: int = 0  # with prune: products no longer in the file, removed with their vectors and matches
    prune_skipped: str | None = None  # with prune: why nothing was deleted, when it was not safe to

    @property
    def loaded(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def to_dict(self) -> dict:
        return asdict(self)


def ingest_file(
    conn: psycopg.Connection, path: str | Path, catalog: str, options: IngestOptions = IngestOptions()
) -> IngestResult:
    """Load one catalogue file into `catalog` (created if new) in one transaction."""
    started = time.perf_counter()
    path = Path(path)
    source = _open_source(path, options)
    try:
        with conn.transaction():
            catalog_id = ensure_catalog(conn, catalog)
            # One ingest per catalogue at a time: the upsert below may take the fast path for a new catalogue.
            conn.execute("SELECT 1 FROM prodmatch.catalogs WHERE id = %s FOR UPDATE", (catalog_id,))
            run_id = _start_run(conn, catalog_id, source, options)
            _create_staging(conn)
            rows = _copy_to_staging(conn, source, options)
            _reject_duplicates(conn)
            rejected = _store_rejects(conn, run_id, str(path))
            inserted, updated = _upsert(conn, catalog_id)
            unchanged = rows - rejected - inserted - updated
            deleted, prune_skipped = _prune(conn, catalog_id, rows) if options.prune else (0, None)
            _finish_run(conn, run_id, inserted, updated, unchanged, rejected)
            rejects = list_rejects(conn, run_id)
            if options.strict and rejected:
                raise _StrictRollback
    except _StrictRollback:
        first = "\n".join(_describe(r) for r in rejects[:10])
        raise IngestError(
            f"{path}: {rejected} of {rows} rows rejected; --strict loaded nothing.\n{first}"
        ) from None
    finally:
        source.close()
    return IngestResult(
        catalog=catalog,
        file=str(path),
        format=source.format,
        encoding=source.encoding,
        delimiter=source.delimiter,
        ingest_run_id=run_id,
        rows=rows,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        rejected=rejected,
        seconds=round(time.perf_counter() - started, 3),
        rejects=rejects,
        deleted=deleted,
        prune_skipped=prune_skipped,
    )


def ensure_catalog(conn: psycopg.Connection, name: str) -> int:
    """The id of catalogue `name`, created if it does not exist."""
    if not name or not name.strip():
        raise IngestError("the catalogue name must not be empty (--catalog NAME)")
    row = conn.execute(
        "INSERT INTO prodmatch.catalogs (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id",
        (name,),
    ).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = %s", (name,)).fetchone()
    return row[0]


def list_rejects(conn: psycopg.Connection, run_id: int, limit: int = MAX_LISTED_REJECTS) -> list[Reject]:
    """The rejects of one ingest run, in file order."""
    rows = conn.execute(
        "SELECT file, line, field, reason, external_id, raw FROM prodmatch.ingest_rejects"
        " WHERE ingest_run_id = %s ORDER BY line LIMIT %s",
        (run_id, limit),
    ).fetchall()
    return [Reject(*row) for row in rows]


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


# --- reading files ---------------------------------------------------------------------------------------


class _StrictRollback(Exception):
    pass


@dataclass
class _Source:
    path: Path
    format: str
    encoding: str
    delimiter: str | None
    binary: io.BufferedIOBase
    raw: io.BufferedIOBase
    size: int

    def text(self) -> io.TextIOWrapper:
        # surrogateescape keeps undecodable bytes visible (as lone surrogates) so the row can be rejected.
        # The wrapper is kept: when garbage-collected it would close the file under our feet.
        self._text = io.TextIOWrapper(
            self.binary, encoding=self.encoding, errors="surrogateescape", newline=""
        )
        return self._text

    def position(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        if getattr(self, "_text", None) is not None:
            self._text.close()
        self.binary.close()
        self.raw.close()


def _open_source(path: Path, options: IngestOptions) -> _Source:
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.is_dir():
        raise IngestError(f"{path}: is a folder, not a catalogue file")
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by _Source.close
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        gzipped = raw.peek(2)[:2] == b"\x1f\x8b"
        binary = gzip.GzipFile(fileobj=raw) if gzipped else raw
        sample = binary.peek(SAMPLE_BYTES)[:SAMPLE_BYTES] if not gzipped else _gzip_sample(path)
    except (OSError, EOFError) as exc:
        raw.close()
        raise IngestError(f"{path}: cannot read: {exc}") from exc
    fmt = options.format or _detect_format(path, sample)
    if fmt not in FORMATS:
        raw.close()
        raise IngestError(f"{path}: unknown format {fmt!r}; use --format csv or --format jsonl")
    encoding = options.encoding or _detect_encoding(sample)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raw.close()
        raise IngestError(f"unknown encoding {encoding!r}") from None
    delimiter = None
    if fmt == "csv":
        delimiter = options.delimiter or _detect_delimiter(sample.decode(encoding, errors="replace"))
    size = path.stat().st_size
    return _Source(path, fmt, encoding, delimiter, binary, raw, size)


def _gzip_sample(path: Path) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read(SAMPLE_BYTES)


def _detect_format(path: Path, sample: bytes) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffixes and suffixes[-1] in (".csv", ".tsv", ".txt"):
        return "csv"
    return "jsonl" if sample.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else "csv"


def _detect_encoding(sample: bytes) -> str:
    """UTF-8 (BOM or not) when the sample decodes as UTF-8, else the best legacy guess."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A few bad bytes deep in a UTF-8 file are row errors, not a different encoding.
        if _mostly_utf8(sample, exc.start):
            return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(
        sample, cp_isolation=["cp1251", "cp1252", "koi8_r", "cp1250", "latin_1", "cp866"]
    ).best()
    return best.encoding if best is not None else "cp1252"


def _mostly_utf8(sample: bytes, first_bad: int) -> bool:
    decoded = sample.decode("utf-8", errors="replace")
    bad = decoded.count("\ufffd")
    multibyte = sum(1 for ch in decoded if ord(ch) > 127) - bad
    return multibyte > 4 * bad


def _detect_delimiter(sample: str) -> str:
    lines = sample.splitlines()[:50]
    if len(lines) > 1 and len(sample) >= SAMPLE_BYTES:
        lines = lines[:-1]  # the last line may be cut
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = lines[0] if lines else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


# --- rows ------------------------------------------------------------------------------------------------

_BAD_BYTES = re.compile("[\udc80-\udcff]")
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

    def build(self, line: int, values: list, attributes: dict) -> tuple:
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
        return (
            line,
            external_id,
            title or None,
            description or None,
            brand or None,
            category or None,
            price,
            currency or price_currency,
            image or None,
            json.dumps(attributes, ensure_ascii=False) if attributes else "{}",
            None,
            None,
            None,
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


def _reject_row(line: int, external_id: object, error: _RowError, raw: str) -> tuple:
    ext = external_id.strip() if isinstance(external_id, str) else None
    return (line, ext or None, *([None] * 8), error.field, error.reason, raw[:MAX_RAW])


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


def _csv_rows(source: _Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[tuple]:
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


def _jsonl_rows(source: _Source, options: IngestOptions, builder: _RowBuilder) -> Iterator[tuple]:
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


# --- database --------------------------------------------------------------------------------------------

_STAGING_COLUMNS = (
    "line, external_id, title, description, brand, category, price, currency, image, attributes,"
    " reject_field, reject_reason, raw"
)


def _create_staging(conn: psycopg.Connection) -> None:
    # The caller's transaction may still be open (ours is then a savepoint, and ON COMMIT has not fired).
    conn.execute("DROP TABLE IF EXISTS pg_temp.ingest_staging")
    conn.execute(
        """
        CREATE TEMP TABLE ingest_staging (
            line integer NOT NULL, external_id text, title text, description text, brand text,
            category text, price numeric, currency text, image text, attributes jsonb,
            reject_field text, reject_reason text, raw text
        ) ON COMMIT DROP
        """
    )


def _copy_to_staging(conn: psycopg.Connection, source: _Source, options: IngestOptions) -> int:
    base_dir = str((options.images_root or source.path.parent).expanduser().resolve())
    builder = _RowBuilder(base_dir, options.decimal_comma, all_text=source.format == "csv")
    rows = (
        _csv_rows(source, options, builder)
        if source.format == "csv"
        else _jsonl_rows(source, options, builder)
    )
    count = 0
    bar = tqdm(
        total=source.size,
        unit="B",
        unit_scale=True,
        desc=f"ingest {source.path.name}",
        disable=not options.progress,
        file=None,
    )
    started = time.perf_counter()
    with bar, conn.cursor().copy(f"COPY ingest_staging ({_STAGING_COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
            if count % 2000 == 0:
                bar.update(source.position() - bar.n)
                bar.set_postfix(rows=count, rows_s=int(count / (time.perf_counter() - started)))
        bar.update(source.position() - bar.n)
        bar.set_postfix(rows=count)
    return count


def _reject_duplicates(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        UPDATE ingest_staging s
           SET reject_field = 'external_id',
               reject_reason = 'duplicate external_id ' || quote_literal(s.external_id)
                               || ' (first seen on line ' || d.first_line || ')'
          FROM (SELECT line, first_value(line) OVER (PARTITION BY external_id ORDER BY line) AS first_line
                  FROM ingest_staging WHERE reject_reason IS NULL) d
         WHERE s.line = d.line AND d.first_line <> d.line
        """
    )


def _store_rejects(conn: psycopg.Connection, run_id: int, file: str) -> int:
    cur = conn.execute(
        """
        INSERT INTO prodmatch.ingest_rejects (ingest_run_id, file, line, external_id, field, reason, raw)
        SELECT %s, %s, line, external_id, reject_field, reject_reason, raw
          FROM ingest_staging WHERE reject_reason IS NOT NULL
        """,
        (run_id, file),
    )
    return cur.rowcount


def _upsert(conn: psycopg.Connection, catalog_id: int) -> tuple[int, int]:
    empty = conn.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM prodmatch.products WHERE catalog_id = %s)", (catalog_id,)
    ).fetchone()[0]
    if empty:  # a first load: nothing to conflict with (duplicates are already rejected), a plain INSERT
        cur = conn.execute(
            """
            INSERT INTO prodmatch.products
                   (catalog_id, external_id, title, description, brand, category, price, currency, image,
                    attributes)
            SELECT %s, external_id, title, description, brand, category, price, currency, image, attributes
              FROM ingest_staging WHERE reject_reason IS NULL
            """,
            (catalog_id,),
        )
        return cur.rowcount, 0
    inserted, updated = conn.execute(
        """
        WITH upserted AS (
            INSERT INTO prodmatch.products AS p
                   (catalog_id, external_id, title, description, brand, category, price, currency, image,
                    attributes)
            SELECT %s, external_id, title, description, brand, category, price, currency, image, attributes
              FROM ingest_staging WHERE reject_reason IS NULL
            ON CONFLICT (catalog_id, external_id) DO UPDATE
               SET title = EXCLUDED.title, description = EXCLUDED.description, brand = EXCLUDED.brand,
                   category = EXCLUDED.category, price = EXCLUDED.price, currency = EXCLUDED.currency,
                   image = EXCLUDED.image, attributes = EXCLUDED.attributes
             WHERE (p.title, p.description, p.brand, p.category, p.price, p.currency, p.image, p.attributes)
                   IS DISTINCT FROM
                   (EXCLUDED.title, EXCLUDED.description, EXCLUDED.brand, EXCLUDED.category, EXCLUDED.price,
                    EXCLUDED.currency, EXCLUDED.image, EXCLUDED.attributes)
            RETURNING xmax = 0 AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
        """,
        (catalog_id,),
    ).fetchone()
    return inserted, updated


def _prune(conn: psycopg.Connection, catalog_id: int, rows: int) -> tuple[int, str | None]:
    """Delete the catalogue's products whose external id no row of the file has: (deleted, why skipped).

    A rejected row still keeps its product (its id is in the file; only its new values were bad). Nothing is
    deleted when the file has no rows, or when some row's id could not be read (a broken line may be any
    product): deleting then could remove products the file does list.
    """
    if rows == 0:
        return 0, "the file has no rows"
    unreadable = conn.execute(
        "SELECT count(*), min(line) FROM ingest_staging WHERE external_id IS NULL OR external_id = ''"
    ).fetchone()
    if unreadable[0]:
        return 0, f"{unreadable[0]} row(s) have no readable external_id (first on line {unreadable[1]})"
    cur = conn.execute(
        """
        DELETE FROM prodmatch.products p
         WHERE p.catalog_id = %s
           AND NOT EXISTS (SELECT 1 FROM ingest_staging s WHERE s.external_id = p.external_id)
        """,
        (catalog_id,),
    )
    return cur.rowcount, None


def _start_run(conn: psycopg.Connection, catalog_id: int, source: _Source, options: IngestOptions) -> int:
    settings = {
        "encoding": source.encoding,
        "delimiter": source.delimiter,
        "mapping": options.mapping,
        "images_root": str(options.images_root) if options.images_root else None,
        "decimal_comma": options.decimal_comma,
    }
    return conn.execute(
        "INSERT INTO prodmatch.ingest_runs (catalog_id, file, format, options) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (catalog_id, str(source.path.resolve()), source.format, json.dumps(settings)),
    ).fetchone()[0]


def _finish_run(
    conn: psycopg.Connection, run_id: int, inserted: int, updated: int, unchanged: int, rejected: int
) -> None:
    conn.execute(
        "UPDATE prodmatch.ingest_runs SET inserted = %s, updated = %s, unchanged = %s, rejected = %s,"
        " finished_at = now() WHERE id = %s",
        (inserted, updated, unchanged, rejected, run_id),
    )


def _describe(reject: Reject) -> str:
    where = f"{reject.file}:{reject.line}"
    what = f" field {reject.field}:" if reject.field else ""
    return f"  {where}:{what} {reject.reason}"


def describe_reject(reject: Reject) -> str:
    """One line for a human: file:line: field: reason."""
    return _describe(reject).strip()
