"""Ad-hoc nearest-neighbour queries: `similar` (products like one product) and `search` (products like a text).

Both call the SQL API in `sql/matching.sql` (`prodmatch.similar`, `prodmatch.search`), so Python and SQL users
get the same rows from the same HNSW index expressions; this module only checks the arguments, embeds the
search text with the model's encoder, and returns typed rows (`Neighbour`, `SearchHit`). Whole-catalogue
matching is `match.link`; the index's recall is checked by `match.index_check`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg
from psycopg.rows import dict_row

from prodmatch.errors import ConfigError
from prodmatch.store.models import get_model
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
    """Products nearest to a text query embedded by the model's text tower (text -> image by default)."""
    from prodmatch.embed.encoders import Encoder
    from prodmatch.embed.fusion import fuse

    registered = get_model(conn, model)
    if not query.strip():
        raise ConfigError("the search text is empty")
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


def _sim(value: float | None) -> str:
    return f"{value:6.3f}" if value is not None else "     -"
