"""ingest: catalogue files (CSV / JSONL, optionally gzipped) into `prodmatch.products`.

`sources` opens a file and detects its format, encoding and delimiter; `rows` turns each record into a
validated product row or a reject naming the line and field; `load` copies the rows into a staging table,
upserts them into the catalogue and records the run and its rejects. `ingest_file` is the one entry.
"""

from prodmatch.ingest.load import IngestResult, Reject, describe_reject, ingest_file, list_rejects
from prodmatch.ingest.rows import parse_price
from prodmatch.ingest.sources import IngestOptions

__all__ = [
    "IngestOptions",
    "IngestResult",
    "Reject",
    "describe_reject",
    "ingest_file",
    "list_rejects",
    "parse_price",
]
