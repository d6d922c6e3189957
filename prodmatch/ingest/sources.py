"""Open a catalogue file: format, encoding and delimiter detection, and bounded line reading.

`_open_source` looks at the first 256 KiB to pick the format and delimiter. The encoding is UTF-8 when that
sample decodes as UTF-8; if a later row does not (a cp1252 export whose first "®" is deep in the file), the
rows reader raises `EncodingChanged` and `load` re-reads the file with the encoding `scan_encoding` finds for
the whole file, so such files load whole with their physical line numbers. Lines are read with a length limit
(`IngestOptions.line_limit`), so one giant line costs at most that much memory. Neighbours: `rows` turns lines
into product rows, `load` copies them into the database.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prodmatch.errors import IngestError
from prodmatch.ingest.sheets import OLE2_MAGIC, ZIP_MAGIC

FORMATS = ("csv", "jsonl", "json", "xlsx", "xls")
WORKBOOKS = ("xlsx", "xls")
DELIMITERS = ",;\t|"
_SEP_LINE = re.compile("\ufeff?sep=(.)[ \t]*\r?\n")
SAMPLE_BYTES = 256 * 1024
LINE_LIMIT = 1024 * 1024  # characters per physical line; a longer line is a reject, never read whole
SCAN_CHUNK = 1024 * 1024
# Legacy encodings tried for a file that is not UTF-8, most common first. Each is checked against every byte
# the file holds; `_oddity` picks among those that fit.
# koi8_r and cp866 define every byte, so they would "fit" any file: pass them with --encoding.
LEGACY_ENCODINGS = ("cp1252", "cp1251", "cp1250", "latin_1")
# The code pages of Chinese, Japanese and Korean exports (Excel's "CSV" on a Windows set up for those languages):
# GB18030 (a superset of GBK and GB2312), Big5, Shift-JIS as Windows writes it, EUC-JP, and Korean (a superset
# of EUC-KR). Each byte pair must decode, so one is a candidate only if (nearly) the whole file decodes in it;
# charset_normalizer then tells a Chinese file from Cyrillic or Latin mojibake of the same bytes.
MULTIBYTE_ENCODINGS = ("gb18030", "big5", "cp932", "euc_jp", "cp949")
# At most one undecodable sequence per this many characters (a damaged row, not another page).
MULTIBYTE_ERRORS = 1000
# Bytes of a line kept as a sample; a longer line is left out (cut, it could split a character).
MAX_SAMPLE_LINE = 4096
# Bytes each legacy code page leaves undefined; latin_1 "fits" only files without C1 control bytes.
_UNDEFINED = {
    "cp1252": (0x81, 0x8D, 0x8F, 0x90, 0x9D),
    "cp1251": (0x98,),
    "cp1250": (0x81, 0x83, 0x88, 0x90, 0x98),
    "latin_1": tuple(range(0x80, 0xA0)),
}
OVERLONG = "\ufdd0overlong line\ufdd0"  # a noncharacter marker the row readers turn into a reject


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
    prune_max: float = 0.2  # prune refuses to delete more than this share of the catalogue ...
    force: bool = False  # ... unless forced
    line_limit: int = LINE_LIMIT  # characters per line (JSONL) or per CSV field; longer ones are rejected
    # {attribute key: role} stored with the catalogue before the rows are read (`prodmatch.roles`); a row
    # without a brand takes it from an attribute whose role is brand
    attribute_roles: dict[str, str] = field(default_factory=dict)
    progress: bool = False
    sheet: str | None = None  # a workbook's sheet to read (default: the active one, else one with products)


class EncodingChanged(Exception):
    """A row of a file read as UTF-8 is not UTF-8: re-read the whole file in the encoding that fits it."""


@dataclass(frozen=True)
class EncodingVerdict:
    """The encoding for a whole file, and whether every byte of the file fits it."""

    encoding: str
    fits: bool


@dataclass
class _Source:
    path: Path
    format: str
    encoding: str | None  # None for a workbook
    delimiter: str | None
    binary: io.BufferedIOBase
    raw: io.BufferedIOBase
    size: int
    settled: bool = True  # False: UTF-8 from the sample only; a bad row raises EncodingChanged
    line_limit: int = LINE_LIMIT
    last_line_complete: bool = True  # did the last line read end with a newline?
    record_chars: int = 0  # characters read since the row reader last reset it (a CSV record's size)
    record_limit: int | None = None  # more characters than this in one record: the file is suspect
    rows_read: int = 0  # a workbook's rows read so far
    # field -> the column it was read from, where that column is named otherwise (`columns.field_of`)
    aliased: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the reader noticed about the file's layout
    row_ids: bool = False  # no id column: rows are named by their position (`rows.row_id`)
    sections: int = 0  # a price list's section rows, read as the category of the rows below them
    sep_line: bool = False  # the file begins with Excel's "sep=;" line, which names the delimiter

    def text(self) -> io.TextIOWrapper:
        # surrogateescape keeps undecodable bytes visible (as lone surrogates) so the row can be rejected.
        # The wrapper is kept: when garbage-collected it would close the file under our feet.
        self._text = io.TextIOWrapper(
            self.binary, encoding=self.encoding, errors="surrogateescape", newline=""
        )
        return self._text

    def lines(self) -> Iterator[str]:
        """Physical lines, each at most `line_limit` characters; a longer one comes as OVERLONG."""
        text = self.text()
        limit = self.line_limit
        while True:
            line = text.readline(limit)
            if not line:
                return
            if len(line) >= limit and not line.endswith(("\n", "\r")):
                while True:  # skip the rest of the line without holding it
                    more = text.readline(limit)
                    if not more or more.endswith(("\n", "\r")):
                        break
                line = OVERLONG + "\n"
            self.last_line_complete = line.endswith(("\n", "\r"))
            self.record_chars += len(line)
            if self.record_limit is not None and self.record_chars > self.record_limit:
                # A quoted field runs on over many lines: an unclosed quote swallowing the rest of the file.
                raise IngestError(
                    f"{self.path}: a CSV record runs over {self.record_limit:,} characters (an unclosed "
                    "quote?); nothing was loaded"
                )
            yield line

    def position(self) -> int:
        """How far reading is: bytes of the file, or rows of a workbook's sheet (`size` is the same unit)."""
        return self.rows_read if self.format in WORKBOOKS else self.raw.tell()

    def close(self) -> None:
        if getattr(self, "_text", None) is not None:
            self._text.close()
        self.binary.close()
        self.raw.close()


def _open_source(path: Path, options: IngestOptions, encoding: str | None = None) -> _Source:
    """Open `path`; `encoding` (from a whole-file scan) wins over detection from the sample."""
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
    except (OSError, EOFError, zlib.error) as exc:
        raw.close()
        raise IngestError(f"{path}: cannot read: {_truncation_hint(exc)}") from exc
    fmt = options.format or _detect_format(path, sample)
    if fmt not in FORMATS:
        raw.close()
        raise IngestError(f"{path}: unknown format {fmt!r}; use --format csv, jsonl, json, xlsx or xls")
    if fmt in WORKBOOKS:  # a workbook's cells carry their text as such: no encoding or delimiter to find
        # its size is counted in rows, known once the sheet is open (`sheets.open_workbook`)
        return _Source(path, fmt, None, None, binary, raw, 0, line_limit=options.line_limit)
    settled = True
    if options.encoding or encoding:
        encoding = options.encoding or encoding
    else:
        encoding = _detect_encoding(sample)
        settled = encoding != "utf-8"
        if encoding is None:  # the sample is not UTF-8: decide from the whole file
            encoding = scan_encoding(path).encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raw.close()
        raise IngestError(f"unknown encoding {encoding!r}") from None
    delimiter, sep_line = None, False
    if fmt == "csv":
        text = sample.decode(encoding, errors="replace")
        # Excel's CSV can begin with a line naming its delimiter ("sep=;"): it is the delimiter, and no row
        sep_line = (named := _SEP_LINE.match(text)) is not None
        delimiter = options.delimiter or (named.group(1) if named else _detect_delimiter(text))
    size = path.stat().st_size
    return _Source(
        path,
        fmt,
        encoding,
        delimiter,
        binary,
        raw,
        size,
        settled=settled,
        line_limit=options.line_limit,
        sep_line=sep_line,
    )


def read_error(path: Path, exc: BaseException) -> IngestError:
    """The IngestError for a file that broke while being read (a cut-off gzip, a bad disk)."""
    return IngestError(f"{path}: cannot read: {_truncation_hint(exc)}; nothing was loaded")


def _truncation_hint(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip stream ends early (the file is truncated: download it again)"
    return str(exc) or type(exc).__name__


def scan_encoding(path: Path) -> EncodingVerdict:
    """The encoding of the whole file: UTF-8 if (nearly) all of it is, else the legacy code page that fits.

    Streams the file once in 1 MiB chunks: counts UTF-8 errors and valid multi-byte characters, keeps a
    histogram of high bytes (to rule out single-byte code pages that leave some of them undefined), decodes it in
    each multi-byte code page (`MULTIBYTE_ENCODINGS`) while that still fits, and keeps a sample of text around
    the high bytes (to choose among what fits) and of whole lines with high bytes (for a multi-byte page).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    counts = np.zeros(256, dtype=np.int64)
    bad = multibyte = 0
    context: list[bytes] = []
    context_size = 0
    pages = _MultibytePages()
    try:
        with _open_binary(path) as f:
            while chunk := f.read(SCAN_CHUNK):
                text = decoder.decode(chunk)
                replaced = text.count("\ufffd")
                bad += replaced
                multibyte += len(text) - len(text.encode("ascii", "ignore")) - replaced
                array = np.frombuffer(chunk, dtype=np.uint8)
                counts += np.bincount(array, minlength=256)
                pages.feed(chunk)
                if context_size < SAMPLE_BYTES:
                    for at in np.flatnonzero(array >= 0x80)[:200:4]:
                        piece = chunk[max(0, at - 40) : at + 40]
                        context.append(piece)
                        context_size += len(piece)
    except (OSError, EOFError, zlib.error) as exc:
        raise read_error(path, exc) from exc
    bad += decoder.decode(b"", final=True).count("\ufffd")
    if bad == 0 or multibyte > 4 * bad:
        # A few bad bytes in a mostly UTF-8 file are row errors, not a different encoding.
        return EncodingVerdict("utf-8", bad == 0)
    fitting = [e for e in LEGACY_ENCODINGS if not any(counts[b] for b in _UNDEFINED[e])]
    page = pages.verdict(fitting)
    if page is not None:
        return page
    best = _guess_legacy(b"\n".join(context), fitting or list(LEGACY_ENCODINGS[:-1]))
    return EncodingVerdict(best, bool(fitting))


class _MultibytePages:
    """Decodes a file's chunks in every multi-byte code page that still fits it, and keeps whole lines with
    high bytes (a multi-byte character never holds a newline byte in these pages) as a sample to judge by."""

    def __init__(self) -> None:
        self.decoders = {e: codecs.getincrementaldecoder(e)(errors="replace") for e in MULTIBYTE_ENCODINGS}
        self.errors = dict.fromkeys(MULTIBYTE_ENCODINGS, 0)
        self.characters = dict.fromkeys(MULTIBYTE_ENCODINGS, 0)
        self.lines: list[bytes] = []
        self.size = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        for encoding, decoder in list(self.decoders.items()):
            text = decoder.decode(chunk)
            self.errors[encoding] += text.count("\ufffd")
            self.characters[encoding] += len(text)
            if self.errors[encoding] * MULTIBYTE_ERRORS > max(self.characters[encoding], SCAN_CHUNK):
                del self.decoders[encoding]  # not this page: stop paying for it
        if self.decoders and self.size < SAMPLE_BYTES:
            lines = (self.tail + chunk).split(b"\n")
            self.tail = lines.pop()[-MAX_SAMPLE_LINE:]  # the chunk's end may cut a line: finished by the next
            self._keep(lines)

    def _keep(self, lines: list[bytes]) -> None:
        for line in lines:
            if len(line) <= MAX_SAMPLE_LINE and max(line, default=0) >= 0x80 and self.size < SAMPLE_BYTES:
                self.lines.append(line)
                self.size += len(line)

    def verdict(self, single_byte: list[str]) -> EncodingVerdict | None:
        """The multi-byte page the file is in, if one fits and its text reads better than any single-byte page."""
        for encoding, decoder in self.decoders.items():
            self.errors[encoding] += decoder.decode(b"", final=True).count("\ufffd")
        self._keep([self.tail])
        fitting = [
            e
            for e in self.decoders
            if self.errors[e] * MULTIBYTE_ERRORS <= max(self.characters[e], 1) and self.characters[e]
        ]
        if not fitting or not self.lines:
            return None
        import charset_normalizer

        sample = b"\n".join(self.lines)
        best = charset_normalizer.from_bytes(sample, cp_isolation=fitting + single_byte).best()
        chosen = [
            e
            for e in fitting
            if best is not None and codecs.lookup(e).name == codecs.lookup(best.encoding).name
        ]
        if not chosen:
            return None
        # A few accented words can read as Chinese too ("été" is "閠?"): the page must also read more like words
        # than every single-byte page that fits (its letters glued to Latin ones, theirs in odd runs and cases).
        oddity = _oddity(sample.decode(chosen[0], errors="replace"))
        if any(_oddity(sample.decode(e, errors="replace")) <= oddity for e in single_byte):
            return None
        return EncodingVerdict(chosen[0], self.errors[chosen[0]] == 0)


def _guess_legacy(sample: bytes, candidates: list[str]) -> str:
    """The candidate under which the text around the high bytes reads most like words (ties: list order)."""
    return min(candidates, key=lambda e: (_oddity(sample.decode(e, errors="replace")), candidates.index(e)))


_COMMON_SYMBOLS = set("®©™°±«»–—‘’“”„•…€£¥§¶·×÷¢µ№")


def _oddity(text: str) -> int:
    """How little `text` looks like prose: odd symbols, scripts mixed inside a word, runs of accented
    Latin letters ("Êðîññîâêè" is Russian read as cp1252), and capitals inside lower-case words."""
    score = 0
    run = 0
    previous = " "
    for ch in text:
        high = ord(ch) > 127
        if high and not ch.isalpha() and ch not in _COMMON_SYMBOLS:
            score += 1
        latin_high = high and ch.isalpha() and "LATIN" in unicodedata.name(ch, "")
        run = run + 1 if latin_high else 0
        if run >= 3:
            score += 1
        if ch.isalpha() and previous.isalpha():
            if (ord(ch) < 128) != (ord(previous) < 128) and not (latin_high or _is_latin(previous)):
                score += 1  # an ASCII letter glued to a Cyrillic or Greek one
            if ch.isupper() and previous.islower():
                score += 1
        previous = ch
    return score


def _is_latin(ch: str) -> bool:
    return ord(ch) < 128 or "LATIN" in unicodedata.name(ch, "")


def _open_binary(path: Path):
    raw = open(path, "rb")  # noqa: SIM115 - returned to a with block
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def _gzip_sample(path: Path) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read(SAMPLE_BYTES)


def _detect_format(path: Path, sample: bytes) -> str:
    if sample.startswith(OLE2_MAGIC):
        return "xls"  # an Excel 97-2003 workbook (an OLE2 compound file)
    if sample.startswith(ZIP_MAGIC):
        return "xlsx"  # a workbook is a zip archive (whatever its name says)
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson"):
        return "jsonl"
    start = sample.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start[:1] == b"[":
        return "json"  # a JSON document: an array of products
    if start[:1] == b"{":  # JSON lines, or one document (pretty-printed, or `{"products": [...]}`)
        return "jsonl" if _one_object_a_line(start) else "json"
    return "jsonl" if suffixes and suffixes[-1] == ".json" else "csv"


def _one_object_a_line(sample: bytes) -> bool:
    """Whether the sample's first line is a whole JSON object (JSON lines), not the start of a document.

    A file of one line is a document where its object holds a list (`{"products": [...]}` written without
    newlines); JSON lines' products may hold lists too (variants, offers), but such a file has more lines."""
    first, _, rest = sample.partition(b"\n")
    if not rest.strip() and len(sample) >= SAMPLE_BYTES:
        return True  # a first line longer than the sample: JSON lines' long record, read line by line
    try:
        obj = json.loads(first.decode("utf-8", errors="replace"))
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    return bool(rest.strip()) or not any(isinstance(v, list) and v for v in obj.values())


def _detect_encoding(sample: bytes) -> str | None:
    """From the sample: a BOM's encoding, "utf-8" when it decodes as UTF-8, else None (scan the file)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return None


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


# Public names for callers outside the ingest package (tests, benchmarks).
Source = _Source
open_source = _open_source
