"""Opening a catalogue file: `IngestOptions`, gzip, and the detection of format, text encoding and delimiter.

`ingest.load.ingest_file` calls `open_source`, which reads a sample of the file (decompressed if gzipped) to
decide between CSV and JSON lines, between UTF-8 and a legacy encoding, and which delimiter a CSV uses, unless
the options say so. Undecodable bytes are kept as surrogates (`_BAD_BYTES`) so that only their row is rejected
later by `ingest.rows`, not the whole file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from prodmatch.errors import IngestError

FORMATS = ("csv", "jsonl")
DELIMITERS = ",;\t|"
SAMPLE_BYTES = 256 * 1024


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


@dataclass
class Source:
    """An opened catalogue file: its detected format, encoding and delimiter, and the stream to read it from."""

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


def open_source(path: Path, options: IngestOptions) -> Source:
    """Open `path` (gunzipping if needed) and detect what the options leave open; the caller closes it."""
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.is_dir():
        raise IngestError(f"{path}: is a folder, not a catalogue file")
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by Source.close
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
    return Source(path, fmt, encoding, delimiter, binary, raw, size)


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
