"""Ad-hoc nearest-neighbour queries: `similar` (products like one product) and `search` (products like a text).

Both call the SQL API in `sql/matching.sql` (`prodmatch.similar`, `prodmatch.search`), so Python and SQL users
get the same rows from the same HNSW index expressions; this module only checks the arguments, embeds the
search text with the model's encoder, and returns typed rows (`Neighbour`, `SearchHit`). Whole-catalogue
matching is `match.link`; the index's recall is checked by `match.index_check`.

`default_space` is what a command uses when it is not told a space: the model's own spaces, unless the model is
a random-weight one (the demo's fallback) or there is none, whose neural spaces rank unrelated products side by
side; then the lexical space, with a one-line note saying so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg
from psycopg.rows import dict_row

from prodmatch.errors import ConfigError
from prodmatch.store.models import get_model, list_registered
from prodmatch.store.runs import _plain
from prodmatch.store.server import _sql_errors

DEFAULT_EF_SEARCH = 100


@dataclass(frozen=True)
class Neighbour:
    """One row of prodmatch.similar()."""

    product_id: int
    catalog: str
    external_id: str
    title: str | None
    brand: str | None
    price: float | None
    fused_similarity: float | None
    image_similarity: float | None
    text_similarity: float | None
    lexical_similarity: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        sims = " ".join(
            _sim(v)
            for v in (
                self.fused_similarity,
                self.image_similarity,
                self.text_similarity,
                self.lexical_similarity,
            )
        )
        price = self.price if self.price is not None else ""
        return f"{sims}  {self.catalog}:{self.external_id}  {self.brand or ''} {self.title or ''}  {price}"


@dataclass(frozen=True)
class SearchHit:
    """One row of prodmatch.search()."""

    product_id: int
    catalog: str
    external_id: str
    title: str | None
    brand: str | None
    price: float | None
    similarity: float

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        return f"{_sim(self.similarity)}  {self.catalog}:{self.external_id}  {self.brand or ''} {self.title or ''}"


@dataclass(frozen=True)
class QueriedProduct:
    """The product a `similar` query is about, shown above its neighbours."""

    product_id: int
    catalog: str
    external_id: str
    title: str | None
    brand: str | None
    category: str | None
    price: float | None
    currency: str | None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        price = f"  {self.price:g} {self.currency or ''}".rstrip() if self.price is not None else ""
        category = f"  [{self.category}]" if self.category else ""
        return f"{self.catalog}:{self.external_id}  {self.brand or ''} {self.title or ''}{category}{price}"


@dataclass(frozen=True)
class SpaceChoice:
    """The space a command ranks by; `reason` says why it is not the model's own default space."""

    space: str
    reason: str | None = None
    default: str = "fused"

    @property
    def note(self) -> str | None:
        """One line for the user when the lexical space stands in for the model's."""
        if self.reason is None:
            return None
        anyway = (
            f"; --space {self.default} ranks by its vectors anyway" if "random weights" in self.reason else ""
        )
        return f"{self.reason}: ranking by the lexical space (text n-grams) instead{anyway}"


def default_space(
    conn: psycopg.Connection, requested: str | None, model: str | None, *, default: str = "fused"
) -> SpaceChoice:
    """`requested` when given; else the model's `default` space, or the lexical space (with a reason) when no
    model is registered or the model has random weights (its vectors do not tell products apart). Without a
    `model`, that is every registered model (the demo's fallback and its fine-tuned copy, say)."""
    if requested is not None:
        return SpaceChoice(requested, default=default)
    candidates = [get_model(conn, model)] if model is not None else list_registered(conn)
    if not candidates:
        return SpaceChoice("lexical", "no model is registered", default)
    if all(m.random_weights for m in candidates):  # several only when none is named: `similar` needs no model
        names = ", ".join(m.name for m in candidates)
        which = f"model {names} has" if len(candidates) == 1 else f"models {names} have"
        reason = f"{which} random weights (a stand-in, not a real model)"
        return SpaceChoice("lexical", reason, default)
    return SpaceChoice(default, default=default)


def queried_product(conn: psycopg.Connection, product_id: int) -> QueriedProduct:
    """The catalogue, id, title, brand, category and price of one product."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT p.id AS product_id, c.name AS catalog, p.external_id, p.title, p.brand, p.category, p.price,"
            " p.currency FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
            " WHERE p.id = %s",
            (product_id,),
        ).fetchone()
    if row is None:
        raise ConfigError(f"no product with id {product_id}")
    return QueriedProduct(**_plain(row))


def similar(
    conn: psycopg.Connection,
    product_id: int,
    *,
    k: int = 10,
    space: str = "fused",
    model: str | None = None,
    in_catalog: str | None = None,
    other_catalog: bool = False,
    same_category: bool = False,
    same_brand: bool = False,
    min_price_ratio: float | None = None,
    max_price_ratio: float | None = None,
    unmatched_only: bool = False,
    ef_search: int | None = None,
) -> list[Neighbour]:
    """The k products most similar to `product_id` (prodmatch.similar)."""
    with _sql_errors(), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM prodmatch.similar(%s::bigint, k => %s::int, space => %s::text, model => %s::text,"
            " in_catalog => %s::text, other_catalog => %s, same_category => %s, same_brand => %s,"
            " min_price_ratio => %s::numeric, max_price_ratio => %s::numeric, unmatched_only => %s,"
            " ef_search => %s::int)",
            (
                product_id,
                k,
                space,
                model,
                in_catalog,
                other_catalog,
                same_category,
                same_brand,
                min_price_ratio,
                max_price_ratio,
                unmatched_only,
                ef_search or DEFAULT_EF_SEARCH,
            ),
        ).fetchall()
    return [Neighbour(**_plain(r)) for r in rows]


def search(
    conn: psycopg.Connection,
    query: str,
    *,
    k: int = 10,
    space: str = "image",
    model: str | None = None,
    in_catalog: str | None = None,
    ef_search: int | None = None,
    encoder=None,
    precision: str = "auto",
) -> list[SearchHit]:
    """Products nearest to a text query embedded by the model's text tower (text -> image by default);
    `space="lexical"` ranks by the lexical space instead (no model needed)."""
    from prodmatch.embed.encoders import Encoder
    from prodmatch.embed.fusion import fuse

    if not query.strip():
        raise ConfigError("the search text is empty")
    if space == "lexical":
        return search_lexical(conn, query, k=k, in_catalog=in_catalog, ef_search=ef_search)
    registered = get_model(conn, model)
    encoder = encoder or Encoder.load(registered.source, revision=registered.revision, precision=precision)
    text_vector = encoder.embed_texts([query])[0]
    if space == "fused":
        vector = fuse(
            None, text_vector[None, :], method=registered.fusion, image_weight=registered.image_weight
        )[0]
    else:
        vector = text_vector
    with _sql_errors(), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM prodmatch.search(%s::vector, k => %s::int, space => %s::text, model => %s::text,"
            " in_catalog => %s::text, ef_search => %s::int)",
            (vector, k, space, registered.name, in_catalog, ef_search or DEFAULT_EF_SEARCH),
        ).fetchall()
    return [SearchHit(**_plain(r)) for r in rows]


def search_lexical(
    conn: psycopg.Connection,
    query: str,
    *,
    k: int = 10,
    in_catalog: str | None = None,
    ef_search: int | None = None,
) -> list[SearchHit]:
    """Products nearest to a text query in the lexical space (the query weighted with the stored IDF)."""
    from prodmatch.embed.lexical import LexicalEncoder, weigh
    from prodmatch.embed.lexical_refresh import lexical_idf, sparse_text

    indices, values = weigh(LexicalEncoder().encode({"title": query}), lexical_idf(conn))
    if indices.size == 0:
        raise ConfigError(f"the search text {query!r} has no letters or digits to search by")
    with _sql_errors(), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search or DEFAULT_EF_SEARCH),))
        cur.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        rows = cur.execute(
            """
            WITH nearest AS MATERIALIZED (
                SELECT l.product_id, l.vector <=> %(q)s::sparsevec AS distance
                  FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id
                 WHERE %(catalog)s::text IS NULL OR p.catalog_id = prodmatch.catalog_id(%(catalog)s)
                 ORDER BY l.vector <=> %(q)s::sparsevec LIMIT %(k)s)
            SELECT n.product_id, c.name AS catalog, p.external_id, p.title, p.brand, p.price,
                   (1 - n.distance)::real AS similarity
              FROM nearest n JOIN prodmatch.products p ON p.id = n.product_id
              JOIN prodmatch.catalogs c ON c.id = p.catalog_id
             ORDER BY n.distance, n.product_id
            """,
            {"q": sparse_text(indices, values), "catalog": in_catalog, "k": k},
        ).fetchall()
    return [SearchHit(**_plain(r)) for r in rows]


def _sim(value: float | None) -> str:
    return f"{value:6.3f}" if value is not None else "     -"
