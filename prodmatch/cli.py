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


@db_group.command("shell", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@_errors_as_click
def db_shell(psql_args: tuple[str, ...]) -> None:
    """Open psql on the prodmatch database (the embedded one stays up while psql runs).

    Extra arguments go to psql, e.g. prodmatch db shell -c "SELECT * FROM prodmatch.matches_v LIMIT 5"
    or prodmatch db shell -f sql/examples/01_competitor_price_gaps.sql
    """
    import subprocess

    command = db.psql_command(_settings(), list(psql_args))
    raise SystemExit(subprocess.call(command))


@db_group.command("grant-reader")
@click.argument("role")
@_errors_as_click
def db_grant_reader(role: str) -> None:
    """Give database ROLE read-only use of the prodmatch views, tables and functions."""
    with db.connection(_settings()) as conn:
        db.grant_reader(conn, role)
    click.echo(f"{role} may now read prodmatch (SELECT on tables and views, EXECUTE on functions)")


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
@click.option(
    "--prune",
    is_flag=True,
    help="The file is a full export: delete the catalogue's products it no longer lists (with their vectors "
    "and matches). Skipped, with a warning, when a row's id cannot be read.",
)
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
    prune: bool,
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
        prune=prune,
        progress=not as_json,
    )
    with db.connection(_settings()) as conn:
        result = ingest_file(conn, file, catalog, options)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(
            f"{result.file} -> {result.catalog}: {result.rows:,} rows, inserted {result.inserted:,}, "
            f"updated {result.updated:,}, unchanged {result.unchanged:,}, rejected {result.rejected:,}"
            + (f", deleted {result.deleted:,}" if prune else "")
            + f" ({result.seconds:.1f} s)"
        )
        if result.prune_skipped:
            click.echo(f"  not pruned: {result.prune_skipped}", err=True)
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
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def models_add(
    model: str | None,
    name: str | None,
    revision: str | None,
    fusion: str,
    image_weight: float,
    text_template: str | None,
    precision: str | None,
    as_json: bool,
) -> None:
    """Register MODEL (a hub id or a local folder; default openai/clip-vit-base-patch32) and queue every product."""
    from prodmatch.models import DEFAULT_TEXT_TEMPLATE, add_model

    settings = _settings()
    with db.connection(settings) as conn:
        registered = add_model(
            conn,
            model or settings.default_model,
            name=name,
            revision=revision,
            fusion=fusion,
            image_weight=image_weight,
            text_template=text_template or DEFAULT_TEXT_TEMPLATE,
            precision=precision or settings.precision,
        )
    if as_json:
        _echo_json(registered.to_dict())
    else:
        click.echo(
            f"registered {registered.name} ({registered.family}, {registered.dimension} dims, fusion "
            f"{registered.fusion} w={registered.image_weight}, text {registered.text_template!r}); "
            "run: prodmatch embed"
        )


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def models_list(as_json: bool) -> None:
    """Registered models and how many products each has embedded."""
    from prodmatch.models import list_models

    with db.connection(_settings()) as conn:
        stats = list_models(conn)
    if as_json:
        _echo_json([s.to_dict() for s in stats])
        return
    if not stats:
        click.echo("no models registered; add one with: prodmatch models add [MODEL]")
    for s in stats:
        m = s.model
        counts = ", ".join(f"{k} {v:,}" for k, v in s.counts.items()) or "no products"
        click.echo(
            f"{m.name}: {m.source} ({m.family}, {m.dimension} dims, {m.fusion} w={m.image_weight}) — {counts}"
        )


@models_group.command("drop")
@click.argument("name")
@_errors_as_click
def models_drop(name: str) -> None:
    """Remove model NAME with its embeddings and indexes."""
    from prodmatch.models import drop_model

    with db.connection(_settings()) as conn:
        drop_model(conn, name)
    click.echo(f"dropped {name}")


# --- embed ------------------------------------------------------------------------------------------------


@main.command("embed")
@click.option("--model", help="Model name (default: every registered model).")
@click.option("--catalog", help="Only this catalogue.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--limit", type=click.IntRange(1), help="Stop after this many products.")
@click.option("--watch", is_flag=True, help="Keep running; wake up when products are added or changed.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None)
@click.option("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: CUDA when present).")
@click.option("--image-threads", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--retry-errors", is_flag=True, help="Re-queue products whose embedding failed before.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@_errors_as_click
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
    as_json: bool,
) -> None:
    """Embed pending products: image, text and fused vectors."""
    import signal
    import threading

    from prodmatch.worker import EmbedOptions, embed

    settings = _settings()
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
    summaries = embed(settings, options, stop=stop)
    if as_json:
        _echo_json([s.to_dict() for s in summaries] if len(summaries) != 1 else summaries[0].to_dict())
        return
    for s in summaries:
        click.echo(
            f"{s.model}: embedded {s.embedded:,}, image errors {s.image_errors:,}, failed {s.failed:,}, "
            f"skipped {s.skipped:,} in {s.seconds:.1f} s ({s.products_per_second:.1f} products/s)"
        )


# --- matching ---------------------------------------------------------------------------------------------

SPACE = click.Choice(["fused", "image", "text"])


@main.command("similar")
@click.argument("product")
@click.option("--k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--space", type=SPACE, default="fused", show_default=True)
@click.option("--model", help="Model name (default: the only registered one).")
@click.option("--in-catalog", help="Only candidates from this catalogue.")
@click.option("--other-catalog", is_flag=True, help="Only candidates from other catalogues.")
@click.option("--same-category", is_flag=True)
@click.option("--same-brand", is_flag=True)
@click.option("--min-price-ratio", type=float)
@click.option("--max-price-ratio", type=float)
@click.option("--unmatched-only", is_flag=True, help="Skip products already best-matched by a link run.")
@click.option("--ef-search", type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def similar_command(
    product: str,
    k: int,
    space: str,
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
    """Products most similar to PRODUCT, given as CATALOG:EXTERNAL_ID (SQL: prodmatch.similar)."""
    from prodmatch import matching

    catalog, external_id = matching.parse_product_ref(product)
    with db.connection(_settings()) as conn:
        product_id = matching.find_product(conn, catalog, external_id)
        rows = matching.similar(
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
    if as_json:
        _echo_json([r.__dict__ for r in rows])
        return
    click.echo(f"{'fused':>6} {'image':>6} {'text':>6}  product")
    for r in rows:
        click.echo(
            f"{_sim(r.fused_similarity)} {_sim(r.image_similarity)} {_sim(r.text_similarity)}  "
            f"{r.catalog}:{r.external_id}  {r.brand or ''} {r.title or ''}  {r.price if r.price is not None else ''}"
        )


@main.command("search")
@click.argument("text")
@click.option("--k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--space", type=SPACE, default="image", show_default=True, help="image: text-to-image search.")
@click.option("--model", help="Model name (default: the only registered one).")
@click.option("--in-catalog", help="Only products of this catalogue.")
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def search_command(
    text: str, k: int, space: str, model: str | None, in_catalog: str | None, as_json: bool
) -> None:
    """Products matching a TEXT query, embedded with the model's text tower (SQL: prodmatch.search)."""
    from prodmatch import matching

    settings = _settings()
    with db.connection(settings) as conn:
        hits = matching.search(
            conn, text, k=k, space=space, model=model, in_catalog=in_catalog, precision=settings.precision
        )
    if as_json:
        _echo_json([h.__dict__ for h in hits])
        return
    for h in hits:
        click.echo(f"{_sim(h.similarity)}  {h.catalog}:{h.external_id}  {h.brand or ''} {h.title or ''}")


@main.command("link")
@click.option("--source", required=True, help="Catalogue whose products get candidates.")
@click.option("--target", required=True, help="Catalogue the candidates come from.")
@click.option("--k", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option(
    "--threshold", type=float, help="Keep pairs at least this similar (default: the model's saved one)."
)
@click.option(
    "--one-to-one", is_flag=True, help="Mutual assignment: no target used twice (greedy, best first)."
)
@click.option(
    "--mode", type=click.Choice(["exact", "ann"]), help="Default: exact when the vectors fit in memory."
)
@click.option("--space", type=SPACE, default="fused", show_default=True)
@click.option("--model", help="Model name (default: the only registered one).")
@click.option("--ef-search", type=click.IntRange(1, 1000), help="HNSW search breadth for --mode ann.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the pairs (.csv or .jsonl)."
)
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def link_command(
    source: str,
    target: str,
    k: int,
    threshold: float | None,
    one_to_one: bool,
    mode: str | None,
    space: str,
    model: str | None,
    ef_search: int | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Find every SOURCE product's best candidates in TARGET and store them as a match run."""
    from prodmatch import matching

    with db.connection(_settings()) as conn:
        result = matching.link(
            conn,
            source,
            target,
            k=k,
            threshold=threshold,
            one_to_one=one_to_one,
            mode=mode,
            space=space,
            model=model,
            ef_search=ef_search,
            out=out,
            progress=not as_json,
        )
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(
        f"run {result.run_id}: {result.source} -> {result.target} ({result.mode}, {result.model}): "
        f"{result.pairs:,} pairs for {result.matched_sources:,} of {result.sources:,} products "
        f"in {result.seconds:.1f} s" + (f"; written to {result.out}" if result.out else "")
    )
    click.echo(f"  SELECT * FROM prodmatch.matches_v WHERE run_id = {result.run_id} ORDER BY rank;")


@main.command("dedupe")
@click.option("--catalog", required=True)
@click.option(
    "--threshold", type=float, required=True, help="Cosine similarity that makes two products duplicates."
)
@click.option("--space", type=SPACE, default="fused", show_default=True)
@click.option("--model", help="Model name (default: the only registered one).")
@click.option(
    "--k", type=click.IntRange(1, 1000), default=20, show_default=True, help="Neighbours per product."
)
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def dedupe_command(
    catalog: str, threshold: float, space: str, model: str | None, k: int, as_json: bool
) -> None:
    """Group duplicates inside one catalogue into clusters (every pair in a cluster passes the threshold)."""
    from prodmatch import matching

    with db.connection(_settings()) as conn:
        result = matching.dedupe(
            conn, catalog, threshold, model=model, space=space, k=k, progress=not as_json
        )
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(
        f"run {result.run_id}: {result.clusters:,} clusters, {result.duplicates:,} of {result.products:,} "
        f"products (largest {result.largest}) in {result.seconds:.1f} s"
    )
    click.echo(f"  SELECT * FROM prodmatch.duplicates_v WHERE run_id = {result.run_id} ORDER BY cluster_id;")


@main.group("index")
def index_group() -> None:
    """Inspect the HNSW indexes."""


@index_group.command("check")
@click.option("--model", help="Model name (default: the only registered one).")
@click.option("--space", type=SPACE, default="fused", show_default=True)
@click.option("--sample", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def index_check_command(model: str | None, space: str, sample: int, k: int, as_json: bool) -> None:
    """Recall@k of the HNSW index against exact search, and the ef_search that reaches 0.99."""
    from prodmatch import matching

    with db.connection(_settings()) as conn:
        report = matching.check_index(conn, model=model, space=space, sample=sample, k=k)
    if as_json:
        _echo_json(report.to_dict())
        return
    click.echo(f"{report.model} / {report.space}: recall@{report.k} over {report.sample} sampled products")
    for row in report.rows:
        click.echo(
            f"  ef_search {row['ef_search']:>4}: recall {row['recall']:.3f}  "
            f"p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms"
        )
    if report.recommended_ef_search:
        click.echo(f"ef_search {report.recommended_ef_search} reaches recall {report.target_recall}")
    else:
        click.echo(f"no ef_search tried reaches recall {report.target_recall}; the index is losing matches")


# --- evaluation, fine-tuning, demo -------------------------------------------------------------------------


@main.command("eval")
@click.option(
    "--gold",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV: source_catalog,source_id,target_catalog,target_id[,label].",
)
@click.option("--model", help="Model name (default: the only registered one).")
@click.option("--source", help="Only gold pairs from this catalogue.")
@click.option("--target", help="Only gold pairs into this catalogue.")
@click.option(
    "--min-precision", type=click.FloatRange(0, 1), help="Pick the threshold reaching this precision."
)
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), help="Folder for the PNG plots.")
@click.option("--save", is_flag=True, help="Store the recommendation with the model; link then uses it.")
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def eval_command(
    gold: Path,
    model: str | None,
    source: str | None,
    target: str | None,
    min_precision: float | None,
    plots: Path | None,
    save: bool,
    as_json: bool,
) -> None:
    """How good are the matches: recall@k, MRR, precision/recall/F1 per threshold, per space and fusion weight."""
    from dataclasses import replace

    from prodmatch.evaluate import evaluate, save_recommendation

    with db.connection(_settings()) as conn:
        report = evaluate(
            conn,
            gold,
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
    if as_json:
        _echo_json(report.to_dict())
        return
    click.echo(
        f"{report.model}: {report.pairs} gold pairs ({report.positives} matches, {report.negatives} "
        f"non-matches) for {report.sources} products"
    )
    click.echo(f"{'space':<22}{'recall@1':>9}{'@5':>7}{'@10':>7}{'MRR':>7}{'best F1':>9}{'threshold':>11}")
    rows = [(r, r.space if r.space != "fused" else f"fused w={r.image_weight:g}") for r in report.spaces]
    best_fused = max(report.weight_grid, key=lambda r: (r.best_f1, r.recall_at_1), default=None)
    current = next((r for r in report.spaces if r.space == "fused"), None)
    if best_fused and (current is None or best_fused.image_weight != current.image_weight):
        rows.append((best_fused, f"fused w={best_fused.image_weight:g} (grid)"))
    for r, name in rows:
        threshold = f"{r.best_threshold:.4f}" if r.best_threshold is not None else "-"
        click.echo(
            f"{name:<22}{r.recall_at_1:>9.3f}{r.recall_at_5:>7.3f}{r.recall_at_10:>7.3f}{r.mrr:>7.3f}"
            f"{r.best_f1:>9.3f}{threshold:>11}"
        )
    rec = report.recommendation
    if rec.get("threshold") is not None:
        weight = f" w={rec['image_weight']:g}" if rec["space"] == "fused" else ""
        click.echo(
            f"recommended: {rec['space']}{weight}, threshold {rec['threshold']:.4f} "
            f"(precision {rec['precision']:.3f}, recall {rec['recall']:.3f}, F1 {rec['f1']:.3f})"
            + ("; saved with the model" if report.saved else "; --save to store it for link")
        )
    else:
        click.echo(f"no recommendation: {rec.get('note', '')}")
    for path in report.plots.values():
        click.echo(f"plot: {path}")
    for line in report.unknown:
        click.echo(f"skipped: {line}", err=True)


@main.command("finetune")
@click.option(
    "--gold",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of known pairs: source_catalog,source_id,target_catalog,target_id[,label].",
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
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def finetune_command(
    gold: Path,
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
    """Fine-tune a model's image and text towers on your matched pairs, then register it as a new model."""
    from dataclasses import replace

    from prodmatch.finetune import FinetuneOptions, finetune

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
    with db.connection(settings) as conn:
        result = finetune(conn, gold, base, out, options)
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(
        f"fine-tuned {result.base} on {result.train_pairs} pairs ({result.holdout_pairs} held out) "
        f"in {result.seconds:.0f} s -> {result.out}, registered as {result.model_name}"
    )
    for space in ("image", "text", "fused"):
        before, after = result.before.get(space, {}), result.after.get(space, {})
        if before or after:
            click.echo(
                f"  hold-out {space:<6} recall@1 {before.get('recall_at_1', 0):.3f} -> "
                f"{after.get('recall_at_1', 0):.3f}   F1 {before.get('f1', 0):.3f} -> {after.get('f1', 0):.3f}"
            )
    for line in result.unknown:
        click.echo(f"  skipped: {line}", err=True)
    click.echo(
        f"next: prodmatch embed --model {result.model_name}; compare with prodmatch eval --model "
        f"{result.model_name} before switching"
    )


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
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def demo_command(
    model: str | None, size: int, seed: int, folder: Path | None, finetune: bool, as_json: bool
) -> None:
    """Generate two catalogues and run the whole pipeline: ingest, embed, evaluate, link, dedupe, fine-tune."""
    from prodmatch.demo import run_demo

    report = run_demo(
        _settings(), model=model, size=size, seed=seed, folder=folder, finetune=finetune, progress=not as_json
    )
    if as_json:
        _echo_json(report.to_dict())
        return
    if report.model_note:
        click.echo(f"note: {report.model_note}", err=True)
    click.echo(f"demo in {report.folder} with model {report.model}")
    for catalog, counts in report.ingested.items():
        click.echo(f"  ingested {catalog}: {counts['rows']} rows, {counts['rejected']} rejected")
    e = report.embedded
    click.echo(
        f"  embedded {e['embedded']} products ({e['image_errors']} image errors) "
        f"at {e['products_per_second']:.1f} products/s"
    )
    for space in report.evaluation["spaces"]:
        click.echo(
            f"  {space['space']:<6} recall@1 {space['recall_at_1']:.3f}  MRR {space['mrr']:.3f}  "
            f"best F1 {space['best_f1']:.3f}"
        )
    rec = report.evaluation["recommendation"]
    if rec.get("threshold") is not None:
        click.echo(
            f"  recommended: {rec['space']} (w={rec['image_weight']}), threshold {rec['threshold']:.4f}, "
            f"F1 {rec['f1']:.3f} — saved with the model"
        )
    click.echo(
        f"  link run {report.link['run_id']}: {report.link['pairs']} pairs for "
        f"{report.link['matched_sources']} of {report.link['sources']} products -> {report.link['out']}"
    )
    click.echo(f"  dedupe run {report.dedupe['run_id']}: {report.dedupe['clusters']} duplicate clusters")
    for m in report.sample_matches:
        click.echo(f"    {m['similarity']}  {m['source']}  <->  {m['target']}")
    for name, path in report.plots.items():
        click.echo(f"  plot {name}: {path}")
    if report.finetune:
        ft = report.finetune
        click.echo(
            f"  fine-tuned {ft['model']} on {ft['train_pairs']} pairs; on {ft['holdout_pairs']} held-out pairs:"
        )
        for space in ("image", "text", "fused"):
            before, after = ft["holdout_before"].get(space, {}), ft["holdout_after"].get(space, {})
            click.echo(
                f"    {space:<6} recall@1 {before.get('recall_at_1', 0):.3f} -> {after.get('recall_at_1', 0):.3f}"
            )
        click.echo(f"  compare: prodmatch eval --gold {report.folder}/data/gold.csv --model {ft['model']}")
    click.echo("  timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.steps.items()))
    click.echo("  try: prodmatch db status; SELECT * FROM prodmatch.matches_v LIMIT 10; sql/examples/*.sql")


def _sim(value: float | None) -> str:
    return f"{value:6.3f}" if value is not None else "     -"


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


# === review and labels (issue 14) ==============================================================================
# One block so it can move as a whole; each command parses options and calls one function of prodmatch.review.


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
@_errors_as_click
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
    """Label candidate pairs in the browser (or --export DIR a static page of a run's borderline pairs)."""
    from prodmatch import review

    settings = _settings()
    if export_dir is not None:
        with db.connection(settings) as conn:
            result = review.export_run(
                conn,
                export_dir,
                run_id=run_id,
                source=source,
                target=target,
                limit=limit,
                allow_private_images=allow_private_images,
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
    review.serve(
        settings, options, open_browser=open_browser, announce=lambda line: click.echo(line, err=True)
    )


@main.group("labels")
def labels_group() -> None:
    """Export and import the labels people gave in `prodmatch review` (the gold CSV format)."""


@labels_group.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@_errors_as_click
def labels_export(file: Path) -> None:
    """Write the current same/different labels to FILE as gold pairs (source_catalog,...,label)."""
    from prodmatch import review

    with db.connection(_settings()) as conn:
        written = review.export_labels(conn, file)
    click.echo(f"wrote {written} labelled pairs to {file}")


@labels_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--by", "labelled_by", default="import", show_default=True, help="Name stored with the labels.")
@click.option("--json", "as_json", is_flag=True)
@_errors_as_click
def labels_import(file: Path, labelled_by: str, as_json: bool) -> None:
    """Load gold pairs from FILE into prodmatch.labels (label 1/0 or match/non-match/unsure)."""
    from prodmatch import review

    with db.connection(_settings()) as conn:
        result = review.import_labels(conn, file, labelled_by=labelled_by)
    if as_json:
        _echo_json(result.to_dict())
        return
    click.echo(f"imported {result.imported} labels from {file}")
    for line in result.unknown:
        click.echo(f"  skipped {line}")


# === end of review and labels ===================================================================================


if __name__ == "__main__":
    sys.exit(main())
