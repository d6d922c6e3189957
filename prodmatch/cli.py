"""The `prodmatch` command line: a thin skin over the library.

Each command parses its options, opens the database, calls one library function and prints the result (text
for people on stdout, `--json` for programs; progress on stderr). A `ProdmatchError` becomes a one-line error
and exit code 1; a traceback means a bug.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from prodmatch import db
from prodmatch.config import Settings, load_settings
from prodmatch.errors import ProdmatchError


def _errors_as_click(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ProdmatchError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _settings() -> Settings:
    return click.get_current_context().find_object(Settings)


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@click.group()
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL with pgvector [env PRODMATCH_DATABASE_URL; default: the embedded server].",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the embedded database and other files [env PRODMATCH_HOME].",
)
@click.version_option(package_name="prodmatch")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, home: Path | None) -> None:
    """Match products across catalogues by image and text, with PostgreSQL + pgvector."""
    ctx.obj = load_settings(database_url=database_url, home=home)


# --- db ---------------------------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Create, migrate and inspect the database."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@_errors_as_click
def db_upgrade(revision: str) -> None:
    """Create or migrate the prodmatch schema (default: to the newest revision)."""
    reached = db.upgrade(_settings(), revision)
    click.echo(f"schema at revision {reached}")


@db_group.command("downgrade")
@click.argument("revision")
@_errors_as_click
def db_downgrade(revision: str) -> None:
    """Migrate the schema down to REVISION ("base" drops every prodmatch table)."""
    reached = db.downgrade(_settings(), revision)
    click.echo(f"schema at revision {reached or 'base'}")


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_errors_as_click
def db_status(as_json: bool) -> None:
    """Which database, server and pgvector versions, schema revision, row counts, embedding errors."""
    report = db.status(_settings())
    if as_json:
        _echo_json(report.to_dict())
        return
    kind = "embedded" if report.embedded else "external"
    click.echo(f"database:   {report.url} ({kind})")
    click.echo(f"server:     PostgreSQL {report.server_version}, pgvector {report.pgvector_version or '-'}")
    revision = report.schema_revision or "none (run: prodmatch db upgrade)"
    behind = "" if report.schema_revision == report.head_revision else f" (newest: {report.head_revision})"
    click.echo(f"schema:     {revision}{behind}")
    for table, count in report.row_counts.items():
        click.echo(f"  {table:<16}{count:>12,}")
    for model, counts in report.embedding_status.items():
        click.echo(f"model {model}: " + ", ".join(f"{s} {n:,}" for s, n in counts.items()))
    if report.recent_errors:
        click.echo("recent embedding errors:")
        for e in report.recent_errors:
            click.echo(
                f"  {e['catalog']}:{e['external_id']} [{e['model']}, {e['status']}, "
                f"attempts {e['attempts']}] {e['error']}"
            )


# --- ingest -----------------------------------------------------------------------------------------------


@main.command("ingest")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--catalog", required=True, help="Catalogue to load into (created if new).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: from the file.")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Read FIELD (external_id, title, description, brand, category, price, currency, image) "
    "from COLUMN. Repeatable.",
)
@click.option(
    "--images-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder that relative image paths start from (default: the file's folder).",
)
@click.option("--encoding", help="Text encoding, e.g. utf-8, cp1251 (default: detected).")
@click.option("--delimiter", help="CSV delimiter (default: detected among , ; tab |).")
@click.option(
    "--decimal-comma/--decimal-point",
    default=None,
    help="How to read a price like 1,234 (default: 4,99 is decimal, 12,500 is thousands).",
)
@click.option("--strict", is_flag=True, help="Load nothing and fail if any row is rejected.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, rejects included.")
@_errors_as_click
def ingest_command(
    file: Path,
    catalog: str,
    fmt: str | None,
    mappings: tuple[str, ...],
    images_root: Path | None,
    encoding: str | None,
    delimiter: str | None,
    decimal_comma: bool | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Load a catalogue FILE (CSV or JSONL, optionally gzipped) into a catalogue."""
    from prodmatch.ingest import IngestOptions, describe_reject, ingest_file

    if delimiter == "\\t" or (delimiter or "").lower() == "tab":
        delimiter = "\t"
    options = IngestOptions(
        format=fmt,
        mapping=_parse_mappings(mappings),
        images_root=images_root,
        encoding=encoding,
        delimiter=delimiter,
        decimal_comma=decimal_comma,
        strict=strict,
        progress=not as_json,
    )
    with db.connection(_settings()) as conn:
        result = ingest_file(conn, file, catalog, options)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(
            f"{result.file} -> {result.catalog}: {result.rows:,} rows, inserted {result.inserted:,}, "
            f"updated {result.updated:,}, unchanged {result.unchanged:,}, rejected {result.rejected:,} "
            f"({result.seconds:.1f} s)"
        )
        for reject in result.rejects[:20]:
            click.echo("  rejected " + describe_reject(reject), err=True)
        if result.rejected > 20:
            click.echo(
                f"  ... {result.rejected - 20} more in prodmatch.ingest_rejects "
                f"(ingest_run_id = {result.ingest_run_id})",
                err=True,
            )
    if result.loaded == 0:
        raise click.ClickException(f"{file}: nothing could be loaded")


def _parse_mappings(mappings: tuple[str, ...]) -> dict[str, str]:
    from prodmatch.ingest import ALIASES, FIELDS

    parsed: dict[str, str] = {}
    for item in mappings:
        field_name, sep, column = item.partition("=")
        field_name = ALIASES.get(field_name.strip().lower(), field_name.strip().lower())
        if not sep or not column.strip():
            raise click.BadParameter(f"{item!r}: expected FIELD=COLUMN", param_hint="--map")
        if field_name not in FIELDS:
            raise click.BadParameter(
                f"{item!r}: unknown field {field_name!r}; fields: {', '.join(FIELDS)}", param_hint="--map"
            )
        parsed[field_name] = column.strip()
    return parsed


if __name__ == "__main__":
    sys.exit(main())
