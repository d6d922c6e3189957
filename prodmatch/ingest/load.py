"""Read catalogue files, validate rows, COPY them into a staging table, upsert products, record rejects.

A file (CSV or JSONL, optionally gzipped, in UTF-8 or a legacy encoding) streams through in constant memory:
each row is validated in Python, written with COPY into a temporary staging table (bad rows too, with their
reason), and one set-based SQL statement upserts the good rows into `prodmatch.products` by (catalogue, external
id). Rows whose content did not change are left alone; changed rows are updated, which the triggers in
`sql/pending.sql` turn into pending embeddings. Bad rows land in `prodmatch.ingest_rejects` with file, line, field
and reason. Next on the data's path: `worker.py` embeds what is pending.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psycopg
from tqdm import tqdm

from prodmatch.errors import IngestError
from prodmatch.ingest.rows import STAGING_COLUMNS, StagedRow, read_rows
from prodmatch.ingest.sources import (
    WORKBOOKS,
    EncodingChanged,
    IngestOptions,
    _open_source,
    _Source,
    read_error,
    scan_encoding,
)
from prodmatch.store.catalogs import attribute_roles, ensure_catalog, set_attribute_roles
from prodmatch.store.distribute import is_citus

MAX_LISTED_REJECTS = 1000
# The product columns a StagedRow fills, after catalog_id, in StagedRow's order (external_id .. attributes).
PRODUCT_COLUMNS = (
    "catalog_id, external_id, title, description, brand, category, price, currency, image, attributes"
)
_FIRST_REJECT_FIELD = StagedRow._fields.index("reject_field")


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
    # field -> the column it was read from, where that column is named otherwise (`商品名称` as title)
    columns: dict[str, str] = field(default_factory=dict)
    # what the reader noticed about the file's layout (a header below a title block, the sheet it read, no id)
    notes: list[str] = field(default_factory=list)
    sections: int = 0  # a price list's section rows (not products, not in `rows`): their products' category

    @property
    def loaded(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self, *, listed: int = 20) -> str:
        """The summary line, then (for stderr) why rows were rejected, at most `listed` of them."""
        lines = [
            f"{self.file} -> {self.catalog}: {self.rows:,} rows, inserted {self.inserted:,}, "
            f"updated {self.updated:,}, unchanged {self.unchanged:,}, rejected {self.rejected:,}"
            + (f", deleted {self.deleted:,}" if self.deleted else "")
            + f" ({self.seconds:.1f} s)"
        ]
        if self.columns:
            read = ", ".join(f"{column!r} as {name}" for name, column in self.columns.items())
            lines.append(f"  read {read} (--map to choose otherwise)")
        lines += [f"  {note}" for note in self.notes]
        if self.prune_skipped:
            lines.append(f"  not pruned: {self.prune_skipped}")
        lines += ["  rejected " + describe_reject(reject) for reject in self.rejects[:listed]]
        if self.rejected > listed:
            lines.append(
                f"  ... {self.rejected - listed} more in prodmatch.ingest_rejects (ingest_run_id = {self.ingest_run_id})"
            )
        return "\n".join(lines)


def ingest_file(
    conn: psycopg.Connection, path: str | Path, catalog: str, options: IngestOptions | None = None
) -> IngestResult:
    """Load one catalogue file into `catalog` (created if new) in one transaction."""
    options = options or IngestOptions()
    started = time.perf_counter()
    path = Path(path)
    source = _open_source(path, options)
    try:
        with conn.transaction():
            catalog_id = ensure_catalog(conn, catalog)
            # One ingest per catalogue at a time (the upsert may take the fast path for a new catalogue).
            # NO KEY UPDATE, not UPDATE: an application's product INSERT takes KEY SHARE on this row for
            # its foreign key, and must not wait for the whole ingest.
            conn.execute("SELECT 1 FROM prodmatch.catalogs WHERE id = %s FOR NO KEY UPDATE", (catalog_id,))
            options = _with_catalog_roles(conn, catalog_id, options)
            _create_staging(conn)
            source, rows, inserted = _copy_new_catalog(conn, source, options, catalog_id)
            if rows is None:  # the general path: every row through staging, then one upsert
                source, rows = _copy_whole_file(conn, source, options, _copy_to_staging)
            run_id = _start_run(conn, catalog_id, source, options)
            if inserted is None:
                _reject_duplicates(conn)
            rejected = _store_rejects(conn, run_id, str(path))
            if inserted is None:
                inserted, updated = _upsert(conn, catalog_id)
            else:
                updated = 0
            unchanged = rows - rejected - inserted - updated
            deleted, prune_skipped = 0, None
            if options.prune and source.row_ids:
                prune_skipped = (
                    "the file has no id column: rows named by their position cannot tell a removed product "
                    "from a moved one"
                )
            elif options.prune:
                deleted, prune_skipped = _prune(conn, catalog_id, rows, options)
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
        columns=dict(source.aliased),
        notes=list(source.notes),
        sections=source.sections,
    )


def list_rejects(conn: psycopg.Connection, run_id: int, limit: int = MAX_LISTED_REJECTS) -> list[Reject]:
    """The rejects of one ingest run, in file order."""
    rows = conn.execute(
        "SELECT file, line, field, reason, external_id, raw FROM prodmatch.ingest_rejects"
        " WHERE ingest_run_id = %s ORDER BY line LIMIT %s",
        (run_id, limit),
    ).fetchall()
    return [Reject(*row) for row in rows]


# --- reading files ---------------------------------------------------------------------------------------


class _StrictRollback(Exception):
    pass


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


def _copy_whole_file(conn: psycopg.Connection, source: _Source, options: IngestOptions, copy: Callable):
    """`copy(conn, source, options)` every row; re-read the file once if it turns out not to be UTF-8 after all.

    Returns the source actually read (the caller closes it) and what `copy` returned.
    """
    try:
        with conn.transaction():  # a savepoint: a restart discards the rows copied so far
            return source, copy(conn, source, options)
    except EncodingChanged:
        verdict = scan_encoding(source.path)
        source.close()
        source = _open_source(source.path, options, encoding=verdict.encoding)
        try:
            with conn.transaction():
                return source, copy(conn, source, options)
        except BaseException:
            source.close()
            raise


def _copy_new_catalog(
    conn: psycopg.Connection, source: _Source, options: IngestOptions, catalog_id: int
) -> tuple[_Source, int | None, int | None]:
    """A first load of a catalogue: COPY the good rows straight into `products`, the rejects into staging.

    Returns (source, rows, inserted), or (source, None, None) when the general path must load the file: the
    catalogue already has products, `prune` was asked, the database is Citus, or the direct COPY gave up (a
    duplicate external id or an application's row with the same id raises a unique violation, or there were
    more rejects than this path keeps in memory). Giving up rolls the savepoint back and reopens the file, so
    nothing of the attempt remains; a file of fresh, unique rows skips the staging table and the INSERT from it
    (about half the time of an ingest). The statement triggers fire on COPY as on INSERT (pending embeddings).
    """
    if options.prune or is_citus(conn) or _has_products(conn, catalog_id):
        return source, None, None
    try:
        source, (rows, inserted) = _copy_whole_file(
            conn, source, options, lambda c, s, o: _copy_direct(c, s, o, catalog_id)
        )
        return source, rows, inserted
    except (psycopg.errors.UniqueViolation, _TooManyRejects):
        source.close()
        return _open_source(source.path, options), None, None


def _with_catalog_roles(conn: psycopg.Connection, catalog_id: int, options: IngestOptions) -> IngestOptions:
    """Store the options' attribute roles with the catalogue; the options with all the catalogue's roles."""
    if options.attribute_roles:
        set_attribute_roles(conn, catalog_id, options.attribute_roles)
    return replace(options, attribute_roles=attribute_roles(conn, catalog_id))


def _copy_to_staging(conn: psycopg.Connection, source: _Source, options: IngestOptions) -> int:
    try:
        return _copy_rows(conn, source, options)
    except (EOFError, zlib.error, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise read_error(source.path, exc) from exc


def _copy_rows(conn: psycopg.Connection, source: _Source, options: IngestOptions) -> int:
    base_dir = str((options.images_root or source.path.parent).expanduser().resolve())
    rows = read_rows(source, options, base_dir)
    count = 0
    with _progress(source, options) as tick:
        with conn.cursor().copy(f"COPY ingest_staging ({STAGING_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
                if count % 2000 == 0:
                    tick(count)
        tick(count)
    return count


# The most rejects the direct path holds in memory until its COPY ends; a file with more takes the general path.
MAX_HELD_REJECTS = 10_000


class _TooManyRejects(Exception):
    pass


def _copy_direct(
    conn: psycopg.Connection, source: _Source, options: IngestOptions, catalog_id: int
) -> tuple[int, int]:
    """COPY good rows into `products` and then the rejects into staging; (rows, inserted)."""
    try:
        return _copy_direct_rows(conn, source, options, catalog_id)
    except (EOFError, zlib.error, OSError) as exc:
        raise read_error(source.path, exc) from exc


def _copy_direct_rows(
    conn: psycopg.Connection, source: _Source, options: IngestOptions, catalog_id: int
) -> tuple[int, int]:
    base_dir = str((options.images_root or source.path.parent).expanduser().resolve())
    count = inserted = 0
    rejects: list[StagedRow] = []
    with _progress(source, options) as tick:
        with conn.cursor().copy(f"COPY prodmatch.products ({PRODUCT_COLUMNS}) FROM STDIN") as copy:
            for row in read_rows(source, options, base_dir):
                count += 1
                if row.reject_reason is None:
                    copy.write_row((catalog_id, *row[1:_FIRST_REJECT_FIELD]))
                    inserted += 1
                else:
                    rejects.append(row)
                    if len(rejects) > MAX_HELD_REJECTS:
                        raise _TooManyRejects
                if count % 2000 == 0:
                    tick(count)
        tick(count)
    if rejects:
        with conn.cursor().copy(f"COPY ingest_staging ({STAGING_COLUMNS}) FROM STDIN") as copy:
            for row in rejects:
                copy.write_row(row)
    return count, inserted


@contextlib.contextmanager
def _progress(source: _Source, options: IngestOptions) -> Iterator[Callable[[int], None]]:
    """A progress bar over the file's bytes (a workbook's rows); yields `tick(rows so far)`."""
    bar = tqdm(
        total=source.size,
        unit="row" if source.format in WORKBOOKS else "B",
        unit_scale=True,
        desc=f"ingest {source.path.name}",
        disable=not options.progress,
        file=None,
    )
    started = time.perf_counter()

    def tick(rows: int) -> None:
        bar.total = source.size  # a workbook's row count is known once its sheet is open
        bar.update(source.position() - bar.n)
        bar.set_postfix(rows=rows, rows_s=int(rows / max(time.perf_counter() - started, 1e-9)))

    with bar:
        yield tick


def _has_products(conn: psycopg.Connection, catalog_id: int) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM prodmatch.products WHERE catalog_id = %s)", (catalog_id,)
    ).fetchone()[0]


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
            ON CONFLICT (catalog_id, external_id) DO UPDATE
               SET title = EXCLUDED.title, description = EXCLUDED.description, brand = EXCLUDED.brand,
                   category = EXCLUDED.category, price = EXCLUDED.price, currency = EXCLUDED.currency,
                   image = EXCLUDED.image, attributes = EXCLUDED.attributes
            """,
            (catalog_id,),
        )
        # An application may add rows while the ingest runs (the catalogue row is not locked against it);
        # the file's values then win, and such a row counts as inserted here.
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


def _prune(
    conn: psycopg.Connection, catalog_id: int, rows: int, options: IngestOptions
) -> tuple[int, str | None]:
    """Delete the catalogue's products whose external id no row of the file has: (deleted, why skipped).

    A rejected row still keeps its product (its id is in the file; only its new values were bad). Nothing is
    deleted when the file has no rows, when some row's id could not be read (a broken line may be any
    product), or when more than `options.prune_max` of the catalogue would go (a truncated or wrong file)
    unless `options.force`: deleting then could remove products the file does list.
    """
    if rows == 0:
        return 0, "the file has no rows"
    unreadable = conn.execute(
        "SELECT count(*), min(line) FROM ingest_staging WHERE external_id IS NULL OR external_id = ''"
    ).fetchone()
    if unreadable[0]:
        return 0, f"{unreadable[0]} row(s) have no readable external_id (first on line {unreadable[1]})"
    doomed, total = conn.execute(
        """
        SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM ingest_staging s
                                                   WHERE s.external_id = p.external_id)),
               count(*)
          FROM prodmatch.products p WHERE p.catalog_id = %s
        """,
        (catalog_id,),
    ).fetchone()
    if doomed and doomed > options.prune_max * total and not options.force:
        return 0, (
            f"it would delete {doomed:,} of {total:,} products ({doomed / total:.0%}), more than prune_max "
            f"{options.prune_max:.0%}; is the file complete? Re-run with --force (or a higher --prune-max) "
            "to delete them"
        )
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
        # The folder local image paths were resolved against and must stay inside (the worker reads it back).
        "images_base": str((options.images_root or source.path.parent).expanduser().resolve()),
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
