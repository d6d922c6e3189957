"""Labels are data: record, undo, count, export and import people's answers to candidate pairs.

Writes go through the SQL functions of `sql/labels.sql` (`prodmatch.record_label`, `prodmatch.undo_label`), which
serialise answers to the same pair on an advisory lock: concurrent answers keep the last one current and history
keeps both. Export writes the gold CSV format that `prodmatch.evaluate.read_gold` reads
(`source_catalog,source_id,target_catalog,target_id,label`, label 1 = same product, 0 = different); import reads
that format back, so a gold file and the table are two forms of the same thing.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from prodmatch.errors import ConfigError
from prodmatch.quality.gold import GOLD_COLUMNS, GOLD_HEADER

LABELS = ("match", "non-match", "unsure")
_GOLD_VALUE = {"match": 1, "non-match": 0}
_FROM_GOLD = {"1": "match", "0": "non-match", "match": "match", "non-match": "non-match", "unsure": "unsure"}


@dataclass(frozen=True)
class LabelCounts:
    """How many pairs carry a current label, by answer."""

    labelled: int
    matches: int
    non_matches: int
    unsure: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Undone:
    """The answer `undo_last` took back."""

    source_product_id: int
    target_product_id: int
    label: str


@dataclass(frozen=True)
class ImportResult:
    """What `import_labels` did."""

    file: str
    imported: int
    unknown: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def record_label(
    conn: psycopg.Connection,
    source_product_id: int,
    target_product_id: int,
    label: str,
    labelled_by: str,
    run_id: int | None = None,
) -> int:
    """Store one answer as the pair's current label (earlier answers stay as history); returns its id.

    Committed at once unless the caller has a transaction open, which it then joins (psycopg's `transaction()`).
    """
    if label not in LABELS:
        raise ConfigError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if not labelled_by:
        raise ConfigError("a label needs the name of who gave it")
    with conn.transaction():
        row = conn.execute(
            "SELECT prodmatch.record_label(%s::bigint, %s::bigint, %s::text, %s::text, %s::bigint)",
            (source_product_id, target_product_id, label, labelled_by, run_id),
        ).fetchone()
    return row[0]


def undo_last(conn: psycopg.Connection, labelled_by: str) -> Undone | None:
    """Take back this person's latest answer (the pair's previous answer becomes current); None if there is none."""
    with conn.transaction():
        row = conn.execute("SELECT * FROM prodmatch.undo_label(%s::text)", (labelled_by,)).fetchone()
    return Undone(*row) if row else None


def label_counts(conn: psycopg.Connection, run_id: int | None = None) -> LabelCounts:
    """Counts of current labels; with a run, only pairs that run holds."""
    scope = (
        " AND EXISTS (SELECT 1 FROM prodmatch.matches x WHERE x.run_id = %(run)s"
        " AND x.source_product_id = l.source_product_id AND x.target_product_id = l.target_product_id)"
        if run_id is not None
        else ""
    )
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE label = 'match'), count(*) FILTER (WHERE label = 'non-match'),"
        " count(*) FILTER (WHERE label = 'unsure') FROM prodmatch.labels l WHERE l.is_current" + scope,
        {"run": run_id},
    ).fetchone()
    return LabelCounts(*row)


def labelled_pairs(conn: psycopg.Connection) -> set[tuple[int, int]]:
    """Every (source, target) pair that has a current label (the queue never offers them again)."""
    return {
        (s, t)
        for s, t in conn.execute(
            "SELECT source_product_id, target_product_id FROM prodmatch.labels WHERE is_current"
        )
    }


def current_label(conn: psycopg.Connection, source_product_id: int, target_product_id: int) -> str | None:
    row = conn.execute(
        "SELECT label FROM prodmatch.labels WHERE source_product_id = %s AND target_product_id = %s"
        " AND is_current",
        (source_product_id, target_product_id),
    ).fetchone()
    return row[0] if row else None


def export_labels(conn: psycopg.Connection, path: Path) -> int:
    """Write the current match / non-match labels as a gold CSV file; returns the number of pairs written.

    'unsure' answers are left out: a gold file knows only same (1) and different (0).
    """
    rows = gold_rows(conn)
    path = Path(path)
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(GOLD_HEADER)
            writer.writerows(rows)
    except OSError as error:
        raise ConfigError(f"{path}: cannot write ({error.strerror or error})") from None
    return len(rows)


def gold_rows(conn: psycopg.Connection) -> list[tuple[str, str, str, str, int]]:
    """The current same/different labels as gold rows (source_catalog, source_id, target_catalog, target_id,
    label 1/0): what `eval --labels` and matcher training read instead of a gold file."""
    rows = conn.execute(
        "SELECT source_catalog, source_external_id, target_catalog, target_external_id, label"
        " FROM prodmatch.labels_v WHERE label <> 'unsure'"
        " ORDER BY source_catalog, source_external_id, target_catalog, target_external_id"
    ).fetchall()
    return [(sc, si, tc, ti, _GOLD_VALUE[label]) for sc, si, tc, ti, label in rows]


def import_labels(conn: psycopg.Connection, path: Path, labelled_by: str = "import") -> ImportResult:
    """Load a gold CSV file (label 1/0, or match/non-match/unsure; no label column = all matches) as labels.

    Pairs naming unknown products are listed in `unknown`, not fatal; a malformed line is an error naming it.
    """
    path = Path(path)
    pairs = _read_pairs(path)
    unknown: list[str] = []
    imported = 0
    with conn.transaction():
        ids = _product_ids(conn, pairs)
        for line, source_catalog, source_id, target_catalog, target_id, label in pairs:
            source = ids.get((source_catalog, source_id))
            target = ids.get((target_catalog, target_id))
            if source is None or target is None:
                missing = [
                    f"{c}:{x}"
                    for c, x, found in (
                        (source_catalog, source_id, source),
                        (target_catalog, target_id, target),
                    )
                    if found is None
                ]
                unknown.append(f"{path}:{line}: unknown product {', '.join(missing)}")
                continue
            if source == target:
                raise ConfigError(f"{path}:{line}: a product cannot be labelled against itself")
            conn.execute(
                "SELECT prodmatch.record_label(%s::bigint, %s::bigint, %s::text, %s::text)",
                (source, target, label, labelled_by),
            )
            imported += 1
    return ImportResult(file=str(path), imported=imported, unknown=unknown)


def _read_pairs(path: Path) -> list[tuple[int, str, str, str, str, str]]:
    """(line, source_catalog, source_id, target_catalog, target_id, label) per row of a gold CSV file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such labels file")
    required = GOLD_COLUMNS
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [(h or "").strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(GOLD_HEADER)}"
            )
        reader.fieldnames = header
        pairs = []
        for line, row in enumerate(reader, start=2):
            values = [(row.get(c) or "").strip() for c in required]
            raw_label = (row.get("label") or "").strip().lower()
            if not any(values) and not raw_label:
                continue
            if not all(values):
                raise ConfigError(f"{path}:{line}: empty field in {','.join(values)!r}")
            label = _FROM_GOLD.get(raw_label or "1")
            if label is None:
                raise ConfigError(
                    f"{path}:{line}: label must be 1 (same product), 0 (different), match, non-match or unsure,"
                    f" got {raw_label!r}"
                )
            pairs.append((line, *values, label))
    return pairs


def _product_ids(conn: psycopg.Connection, pairs: list[tuple]) -> dict[tuple[str, str], int]:
    refs = {(p[1], p[2]) for p in pairs} | {(p[3], p[4]) for p in pairs}
    catalogs, external_ids = [c for c, _ in refs], [x for _, x in refs]
    rows = conn.execute(
        "SELECT c.name, p.external_id, p.id FROM unnest(%s::text[], %s::text[]) AS ref(catalog, external_id)"
        " JOIN prodmatch.catalogs c ON c.name = ref.catalog"
        " JOIN prodmatch.products p ON p.catalog_id = c.id AND p.external_id = ref.external_id",
        (catalogs, external_ids),
    ).fetchall()
    return {(c, x): i for c, x, i in rows}
