"""What the review app reads from the rest of prodmatch: runs, candidate pairs, products, images, neighbours.

Every import of another prodmatch module that the review package needs sits in this one file, so a move of those
modules (store/, embed/, match/) is one edit here. The queries read `prodmatch.match_runs`, `prodmatch.matches`
and `prodmatch.products`; the columns a learned matcher adds to `prodmatch.matches` (`lexical_similarity`,
`match_probability`, `accepted`) are used when the database has them and read as NULL otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from PIL import Image
from psycopg import sql
from psycopg.rows import dict_row

from prodmatch import match as _matching
from prodmatch import store as _db
from prodmatch.config import Settings
from prodmatch.embed import images as _images
from prodmatch.errors import ConfigError, ProdmatchError

OPTIONAL_MATCH_COLUMNS = ("lexical_similarity", "match_probability", "accepted")
from prodmatch.store.models import SPACES  # noqa: E402  (the one list of vector spaces)

# What --allow-private-images lets image URLs reach: loopback and the private ranges (tests, intranet CDNs).
PRIVATE_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


@dataclass(frozen=True)
class Run:
    """One stored link or dedupe run, as the review pages show it."""

    id: int
    kind: str
    source_catalog: str
    target_catalog: str | None
    model: str
    params: dict
    created_at: datetime
    pairs: int

    @property
    def threshold(self) -> float | None:
        value = self.params.get("threshold")
        return float(value) if value is not None else None

    @property
    def title(self) -> str:
        target = self.target_catalog or self.source_catalog
        return f"run {self.id}: {self.source_catalog} → {target} ({self.kind}, {self.model})"


@dataclass(frozen=True)
class Product:
    """One product with everything a reviewer looks at."""

    id: int
    catalog: str
    external_id: str
    title: str | None
    description: str | None
    brand: str | None
    category: str | None
    price: float | None
    currency: str | None
    image: str | None
    attributes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PairSignals:
    """One candidate pair of a run and what each signal says about it (None where a signal is missing)."""

    run_id: int
    source_product_id: int
    target_product_id: int
    rank: int
    fused_similarity: float | None
    image_similarity: float | None
    text_similarity: float | None
    lexical_similarity: float | None
    match_probability: float | None
    accepted: bool

    @property
    def score(self) -> float | None:
        """The similarity the run ranked by: fused, else whichever signal exists."""
        for value in (
            self.fused_similarity,
            self.text_similarity,
            self.image_similarity,
            self.lexical_similarity,
        ):
            if value is not None:
                return value
        return None


@dataclass(frozen=True)
class BrowseFilters:
    """The filters and order of the Browse page; every field is optional."""

    status: str = "all"  # all | accepted | candidates
    min_score: float | None = None
    max_score: float | None = None
    catalog: str | None = None
    brand: str | None = None
    category: str | None = None
    min_price_gap: float | None = None  # relative: |a - b| / max(a, b), 0..1
    min_disagreement: float | None = None  # |image - text similarity|
    product_id: int | None = None  # only pairs with this product on either side
    sort: str = "score"
    descending: bool = True
    page: int = 1
    per_page: int = 50


SORTS = {
    "score": "score",
    "fused": "fused_similarity",
    "image": "image_similarity",
    "text": "text_similarity",
    "lexical": "lexical_similarity",
    "probability": "match_probability",
    "price_gap": "price_gap",
    "disagreement": "disagreement",
    "source": "source_title",
    "target": "target_title",
}


@dataclass(frozen=True)
class BrowsePage:
    """One page of a run's pairs with both products' metadata (dict rows) and the total after filtering."""

    rows: list[dict]
    total: int
    filters: BrowseFilters

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.filters.per_page))


# --- connections and images ----------------------------------------------------------------------------------


def connect(settings: Settings) -> psycopg.Connection:
    """A new connection to the prodmatch database (one per request; the app holds no pool)."""
    return _db.connect(settings)


def image_limits(
    max_side: int, allow_private_addresses: bool = False, roots: tuple = ()
) -> _images.ImageLimits:
    """The worker's image limits, sized for a thumbnail: local paths only inside `roots` (the worker's images
    roots: references come from the database), loopback/private hosts only when asked."""
    limits = _images.ImageLimits(max_side=max_side, roots=tuple(roots))
    if allow_private_addresses:
        return dataclasses.replace(limits, allowed_networks=PRIVATE_NETWORKS)
    return limits


def image_roots(conn: psycopg.Connection, settings: Settings) -> tuple:
    """The folders the embedding worker reads local images from: the catalogues' ingest folders and the
    configured extra roots."""
    from prodmatch.embed.queue import image_roots as ingest_roots

    return (*settings.image_roots, *ingest_roots(conn))


def load_image(ref: str, limits: _images.ImageLimits) -> Image.Image:
    """The same safe loader the embedding worker uses (byte, pixel and time caps; http(s) and files only)."""
    return _images.load_image(ref, limits)


# --- runs and pairs ------------------------------------------------------------------------------------------


def optional_match_columns(conn: psycopg.Connection) -> frozenset[str]:
    """Which of the learned matcher's columns `prodmatch.matches` has in this database."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'prodmatch' AND table_name = 'matches' AND column_name = ANY(%s)",
        (list(OPTIONAL_MATCH_COLUMNS),),
    ).fetchall()
    return frozenset(r[0] for r in rows)


def find_run(
    conn: psycopg.Connection, run_id: int | None = None, source: str | None = None, target: str | None = None
) -> Run:
    """The run to review: by id, else the newest link run from `source` to `target`, else the newest run."""
    conditions = [sql.SQL("true")]
    values: list = []
    if run_id is not None:
        conditions.append(sql.SQL("r.id = %s"))
        values.append(run_id)
    if source is not None:
        conditions.append(sql.SQL("sc.name = %s"))
        values.append(source)
    if target is not None:
        conditions.append(sql.SQL("tc.name = %s"))
        values.append(target)
    query = sql.SQL(
        "SELECT r.id, r.kind, sc.name AS source_catalog, tc.name AS target_catalog, m.name AS model, r.params,"
        " r.created_at FROM prodmatch.match_runs r JOIN prodmatch.models m ON m.id = r.model_id"
        " JOIN prodmatch.catalogs sc ON sc.id = r.source_catalog_id"
        " LEFT JOIN prodmatch.catalogs tc ON tc.id = r.target_catalog_id"
        " WHERE {} ORDER BY (r.kind = 'link') DESC, r.created_at DESC, r.id DESC LIMIT 1"
    ).format(sql.SQL(" AND ").join(conditions))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, values).fetchone()
    if row is None:
        if run_id is not None:
            raise ConfigError(
                f"no match run with id {run_id}; list runs with: SELECT * FROM prodmatch.match_runs"
            )
        between = f" from {source or '*'} to {target or '*'}" if source or target else ""
        raise ConfigError(f"no match run{between} to review; run `prodmatch link SOURCE TARGET` first")
    # Counted on its own: Citus refuses a correlated subquery on a sharded table beside reference tables.
    (row["pairs"],) = conn.execute(
        "SELECT count(*) FROM prodmatch.matches x WHERE x.run_id = %s", (row["id"],)
    ).fetchone()
    return Run(**row)


def run_pairs(conn: psycopg.Connection, run: Run, optional: frozenset[str]) -> list[PairSignals]:
    """Every candidate pair of a run with its signals (what the label queue chooses from)."""
    query = sql.SQL(
        "SELECT x.run_id, x.source_product_id, x.target_product_id, x.rank, x.fused_similarity,"
        " x.image_similarity, x.text_similarity, {lexical} AS lexical_similarity,"
        " {probability} AS match_probability, {accepted} AS accepted"
        " FROM prodmatch.matches x WHERE x.run_id = %s ORDER BY x.source_product_id, x.rank"
    ).format(**_optional_exprs(optional))
    with conn.cursor(row_factory=dict_row) as cur:
        return [PairSignals(**r) for r in cur.execute(query, (run.id,))]


def pair_signals(
    conn: psycopg.Connection, run: Run, optional: frozenset[str], source_id: int, target_id: int
) -> PairSignals | None:
    """One pair of a run, or None when the run does not hold it."""
    query = sql.SQL(
        "SELECT x.run_id, x.source_product_id, x.target_product_id, x.rank, x.fused_similarity,"
        " x.image_similarity, x.text_similarity, {lexical} AS lexical_similarity,"
        " {probability} AS match_probability, {accepted} AS accepted"
        " FROM prodmatch.matches x WHERE x.run_id = %s AND x.source_product_id = %s AND x.target_product_id = %s"
    ).format(**_optional_exprs(optional))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (run.id, source_id, target_id)).fetchone()
    return PairSignals(**row) if row else None


def browse(
    conn: psycopg.Connection, run: Run, optional: frozenset[str], filters: BrowseFilters
) -> BrowsePage:
    """A filtered, sorted page of a run's pairs with both products' metadata."""
    exprs = _optional_exprs(optional)
    where: list[sql.Composable] = [sql.SQL("true")]
    values: dict = {"run": run.id}
    if filters.status == "accepted":
        where.append(sql.SQL("accepted"))
    elif filters.status == "candidates":
        where.append(sql.SQL("NOT accepted"))
    for clause, name, value in (
        ("score >= %(min_score)s", "min_score", filters.min_score),
        ("score <= %(max_score)s", "max_score", filters.max_score),
        (
            "(source_catalog = %(catalog)s OR target_catalog = %(catalog)s)",
            "catalog",
            filters.catalog or None,
        ),
        ("(source_brand ILIKE %(brand)s OR target_brand ILIKE %(brand)s)", "brand", _like(filters.brand)),
        (
            "(source_category ILIKE %(category)s OR target_category ILIKE %(category)s)",
            "category",
            _like(filters.category),
        ),
        ("price_gap >= %(gap)s", "gap", filters.min_price_gap),
        ("disagreement >= %(disagreement)s", "disagreement", filters.min_disagreement),
        (
            "(source_product_id = %(product)s OR target_product_id = %(product)s)",
            "product",
            filters.product_id,
        ),
    ):
        if value is not None:
            where.append(sql.SQL(clause))
            values[name] = value
    query = sql.SQL(
        "SELECT *, count(*) OVER () AS total FROM ("
        " SELECT x.source_product_id, x.target_product_id, x.rank, x.fused_similarity, x.image_similarity,"
        " x.text_similarity, {lexical} AS lexical_similarity, {probability} AS match_probability,"
        " {accepted} AS accepted,"
        " coalesce({probability}, x.fused_similarity, x.text_similarity, x.image_similarity) AS score,"
        " sc.name AS source_catalog, sp.external_id AS source_external_id, sp.title AS source_title,"
        " sp.brand AS source_brand, sp.category AS source_category, sp.price::float8 AS source_price,"
        " sp.currency AS source_currency, sp.image IS NOT NULL AS source_has_image,"
        " tc.name AS target_catalog, tp.image IS NOT NULL AS target_has_image, tp.external_id AS target_external_id,"
        " tp.title AS target_title, tp.brand AS target_brand, tp.category AS target_category,"
        " tp.price::float8 AS target_price, tp.currency AS target_currency,"
        " (abs(sp.price - tp.price) / nullif(greatest(sp.price, tp.price), 0))::float8 AS price_gap,"
        " abs(x.image_similarity - x.text_similarity) AS disagreement,"
        " l.label AS current_label"
        " FROM prodmatch.matches x"
        " JOIN prodmatch.products sp ON sp.id = x.source_product_id"
        " JOIN prodmatch.catalogs sc ON sc.id = sp.catalog_id"
        " JOIN prodmatch.products tp ON tp.id = x.target_product_id"
        " JOIN prodmatch.catalogs tc ON tc.id = tp.catalog_id"
        " LEFT JOIN prodmatch.labels l ON l.source_product_id = x.source_product_id"
        "  AND l.target_product_id = x.target_product_id AND l.is_current"
        " WHERE x.run_id = %(run)s) pair"
        " WHERE {where} ORDER BY {order} {direction}, source_product_id, target_product_id"
        " LIMIT %(limit)s OFFSET %(offset)s"
    ).format(
        lexical=exprs["lexical"],
        probability=exprs["probability"],
        accepted=exprs["accepted"],
        where=sql.SQL(" AND ").join(where),
        order=sql.Identifier(SORTS.get(filters.sort, "score")),
        direction=sql.SQL("DESC NULLS LAST" if filters.descending else "ASC NULLS LAST"),
    )
    values.update(limit=filters.per_page, offset=(max(1, filters.page) - 1) * filters.per_page)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, values).fetchall()
        if not rows and filters.page > 1:  # past the last page: the window count came back empty
            first = cur.execute(query, dict(values, offset=0, limit=1)).fetchone()
            total = first["total"] if first else 0
        else:
            total = rows[0]["total"] if rows else 0
    return BrowsePage(rows=rows, total=total, filters=filters)


def catalogs(conn: psycopg.Connection) -> list[str]:
    """Catalogue names, for the Browse filters."""
    return [r[0] for r in conn.execute("SELECT name FROM prodmatch.catalogs ORDER BY name")]


# --- products ------------------------------------------------------------------------------------------------


def products(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, Product]:
    """Products by id (missing ids are left out)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT p.id, c.name AS catalog, p.external_id, p.title, p.description, p.brand, p.category,"
            " p.price::float8 AS price, p.currency, p.image, p.attributes"
            " FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id WHERE p.id = ANY(%s)",
            (list(ids),),
        ).fetchall()
    return {r["id"]: Product(**r) for r in rows}


def stored_image(conn: psycopg.Connection, product_id: int) -> str | None:
    """The image reference stored with a product: the only thing the thumbnail route ever loads."""
    row = conn.execute("SELECT image FROM prodmatch.products WHERE id = %s", (product_id,)).fetchone()
    return row[0] if row else None


def product_exists(conn: psycopg.Connection, product_id: int) -> bool:
    return (
        conn.execute("SELECT 1 FROM prodmatch.products WHERE id = %s", (product_id,)).fetchone() is not None
    )


def neighbours(conn: psycopg.Connection, product_id: int, model: str, k: int = 6) -> dict[str, list]:
    """The product's top candidates in other catalogues per space (SQL: prodmatch.similar); [] where it has no
    vector in that space."""
    found: dict[str, list] = {}
    for space in SPACES:
        try:
            found[space] = _matching.similar(
                conn, product_id, k=k, space=space, model=model, other_catalog=True
            )
        except (
            ProdmatchError,
            psycopg.Error,
        ):  # e.g. no image vector: the page shows none instead of failing
            conn.rollback()
            found[space] = []
    return found


# --- helpers -------------------------------------------------------------------------------------------------


def _optional_exprs(optional: frozenset[str]) -> dict[str, sql.Composable]:
    """SQL for the learned matcher's columns: the column where it exists, a typed NULL (or rank = 1) otherwise."""
    return {
        "lexical": sql.SQL("x.lexical_similarity" if "lexical_similarity" in optional else "NULL::real"),
        "probability": sql.SQL("x.match_probability" if "match_probability" in optional else "NULL::real"),
        # Before the learned matcher, a run's accepted pair for a source is its best candidate.
        "accepted": sql.SQL("coalesce(x.accepted, false)" if "accepted" in optional else "(x.rank = 1)"),
    }


def _like(text: str | None) -> str | None:
    """A case-insensitive substring pattern; LIKE's own wildcards in the text are taken literally."""
    if not text:
        return None
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
