"""The `prodmatch` command line: a thin skin over the library.

Each command parses its options, opens the database, calls one library function and prints the result (text
for people on stdout, `--json` for programs; progress on stderr). A `ProdmatchError` becomes a one-line error
and exit code 1; a traceback means a bug.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from pathlib import Path

import click
import psycopg

from prodmatch import store
from prodmatch.config import Settings, load_settings
from prodmatch.errors import ProdmatchError

# What a command meets on a database whose prodmatch schema is missing or older than this prodmatch
_SCHEMA_ERRORS = (
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
)


class _Command(click.Command):
    """A command whose ProdmatchError, or a database connection lost mid-command, becomes a one-line error
    and exit code 1 (no traceback). Before a command outside `db`, the embedded database's schema is brought
    to this prodmatch's newest revision (`store.ensure_embedded_schema`); on a configured server a missing or
    older schema is a one-line error that names `prodmatch db upgrade`."""

    def invoke(self, ctx: click.Context):
        try:
            _prepare_schema(ctx)
            return super().invoke(ctx)
        except ProdmatchError as exc:
            raise click.ClickException(str(exc)) from exc
        except psycopg.OperationalError as exc:
            if not _connection_lost(exc):
                raise
            raise click.ClickException(_lost_connection_message(exc)) from exc
        except _SCHEMA_ERRORS as exc:
            settings = ctx.find_object(Settings)
            hint = store.schema_hint(settings) if settings is not None else None
            if hint is None:
                raise
            raise click.ClickException(hint) from exc


def _prepare_schema(ctx: click.Context) -> None:
    settings = ctx.find_object(Settings)
    if settings is None or settings.database_url or ctx.command_path.split()[1:2] == ["db"]:
        return
    note = store.ensure_embedded_schema(settings)
    if note:
        click.echo(note, err=True)


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """A restart, failover, network cut or terminated backend (not a lock or statement timeout)."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _lost_connection_message(exc: BaseException) -> str:
    reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return (
        f"lost the database connection ({reason}); what this command had not committed was rolled back, "
        "so nothing is half-written: run it again"
    )


class _Group(click.Group):
    """A group whose commands and sub-groups all turn ProdmatchError into a clean error."""

    command_class = _Command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ProdmatchError as exc:
            raise click.ClickException(str(exc)) from exc


_Group.group_class = _Group


def _settings() -> Settings:
    return click.get_current_context().find_object(Settings)


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_jsonable))


def _jsonable(value: object) -> object:
    """Reports (anything with to_dict, or a dataclass) and other values json does not know."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _show(report: object, as_json: bool) -> None:
    """--json: the machine form; otherwise the report's own text."""
    if as_json:
        _echo_json(report)
    else:
        click.echo(report.to_text())


# Options shared by several commands, declared once (as sqlite-utils does).
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
model_option = click.option("--model", help="Model name (default: the only registered one).")


def space_option(default: str | None = "fused", *, lexical: bool = True, help: str | None = None):
    from prodmatch.store.models import SPACES  # the one list of vector spaces

    choices = [*SPACES, "lexical"] if lexical else list(SPACES)
    return click.option(
        "--space", type=click.Choice(choices), default=default, show_default=default is not None, help=help
    )


def k_option(default: int, maximum: int = 1000, help: str | None = None):
    return click.option("--k", type=click.IntRange(1, maximum), default=default, show_default=True, help=help)


@click.group(cls=_Group)
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
    # After a lost connection psycopg also logs that it could not end a COPY ("error ignored terminating
    # <Copy>"); the command's one-line error already says what happened.
    logging.getLogger("psycopg").addFilter(_NotIgnoredErrors())


class _NotIgnoredErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("error ignored")


# Commands import the library inside the function: `prodmatch --help` and fast commands then start without
# loading torch and transformers (seconds on a small machine).

# --- db ---------------------------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Create, migrate and inspect the database."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create or migrate the prodmatch schema (default: to the newest revision).

    \b
    Example: prodmatch db upgrade
    """
    reached = store.upgrade(_settings(), revision)
    click.echo(f"schema at revision {reached}")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the schema down to REVISION ("base" drops every prodmatch table).

    \b
    Example: prodmatch db downgrade base
    """
    reached = store.downgrade(_settings(), revision)
    click.echo(f"schema at revision {reached or 'base'}")


@db_group.command("status")
@json_option
def db_status(as_json: bool) -> None:
    """Which database, server and pgvector versions, schema revision, row counts, embedding errors.

    \b
    Example: prodmatch db status --json
    """
    _show(store.status(_settings()), as_json)


@db_group.command("shell", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def db_shell(psql_args: tuple[str, ...]) -> None:
    """Open psql on the prodmatch database (the embedded one stays up while psql runs).

    Extra arguments go to psql.

    \b
    Example: prodmatch db shell -c "SELECT * FROM prodmatch.matches_v LIMIT 5"
    """
    import subprocess

    argv, env = store.psql_command(_settings(), list(psql_args))  # the password travels in env, not argv
    raise SystemExit(subprocess.call(argv, env=env))


@db_group.command("grant-reader")
@click.argument("role")
def db_grant_reader(role: str) -> None:
    """Give database ROLE read-only use of the prodmatch views, tables and functions.

    \b
    Example: prodmatch db grant-reader analyst
    """
    with store.connection(_settings()) as conn:
        store.grant_reader(conn, role)
    click.echo(f"{role} may now read prodmatch (SELECT on tables and views, EXECUTE on functions)")


# --- ingest -----------------------------------------------------------------------------------------------


@main.command("ingest")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--catalog", required=True, help="Catalogue to load into (created if new).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "json", "xlsx", "xls"]),
    help="Default: from the file.",
)
@click.option(
    "--sheet",
    help="A workbook's sheet to read (default: the active sheet, or else the first sheet with a title column).",
)
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
@click.option(
    "--prune",
    is_flag=True,
    help="The file is a full export: delete the catalogue's products it no longer lists (with their vectors "
    "and matches). Skipped, with a warning, when a row's id cannot be read or the file looks cut off.",
)
@click.option(
    "--prune-max",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="With --prune: refuse to delete more than this share of the catalogue.",
)
@click.option("--force", is_flag=True, help="With --prune: delete past --prune-max.")
@click.option(
    "--attribute-role",
    "attribute_roles",
    multiple=True,
    metavar="KEY=ROLE",
    help="Attribute KEY has ROLE (brand, code, gtin, identifying, or none to ignore it) in this catalogue, "
    "on top of the built-in keys (English, Russian, Chinese, German, French, Spanish, Italian, Portuguese, "
    "Japanese); stored with the catalogue (see 'prodmatch catalog roles'). Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, rejects included.")
def ingest_command(
    file: Path,
    catalog: str,
    fmt: str | None,
    sheet: str | None,
    mappings: tuple[str, ...],
    images_root: Path | None,
    encoding: str | None,
    delimiter: str | None,
    decimal_comma: bool | None,
    strict: bool,
    prune: bool,
    prune_max: float,
    force: bool,
    attribute_roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Load a catalogue FILE (CSV, JSON lines or a JSON document, optionally gzipped, or an .xlsx / .xls workbook).

    A table's header may sit below a price list's title block (it is the first row naming a title column),
    and a workbook's products on any sheet; a table without an id column names its rows by their line (row-7).

    Columns named as a field in other words or languages are read as it (Наименование, 商品名称, Produktname,
    name -> title; Цена, 价格, Preis -> price; the summary says which; --map wins). Columns beyond the fields
    become attributes. A row without a brand (no brand column, or an
    empty one) takes its brand from an attribute whose role is brand (品牌, Marke, Marque, производитель...),
    as written; values that mean "no brand" (other/其他, 无品牌, n/a, без бренда, Generic) leave it empty.

    \b
    Example: prodmatch ingest shop.csv --catalog shop
             prodmatch ingest haendler.csv --catalog haendler --attribute-role 'Teile-ID=code'
    """
    from prodmatch.ingest.load import ingest_file
    from prodmatch.ingest.sources import IngestOptions
    from prodmatch.roles import parse_assignment

    if delimiter == "\\t" or (delimiter or "").lower() == "tab":
        delimiter = "\t"
    options = IngestOptions(
        format=fmt,
        sheet=sheet,
        mapping=_parse_mappings(mappings),
        images_root=images_root,
        encoding=encoding,
        delimiter=delimiter,
        decimal_comma=decimal_comma,
        strict=strict,
        prune=prune,
        prune_max=prune_max,
        force=force,
        progress=not as_json,
        attribute_roles=dict(parse_assignment(text) for text in attribute_roles),
    )
    with store.connection(_settings()) as conn:
        result = ingest_file(conn, file, catalog, options)
    if as_json:
        _echo_json(result)
    else:
        summary, *details = result.to_text().split("\n")
        click.echo(summary)
        for line in details:
            click.echo(line, err=True)
    if result.loaded == 0:
        raise click.ClickException(f"{file}: nothing could be loaded")


# --- catalogues -------------------------------------------------------------------------------------------


@main.group("catalog")
def catalog_group() -> None:
    """List catalogues and set which attribute keys carry a brand, a code, a GTIN or an identifying value."""


@catalog_group.command("list")
@json_option
def catalog_list(as_json: bool) -> None:
    """Every catalogue with its product count and the attribute roles it sets itself.

    \b
    Example: prodmatch catalog list --json
    """
    from prodmatch.store.catalogs import list_catalogs

    with store.connection(_settings()) as conn:
        _show(list_catalogs(conn), as_json)


@catalog_group.command("roles")
@click.argument("name")
@click.option(
    "--set",
    "assign",
    multiple=True,
    metavar="KEY=ROLE",
    help="Attribute KEY has ROLE (brand, code, gtin, identifying; none: ignore a built-in key). Repeatable.",
)
@click.option("--unset", multiple=True, metavar="KEY", help="Back to KEY's built-in role. Repeatable.")
@click.option(
    "--learn-from",
    metavar="TARGET",
    help="Suggest roles from the likely matches between NAME and catalogue TARGET, with the evidence.",
)
@click.option("--apply", is_flag=True, help="With --learn-from: store the suggestions with both catalogues.")
@json_option
def catalog_roles_command(
    name: str,
    assign: tuple[str, ...],
    unset: tuple[str, ...],
    learn_from: str | None,
    apply: bool,
    as_json: bool,
) -> None:
    """Show (or change) the attribute roles of catalogue NAME: each key its products fill in, how many, its
    built-in role and the catalogue's own.

    Roles: brand (品牌, Marke, Marque, бренд...), code (model number, MPN, article, SKU: 货号, Artikelnummer,
    Référence, артикул...), gtin (EAN/UPC/ISBN), identifying (colour, size, material, capacity, weight...),
    none (noise: season, sales channel, URLs, stock). Keys compare case-, accent-, space- and
    punctuation-blind. Matching, codes and the lexical space read attributes by role; changing roles makes the
    catalogue's lexical rows stale (redone at the next embed or link).

    \b
    Example: prodmatch catalog roles haendler --set 'Teile-ID=code' --set 'Saison=none'
             prodmatch catalog roles haendler --learn-from shop --apply
    """
    from prodmatch.roles import parse_assignment
    from prodmatch.store.catalogs import catalog_roles, set_attribute_roles

    if apply and not learn_from:
        raise click.UsageError("--apply goes with --learn-from")
    with store.connection(_settings()) as conn:
        if learn_from:
            from prodmatch.match.learn_roles import learn_roles

            _show(learn_roles(conn, name, learn_from, apply=apply), as_json)
            return
        if assign or unset:
            set_attribute_roles(conn, name, dict(parse_assignment(text) for text in assign), unset)
        _show(catalog_roles(conn, name), as_json)


# --- models -----------------------------------------------------------------------------------------------


@main.group("models")
def models_group() -> None:
    """Register, list and drop embedding models (CLIP, SigLIP, ... through Hugging Face transformers)."""


@models_group.command("add")
@click.argument("model", required=False)
@click.option("--name", help="Name to refer to it by (default: from MODEL).")
@click.option("--revision", help="Hub revision (branch, tag or commit).")
@click.option("--fusion", type=click.Choice(["mean", "concat"]), default="mean", show_default=True)
@click.option(
    "--image-weight", type=float, default=0.5, show_default=True, help="Weight w of the image vector."
)
@click.option(
    "--text-template",
    default=None,
    help='Product text to embed, e.g. "{brand} {title} {attributes.colour}" [default: "{brand} {title}"].',
)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None)
@click.option(
    "--storage",
    type=click.Choice(["halfvec", "vector"]),
    default="halfvec",
    show_default=True,
    help="Store vectors as 2-byte halfvec (half the size, same recall on our benchmarks) or 4-byte vector.",
)
@json_option
def models_add(
    model: str | None,
    name: str | None,
    revision: str | None,
    fusion: str,
    image_weight: float,
    text_template: str | None,
    precision: str | None,
    storage: str,
    as_json: bool,
) -> None:
    """Register MODEL (a hub id, a local folder or an alias; default openai/clip-vit-base-patch32) and queue
    every product.

    \b
    Aliases (docs/models.md says how to choose):
      clip          openai/clip-vit-base-patch32     English only, fastest
      multilingual  google/siglip2-base-patch16-256  Russian, Chinese and 100+ other languages

    \b
    Offline, download on a machine with internet and pass the folder:
      huggingface-cli download google/siglip2-base-patch16-256 --local-dir DIR

    \b
    Example: prodmatch models add multilingual
             prodmatch models add openai/clip-vit-base-patch32 --name clip
    """
    from prodmatch.embed.registry import add_model
    from prodmatch.embed.text import DEFAULT_TEXT_TEMPLATE

    settings = _settings()
    with store.connection(settings) as conn:
        registered = add_model(
            conn,
            model or settings.default_model,
            name=name,
            revision=revision,
            fusion=fusion,
            image_weight=image_weight,
            text_template=text_template or DEFAULT_TEXT_TEMPLATE,
            precision=precision or settings.precision,
            storage=storage,
        )
    if as_json:
        _echo_json(registered)
    else:
        click.echo(
            f"registered {registered.name} ({registered.family}, {registered.dimension} dims {registered.storage}, fusion "
            f"{registered.fusion} w={registered.image_weight}, text {registered.text_template!r}); "
            "run: prodmatch embed"
        )


@models_group.command("list")
@json_option
def models_list(as_json: bool) -> None:
    """Registered models and how many products each has embedded.

    \b
    Example: prodmatch models list
    """
    from prodmatch.store.models import list_models

    with store.connection(_settings()) as conn:
        stats = list_models(conn)
    if as_json:
        _echo_json(stats)
    elif not stats:
        click.echo("no models registered; add one with: prodmatch models add [MODEL]")
    for s in stats if not as_json else ():
        click.echo(s.to_text())


@models_group.command("drop")
@click.argument("name")
def models_drop(name: str) -> None:
    """Remove model NAME with its embeddings and indexes.

    \b
    Example: prodmatch models drop clip
    """
    from prodmatch.store.models import drop_model

    with store.connection(_settings()) as conn:
        drop_model(conn, name)
    click.echo(f"dropped {name}")


# --- embed ------------------------------------------------------------------------------------------------


@main.command("embed")
@click.option("--model", help="Model name (default: every registered model).")
@click.option("--catalog", help="Only this catalogue.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    default=32,
    show_default=True,
    help="Products per model call. Products with images are claimed two batches ahead of the one being embedded"
    " (their images load meanwhile); products without images 8 batches at a time, embedded in groups of similar"
    " text length.",
)
@click.option("--limit", type=click.IntRange(1), help="Stop after this many products.")
@click.option("--watch", is_flag=True, help="Keep running; wake up when products are added or changed.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None)
@click.option("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: CUDA when present).")
@click.option("--image-threads", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--retry-errors", is_flag=True, help="Re-queue products whose embedding failed before.")
@click.option(
    "--image-allow",
    metavar="HOSTS",
    help="Internal image hosts or networks to allow, e.g. '10.1.0.0/16, cdn.internal' [env PRODMATCH_IMAGE_ALLOW; "
    "default: public addresses only].",
)
@click.option(
    "--images-root",
    "images_roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Another folder local images may be read from (besides the catalogues' ingest folders) "
    "[env PRODMATCH_IMAGE_ROOTS]. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
def embed_command(
    model: str | None,
    catalog: str | None,
    batch_size: int,
    limit: int | None,
    watch: bool,
    precision: str | None,
    device: str | None,
    image_threads: int,
    retry_errors: bool,
    image_allow: str | None,
    images_roots: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Embed pending products (image, text and fused vectors) and bring the lexical space up to date.

    \b
    Example: prodmatch embed --watch
    """
    import signal
    import threading

    from prodmatch.embed.images import ImageLimits
    from prodmatch.embed.lexical_refresh import refresh_lexical
    from prodmatch.embed.netguard import parse_allow_list
    from prodmatch.embed.worker import EmbedOptions, connect_patiently, embed

    settings = _settings()
    allow = parse_allow_list(image_allow if image_allow is not None else settings.image_allow)
    options = EmbedOptions(
        model=model,
        catalog=catalog,
        batch_size=batch_size,
        limit=limit,
        watch=watch,
        precision=precision or settings.precision,
        device=device,
        image_threads=image_threads,
        retry_errors=retry_errors,
        image_limits=ImageLimits(
            max_side=512, allowed_networks=tuple(allow.networks), allowed_hosts=tuple(allow.hosts)
        ),
        image_roots=(*settings.image_roots, *(p.resolve() for p in images_roots)),
        progress=not as_json,
    )
    stop = threading.Event()

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        click.echo(
            f"\n{signal.Signals(signum).name}: finishing the current batch, releasing the rest", err=True
        )
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    conn = connect_patiently(settings, options, stop)  # a watcher waits for the server, or a free slot
    if conn is None:
        return
    with conn:
        lexical = refresh_lexical(conn, progress=not as_json)
        has_models = conn.execute("SELECT EXISTS (SELECT 1 FROM prodmatch.models)").fetchone()[0]
    summaries = embed(settings, options, stop=stop) if has_models or watch else []
    if as_json:
        _echo_json(summaries if len(summaries) != 1 else summaries[0])
        return
    click.echo(lexical.to_text(), err=True)
    for s in summaries:
        click.echo(s.to_text())
    if not has_models:
        click.echo("no model registered: only the lexical space is kept; add one with: prodmatch models add")


# --- matching ---------------------------------------------------------------------------------------------


@main.command("similar")
@click.argument("product")
@k_option(10)
@space_option(
    None,
    help="Space that ranks the candidates [default: fused; lexical when there is no model or it has random"
    " weights]. lexical needs no model.",
)
@model_option
@click.option("--in-catalog", help="Only candidates from this catalogue.")
@click.option("--other-catalog", is_flag=True, help="Only candidates from other catalogues.")
@click.option("--same-category", is_flag=True)
@click.option("--same-brand", is_flag=True)
@click.option("--min-price-ratio", type=float)
@click.option("--max-price-ratio", type=float)
@click.option("--unmatched-only", is_flag=True, help="Skip products already best-matched by a link run.")
@click.option("--ef-search", type=click.IntRange(1, 1000))
@json_option
def similar_command(
    product: str,
    k: int,
    space: str | None,
    model: str | None,
    in_catalog: str | None,
    other_catalog: bool,
    same_category: bool,
    same_brand: bool,
    min_price_ratio: float | None,
    max_price_ratio: float | None,
    unmatched_only: bool,
    ef_search: int | None,
    as_json: bool,
) -> None:
    """Products most similar to PRODUCT, given as CATALOG:EXTERNAL_ID (SQL: prodmatch.similar).

    \b
    Example: prodmatch similar shop:SKU-123 --in-catalog competitor --space lexical
    """
    from prodmatch import match

    catalog, external_id = store.parse_product_ref(product)
    with store.connection(_settings()) as conn:
        product_id = store.find_product(conn, catalog, external_id)
        asked_about = match.queried_product(conn, product_id)
        choice = match.default_space(conn, space, model)
        space = choice.space
        if space == "lexical":
            from prodmatch.embed.lexical_refresh import refresh_lexical

            refresh_lexical(conn)
            conn.commit()
        rows = match.similar(
            conn,
            product_id,
            k=k,
            space=space,
            model=model,
            in_catalog=in_catalog,
            other_catalog=other_catalog,
            same_category=same_category,
            same_brand=same_brand,
            min_price_ratio=min_price_ratio,
            max_price_ratio=max_price_ratio,
            unmatched_only=unmatched_only,
            ef_search=ef_search,
        )
    if choice.note:
        click.echo(choice.note, err=True)
    if as_json:
        _echo_json(rows)
        return
    click.echo(f"similar to {asked_about.to_text()}, by the {space} space:")
    click.echo(f"{'fused':>6} {'image':>6} {'text':>6} {'lexical':>6}  product")
    for r in rows:
        click.echo(r.to_text())


@main.command("search")
@click.argument("text")
@k_option(10)
@space_option(
    None,
    help="image: text-to-image search [default: image; lexical when there is no model or it has random weights].",
)
@model_option
@click.option("--in-catalog", help="Only products of this catalogue.")
@json_option
def search_command(
    text: str, k: int, space: str | None, model: str | None, in_catalog: str | None, as_json: bool
) -> None:
    """Products matching a TEXT query, embedded with the model's text tower (SQL: prodmatch.search).

    \b
    Example: prodmatch search "red running shoe" --space image
    """
    from prodmatch import match

    settings = _settings()
    with store.connection(settings) as conn:
        choice = match.default_space(conn, space, model, default="image")
        if choice.space == "lexical":
            from prodmatch.embed.lexical_refresh import refresh_lexical

            refresh_lexical(conn)
            conn.commit()
        hits = match.search(
            conn,
            text,
            k=k,
            space=choice.space,
            model=model,
            in_catalog=in_catalog,
            precision=settings.precision,
        )
    if choice.note:
        click.echo(choice.note, err=True)
    if as_json:
        _echo_json(hits)
        return
    for h in hits:
        click.echo(h.to_text())


@main.command("link")
@click.option("--source", required=True, help="Catalogue whose products get candidates.")
@click.option("--target", required=True, help="Catalogue the candidates come from.")
@k_option(5, 100, help="Candidates stored per source product.")
@click.option(
    "--threshold",
    type=float,
    help="Link on one space's cosine: keep pairs at least this similar (with --space alone: the model's saved one).",
)
@click.option(
    "--one-to-one", is_flag=True, help="Mutual assignment: no target used twice (greedy, best first)."
)
@click.option(
    "--clustered",
    is_flag=True,
    help="Marketplaces (many offers of a product): of a matcher's pairs over its threshold, accept only those"
    " whose two products the clustering of offers keeps together (what offers_of gives): no lookalike chains.",
)
@click.option(
    "--mode", type=click.Choice(["exact", "ann"]), help="Default: exact when the vectors fit in memory."
)
@space_option(None, help="Space to link on [default: the model's saved one, fused; lexical with no model].")
@model_option
@click.option(
    "--matcher",
    help="A learned matcher (prodmatch matcher train): hybrid candidates, match probabilities "
    "[default with no --threshold or --space: builtin, trained on public data, no label needed].",
)
@click.option("--ef-search", type=click.IntRange(1, 1000), help="HNSW search breadth for --mode ann.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the pairs (.csv or .jsonl)."
)
@click.option(
    "--watch",
    is_flag=True,
    help="Then keep the run current as products are added, changed or deleted, until Ctrl-C / SIGTERM.",
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="With --watch: look for changes this often even without a NOTIFY (deletions send none).",
)
@json_option
def link_command(
    source: str,
    target: str,
    k: int,
    threshold: float | None,
    one_to_one: bool,
    clustered: bool,
    mode: str | None,
    space: str | None,
    model: str | None,
    matcher: str | None,
    ef_search: int | None,
    out: Path | None,
    watch: bool,
    poll_seconds: float,
    as_json: bool,
) -> None:
    """Find every SOURCE product's best candidates in TARGET and store them as a match run.

    With no --matcher, --threshold, --space or --mode, the built-in matcher decides (no label and no neural
    model needed: lexical, codes, brand, price, numbers, attributes); labels from prodmatch review teach it your
    catalogues (matcher train --labels starts from it). --space / --threshold / --mode link on one space's cosine instead.

    With --watch the run is then kept current: the products that changed (and those whose candidates they
    change) are recomputed within seconds, so prodmatch.matches_v shows an application's new offer's matches.

    Every pair over the matcher's threshold is accepted, however many a product has (a marketplace's many
    offers); --one-to-one keeps one per product on each side, --clustered only the pairs the clustering of
    offers keeps together.

    \b
    Example: prodmatch link --source shop --target competitor --matcher shop-competitor --one-to-one
             prodmatch link --source shop --target marketplace --clustered
    """
    from prodmatch import match

    settings = _settings()
    # A watch is a service: it waits for the server, or for a free connection slot, before its first link.
    stop = _stop_on_signals("stopping the watch") if watch else None
    conn = store.connect_waiting(settings, stop) if watch else store.connect(settings)
    if conn is None:
        return
    with conn:
        result = match.link(
            conn,
            source,
            target,
            k=k,
            threshold=threshold,
            one_to_one=one_to_one,
            mode=mode,
            space=space,
            model=model,
            matcher=matcher,
            ef_search=ef_search,
            out=out,
            progress=not as_json,
            memory_budget_bytes=settings.memory_budget,
            clustered=clustered,
        )
    _show(result, as_json)
    if watch:
        from prodmatch.match.watch import watch_link

        def report(done) -> None:
            if done.rewritten_sources or done.deleted:
                click.echo(json.dumps(done.to_dict()) if as_json else done.to_text(), err=not as_json)

        summary = watch_link(settings, result.run_id, stop=stop, poll_seconds=poll_seconds, on_pass=report)
        click.echo(summary.to_text(), err=True)


def _stop_on_signals(message: str):
    """An Event set by the first SIGINT / SIGTERM (a second one interrupts at once)."""
    import signal
    import threading

    stop = threading.Event()

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        click.echo(f"\n{signal.Signals(signum).name}: {message}", err=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


@main.command("dedupe")
@click.option("--catalog", required=True)
@click.option(
    "--threshold",
    type=float,
    help="Cosine similarity that makes two products duplicates (with --matcher: a match probability).",
)
@space_option(None, lexical=False, help="[default: fused]")
@model_option
@k_option(20, help="Neighbours per product.")
@click.option(
    "--matcher",
    help="Decide with this matcher's probabilities over link's hybrid candidates "
    "[default with no --threshold: builtin].",
)
@json_option
def dedupe_command(
    catalog: str,
    threshold: float | None,
    space: str | None,
    model: str | None,
    k: int,
    matcher: str | None,
    as_json: bool,
) -> None:
    """Group duplicates inside one catalogue into clusters (every pair in a cluster passes the threshold).

    With no --threshold and no --matcher the built-in matcher decides, on the same evidence as link.

    \b
    Example: prodmatch dedupe --catalog shop
    Example: prodmatch dedupe --catalog shop --threshold 0.95 --space image
    """
    from prodmatch import match

    settings = _settings()
    with store.connection(settings) as conn:
        chosen = space or "fused"
        if matcher is None and threshold is not None:  # a cosine dedupe: its vectors must mean something
            choice = match.default_space(conn, space, model)
            if choice.reason:  # dedupe has no lexical path: do not cluster by vectors that mean nothing
                raise click.ClickException(
                    f"{choice.reason}, and dedupe has no lexical space: leave out --threshold (the built-in "
                    "matcher decides), register a real model (prodmatch models add), or pass --space fused to "
                    "cluster by these vectors anyway"
                )
            chosen = choice.space
        result = match.dedupe(
            conn,
            catalog,
            threshold,
            model=model,
            space=chosen,
            k=k,
            matcher=matcher,
            progress=not as_json,
            memory_budget_bytes=settings.memory_budget,
        )
    _show(result, as_json)


@main.command("explain")
@click.argument("source_product")
@click.argument("target_product")
@click.option("--matcher", help="Show the matcher's probability and each signal's contribution.")
@model_option
@json_option
def explain_command(
    source_product: str, target_product: str, matcher: str | None, model: str | None, as_json: bool
) -> None:
    """Every signal of one pair (CATALOG:ID CATALOG:ID) and what it contributes to the match probability.

    \b
    Example: prodmatch explain shop:SKU-1 competitor:C-77 --matcher shop-competitor
    """
    from prodmatch.match.explain import explain_pair

    with store.connection(_settings()) as conn:
        report = explain_pair(conn, source_product, target_product, matcher=matcher, model=model)
    _show(report, as_json)


@main.group("index")
def index_group() -> None:
    """Inspect the HNSW indexes."""


@index_group.command("check")
@model_option
@space_option("fused", lexical=False)
@click.option("--sample", type=click.IntRange(1, 100000), default=100, show_default=True)
@k_option(10)
@json_option
def index_check_command(model: str | None, space: str, sample: int, k: int, as_json: bool) -> None:
    """Recall@k of the HNSW index against exact search, and the ef_search that reaches 0.99.

    \b
    Example: prodmatch index check --space fused --sample 200
    """
    from prodmatch import match

    settings = _settings()
    with store.connection(settings) as conn:
        report = match.check_index(
            conn, model=model, space=space, sample=sample, k=k, memory_budget_bytes=settings.memory_budget
        )
    _show(report, as_json)


# --- clusters of offers ------------------------------------------------------------------------------------


@main.group("clusters")
def clusters_group() -> None:
    """Clusters of offers: one product as sold across catalogues, from link and dedupe runs, with stable ids."""


@clusters_group.command("build")
@click.option(
    "--run",
    "runs",
    type=int,
    multiple=True,
    help="Cluster these runs (repeat; default: the newest link run per catalogue pair and dedupe run per catalogue).",
)
@json_option
def clusters_build_command(runs: tuple[int, ...], as_json: bool) -> None:
    """Join accepted pairs and duplicates into clusters; a cluster that still exists keeps its id.

    \b
    Example: prodmatch clusters build
             prodmatch clusters build --run 12 --run 14
    """
    from prodmatch.match.clusters import build_clusters

    with store.connection(_settings()) as conn:
        result = build_clusters(conn, list(runs) if runs else None)
    _show(result, as_json)


@clusters_group.command("show")
@click.argument("product")
@json_option
def clusters_show_command(product: str, as_json: bool) -> None:
    """Every offer of PRODUCT (CATALOG:EXTERNAL_ID): its cluster's products with their prices and shops.

    \b
    Example: prodmatch clusters show shop:SKU-123
    """
    from prodmatch.match.clusters import offers_of

    with store.connection(_settings()) as conn:
        result = offers_of(conn, product)
    _show(result, as_json)


# --- learned matchers -------------------------------------------------------------------------------------


@main.group("matcher")
def matcher_group() -> None:
    """Train, list and drop learned matchers (match probability from every signal of a pair)."""


@matcher_group.command("train")
@click.option(
    "--gold",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gold CSV: source_catalog,source_id,target_catalog,target_id[,label]; it must list EVERY true target "
    "of the sources it names (their other candidates count as non-matches).",
)
@click.option(
    "--labels", is_flag=True, help="Train on the labels of prodmatch.labels instead of a --gold file."
)
@click.option("--source", required=True, help="Catalogue of the gold pairs' sources.")
@click.option("--target", required=True, help="Catalogue of the gold pairs' targets.")
@click.option("--model", help="Also use this model's image / text / fused vectors (default: none).")
@click.option("--name", help="Name to store it under (default: SOURCE-TARGET).")
@k_option(10, 100, help="Candidates per source and per candidate source.")
@click.option(
    "--min-precision",
    type=click.FloatRange(0, 1),
    help="Pick the threshold with the most recall at this precision (default: best F1).",
)
@click.option(
    "--prior",
    metavar="MATCHER|none",
    help="Start from this stored matcher's view of every candidate pair and learn the labels as corrections "
    "(with a few dozen labels far better than a matcher trained on them alone, unless the other catalogue holds "
    "lookalikes of products without a twin: docs/builtin_matcher.md). Default: builtin with --labels, none "
    "with --gold.",
)
@json_option
def matcher_train(
    gold: Path | None,
    labels: bool,
    source: str,
    target: str,
    model: str | None,
    name: str | None,
    k: int,
    min_precision: float | None,
    prior: str | None,
    as_json: bool,
) -> None:
    """Train a matcher on gold pairs (cross-validated, calibrated) and store it in the database.

    \b
    Example: prodmatch matcher train --gold gold.csv --source shop --target competitor
    Example: prodmatch matcher train --labels --prior none --source shop --target competitor
    """
    from prodmatch.quality.matchers import default_prior, train_and_store

    with store.connection(_settings()) as conn, _gold_or_labels(conn, gold, labels) as gold_file:
        report = train_and_store(
            conn,
            gold_file,
            source,
            target,
            model=model,
            name=name,
            k=k,
            min_precision=min_precision,
            progress=not as_json,
            labelled_only=labels,  # labels name single pairs; their sources' other candidates are unknown
            prior=default_prior(labels) if prior is None else (None if prior.lower() == "none" else prior),
        )
    _show(report, as_json)


@matcher_group.command("list")
@json_option
def matcher_list(as_json: bool) -> None:
    """Stored matchers with their kind, threshold and held-out F1.

    \b
    Example: prodmatch matcher list --json
    """
    from prodmatch.store.matchers import list_matchers

    with store.connection(_settings()) as conn:
        rows = list_matchers(conn)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no matchers; train one with: prodmatch matcher train --gold FILE --source A --target B")
    for r in rows:
        f1 = r.metrics.get("out_of_fold_f1")
        click.echo(
            f"{r.name}: {r.kind} over {len(r.features)} features, model {r.model or '-'}, threshold "
            f"{r.threshold:.3f}, held-out F1 {f1 if f1 is None else round(f1, 3)}, trained {r.created_at:%Y-%m-%d %H:%M}"
        )


@matcher_group.command("drop")
@click.argument("name")
def matcher_drop(name: str) -> None:
    """Remove matcher NAME (runs made with it keep their pairs).

    \b
    Example: prodmatch matcher drop shop-competitor
    """
    from prodmatch.store.matchers import drop_matcher

    with store.connection(_settings()) as conn:
        drop_matcher(conn, name)
    click.echo(f"dropped {name}")


# --- evaluation, fine-tuning, demo -------------------------------------------------------------------------


@main.command("eval")
@click.option(
    "--gold",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV: source_catalog,source_id,target_catalog,target_id[,label].",
)
@click.option("--labels", is_flag=True, help="Evaluate against the labels of prodmatch.labels instead.")
@model_option
@click.option("--source", help="Only gold pairs from this catalogue (required with --matcher).")
@click.option("--target", help="Only gold pairs into this catalogue (required with --matcher).")
@click.option("--matcher", help="Evaluate this learned matcher's decisions next to each single signal.")
@click.option(
    "--min-precision", type=click.FloatRange(0, 1), help="Pick the threshold reaching this precision."
)
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), help="Folder for the PNG plots.")
@click.option("--save", is_flag=True, help="Store the recommendation with the model; link then uses it.")
@json_option
def eval_command(
    gold: Path | None,
    labels: bool,
    model: str | None,
    source: str | None,
    target: str | None,
    matcher: str | None,
    min_precision: float | None,
    plots: Path | None,
    save: bool,
    as_json: bool,
) -> None:
    """How good are the matches: recall@k, MRR, precision/recall/F1 per threshold, per space and fusion weight.

    \b
    Example: prodmatch eval --gold gold.csv --source shop --target competitor --matcher shop-competitor
    """
    from dataclasses import replace

    if matcher is not None:
        from prodmatch.quality.matchers import evaluate_matcher

        if not source or not target:
            raise click.UsageError("--matcher needs --source and --target")
        with store.connection(_settings()) as conn, _gold_or_labels(conn, gold, labels) as gold_file:
            report = evaluate_matcher(conn, gold_file, matcher, source, target, plots_dir=plots)
        _show(report, as_json)
        return

    from prodmatch.quality.evaluate import evaluate, save_recommendation

    with store.connection(_settings()) as conn, _gold_or_labels(conn, gold, labels) as gold_file:
        report = evaluate(
            conn,
            gold_file,
            model=model,
            source=source,
            target=target,
            min_precision=min_precision,
            plots_dir=plots,
        )
        if save:
            if report.recommendation.get("threshold") is None:
                raise click.ClickException("nothing to save: no threshold could be recommended")
            save_recommendation(conn, report)
            report = replace(report, saved=True)
    _show(report, as_json)
    for line in report.unknown if not as_json else ():
        click.echo(f"skipped: {line}", err=True)


@main.command("finetune")
@click.option(
    "--gold",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of known pairs: source_catalog,source_id,target_catalog,target_id[,label].",
)
@click.option(
    "--labels", is_flag=True, help="Train on the labels of prodmatch.labels instead of a --gold file."
)
@click.option("--base", required=True, help="Registered model name, hub id or local folder to start from.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the fine-tuned model (loadable by from_pretrained).",
)
@click.option("--epochs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=16, show_default=True)
@click.option("--lr", type=float, help="Learning rate (default: the library's).")
@click.option(
    "--train-layers",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Train the last N transformer layers of each tower (+ projections).",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0.05, 0.9),
    default=0.2,
    show_default=True,
    help="Share of pairs kept out of training to measure the result.",
)
@click.option("--name", help="Name to register the new model under (default: BASE-ft).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def finetune_command(
    gold: Path | None,
    labels: bool,
    base: str,
    out: Path,
    epochs: int,
    batch_size: int,
    lr: float | None,
    train_layers: int,
    holdout: float,
    name: str | None,
    seed: int,
    as_json: bool,
) -> None:
    """Fine-tune a model's image and text towers on your matched pairs, then register it as a new model.

    \b
    Example: prodmatch finetune --gold gold.csv --base clip --out models/clip-ft
    """
    from dataclasses import replace

    from prodmatch.quality.finetune import FinetuneOptions, finetune

    settings = _settings()
    options = FinetuneOptions(
        epochs=epochs,
        batch_size=batch_size,
        train_layers=train_layers,
        holdout=holdout,
        name=name,
        seed=seed,
        precision=settings.precision,
        progress=not as_json,
    )
    if lr is not None:
        options = replace(options, lr=lr)
    with store.connection(settings) as conn, _gold_or_labels(conn, gold, labels) as gold_file:
        result = finetune(conn, gold_file, base, out, options)
    _show(result, as_json)
    for line in result.unknown if not as_json else ():
        click.echo(f"  skipped: {line}", err=True)


@main.command("demo")
@click.option(
    "--model",
    help="Model to use (default: PRODMATCH_MODEL or openai/clip-vit-base-patch32; "
    "a small random-weight CLIP when it cannot be loaded).",
)
@click.option("--size", type=click.IntRange(8, 100000), default=200, show_default=True, help="Shop products.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--folder", type=click.Path(file_okay=False, path_type=Path), help="Default: PRODMATCH_HOME/demo."
)
@click.option(
    "--finetune/--no-finetune",
    default=False,
    show_default=True,
    help="Also fine-tune the model on the gold pairs and compare on a hold-out (minutes on a CPU).",
)
@json_option
def demo_command(
    model: str | None, size: int, seed: int, folder: Path | None, finetune: bool, as_json: bool
) -> None:
    """Generate two catalogues and run the whole pipeline: ingest, embed, evaluate, link, dedupe, fine-tune.

    \b
    Example: prodmatch demo --size 500
    """
    from prodmatch.demo.run import run_demo

    report = run_demo(
        _settings(), model=model, size=size, seed=seed, folder=folder, finetune=finetune, progress=not as_json
    )
    if report.model_note and not as_json:
        click.echo(f"note: {report.model_note}", err=True)
    _show(report, as_json)


# --- review and labels ------------------------------------------------------------------------------------


@main.command("review")
@click.option("--run", "run_id", type=int, help="Match run to review (default: the newest link run).")
@click.option("--source", help="Review the newest link run from this catalogue ...")
@click.option("--target", help="... to this catalogue.")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on; others need a token."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--open", "open_browser", is_flag=True, help="Open the label page in a browser.")
@click.option("--user", help="Name stored with your labels (default: your login name).")
@click.option("--retrain-every", type=click.IntRange(1), default=20, show_default=True)
@click.option("--allow-private-images", is_flag=True, help="Let image URLs point at loopback/private hosts.")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path),
    help="Write a static HTML page of borderline pairs.",
)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Pairs in --export.")
def review_command(
    run_id: int | None,
    source: str | None,
    target: str | None,
    host: str,
    port: int,
    open_browser: bool,
    user: str | None,
    retrain_every: int,
    allow_private_images: bool,
    export_dir: Path | None,
    limit: int,
) -> None:
    """Label candidate pairs in the browser (or --export DIR a static page of a run's borderline pairs).

    After every --retrain-every new labels the app trains a matcher on the labels in the background and shows
    how its cross-validated F1 moves; its probabilities then choose the next pairs.

    \b
    Example: prodmatch review --source shop --target competitor --open
    """
    from prodmatch import review

    settings = _settings()
    if export_dir is not None:
        with store.connection(settings) as conn:
            result = review.export_run(
                conn,
                export_dir,
                run_id=run_id,
                source=source,
                target=target,
                limit=limit,
                allow_private_images=allow_private_images,
                image_roots=settings.image_roots,
            )
        click.echo(f"wrote {result.pairs} borderline pairs of run {result.run_id} to {result.path}")
        return
    options = review.ReviewOptions(
        run_id=run_id,
        source=source,
        target=target,
        host=host,
        port=port,
        token=settings.review_token,
        retrain_every=retrain_every,
        allow_private_images=allow_private_images,
        **({"user": user} if user else {}),
    )
    from prodmatch.quality.matchers import review_retrainer

    review.serve(
        settings,
        options,
        open_browser=open_browser,
        retrain=review_retrainer(settings, run_id=run_id, source=source, target=target),
        announce=lambda line: click.echo(line, err=True),
    )


@main.group("labels")
def labels_group() -> None:
    """Export and import the labels people gave in `prodmatch review` (the gold CSV format)."""


@labels_group.command("export")
@click.argument("file", type=click.Path(path_type=Path))
def labels_export(file: Path) -> None:
    """Write the current same/different labels to FILE as gold pairs (source_catalog,...,label).

    \b
    Example: prodmatch labels export gold.csv
    """
    from prodmatch import review

    with store.connection(_settings()) as conn:
        written = review.export_labels(conn, file)
    click.echo(f"wrote {written} labelled pairs to {file}")


@labels_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--by", "labelled_by", default="import", show_default=True, help="Name stored with the labels.")
@json_option
def labels_import(file: Path, labelled_by: str, as_json: bool) -> None:
    """Load gold pairs from FILE into prodmatch.labels (label 1/0 or match/non-match/unsure).

    \b
    Example: prodmatch labels import gold.csv --by alice
    """
    from prodmatch import review

    with store.connection(_settings()) as conn:
        result = review.import_labels(conn, file, labelled_by=labelled_by)
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(f"imported {result.imported} labels from {file}")
    for line in result.unknown:
        click.echo(f"  skipped {line}")


@contextlib.contextmanager
def _gold_or_labels(conn, gold: Path | None, labels: bool):
    """The gold file to read: --gold, or the labels people gave (--labels) written to a temporary one."""
    if bool(gold) == bool(labels):
        raise click.UsageError("give exactly one of --gold FILE and --labels")
    if gold is not None:
        yield gold
        return
    import tempfile

    from prodmatch.quality.matchers import labels_gold_file

    with tempfile.TemporaryDirectory() as folder:
        yield labels_gold_file(conn, Path(folder) / "labels.csv")


def _parse_mappings(mappings: tuple[str, ...]) -> dict[str, str]:
    from prodmatch.ingest.rows import ALIASES, FIELDS

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
