"""Registered embedding models: list, find, drop, update settings, and their HNSW indexes and index expressions.

A model row in `prodmatch.models` says where the weights come from (hub id or local folder), the vector size,
how image and text are fused, which product fields make its text, and its storage: `vector` (4-byte floats in
`embeddings.*_vector`) or `halfvec` (2-byte floats in `embeddings.*_half`). Registering a model creates its partial
expression HNSW indexes (one per vector kind, cast to the model's dimension, so models of different sizes live
side by side in one `embeddings` table) and marks every product pending for it. `embed.worker` fills the vectors;
`match` queries them through the same index expressions (`vector_expression`, which `sql/matching.sql`'s
`prodmatch.vector_expr` mirrors; tests/store/test_models.py proves they agree).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from prodmatch.config import IndexBuild, load_settings
from prodmatch.errors import ConfigError

SPACES = ("image", "text", "fused")
HNSW_MAX_VECTOR_DIM = 2000  # pgvector: vector indexes up to 2,000 dimensions, halfvec up to 4,000
HNSW_MAX_HALFVEC_DIM = 4000
# How a model keeps its vectors: 4-byte floats in the `*_vector` columns, or 2-byte floats in the `*_half`
# columns (half the table and index size; see docs/benchmarks.md "Scale" for what it costs in recall).
STORAGES = ("vector", "halfvec")
DEFAULT_STORAGE = "halfvec"
BATCH_ROWS = 10_000  # embedding rows inserted or deleted per short transaction by models add / drop


@dataclass(frozen=True)
class Model:
    """One row of prodmatch.models."""

    id: int
    name: str
    source: str
    revision: str | None
    family: str
    dimension: int
    fused_dimension: int
    fusion: str
    image_weight: float
    text_template: str
    settings: dict = field(default_factory=dict)
    storage: str = "vector"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def random_weights(self) -> bool:
        """Registered from a random-weight checkpoint (the demo's fallback, the tests' toy models)."""
        return self.settings.get("random_weights") is True


@dataclass(frozen=True)
class ModelStats:
    """A model and how far its embeddings are."""

    model: Model
    counts: dict[str, int]

    def to_dict(self) -> dict:
        return {**self.model.to_dict(), "embeddings": self.counts}

    def to_text(self) -> str:
        m = self.model
        counts = ", ".join(f"{k} {v:,}" for k, v in self.counts.items()) or "no products"
        return (
            f"{m.name}: {m.source} ({m.family}, {m.dimension} dims {m.storage}, {m.fusion} w={m.image_weight})"
            f" — {counts}"
        )


def list_models(conn: psycopg.Connection) -> list[ModelStats]:
    """Every registered model with its embedding counts by status."""
    counts: dict[int, dict[str, int]] = {}
    for model_id, status, n in conn.execute(
        "SELECT model_id, status, count(*) FROM prodmatch.embeddings GROUP BY 1, 2 ORDER BY 1, 2"
    ):
        counts.setdefault(model_id, {})[status] = n
    return [ModelStats(m, counts.get(m.id, {})) for m in _all_models(conn)]


def list_registered(conn: psycopg.Connection) -> list[Model]:
    """Every registered model, oldest first (without `list_models`' embedding counts)."""
    return _all_models(conn)


def get_model(conn: psycopg.Connection, name: str | None = None) -> Model:
    """The model called `name`; without a name, the only registered model."""
    if name is not None:
        model = find_model(conn, name)
        if model is None:
            known = ", ".join(m.name for m in _all_models(conn)) or "none"
            raise ConfigError(
                f"no model named {name!r} (registered: {known}); add one with: prodmatch models add"
            )
        return model
    models = _all_models(conn)
    if not models:
        raise ConfigError("no model is registered yet; add one with: prodmatch models add [MODEL]")
    if len(models) > 1:
        raise ConfigError(
            f"several models are registered ({', '.join(m.name for m in models)}); pick one with --model"
        )
    return models[0]


def find_model(conn: psycopg.Connection, name: str) -> Model | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_MODEL_COLUMNS} FROM prodmatch.models WHERE name = %s", (name,)
        ).fetchone()
    return Model(**row) if row else None


def drop_model(conn: psycopg.Connection, name: str) -> Model:
    """Remove a model, its embeddings and its indexes, without blocking readers or writers.

    The indexes go with DROP INDEX CONCURRENTLY and the rows in batches of `BATCH_ROWS`, each in its own short
    transaction: a plain DROP INDEX would hold an ACCESS EXCLUSIVE lock on `embeddings` (every `similar()` and
    every product INSERT waits) until one big cascading DELETE finished. Commits `conn` first.
    """
    model = get_model(conn, name)
    conn.commit()  # our own open snapshot would make the concurrent drop wait for us forever
    with autocommit_twin(conn) as twin:
        for space in SPACES:
            twin.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier("prodmatch", index_name(model, space))
                )
            )
        while twin.execute(
            "DELETE FROM prodmatch.embeddings WHERE model_id = %s AND product_id IN"
            " (SELECT product_id FROM prodmatch.embeddings WHERE model_id = %s LIMIT %s)",
            (model.id, model.id, BATCH_ROWS),
        ).rowcount:
            pass
        twin.execute("DELETE FROM prodmatch.models WHERE id = %s", (model.id,))  # and rows added meanwhile
    return model


def autocommit_twin(conn: psycopg.Connection) -> psycopg.Connection:
    """A second, autocommit connection to the same database as `conn` (for ... CONCURRENTLY)."""
    return psycopg.connect(
        conn.info.dsn, password=conn.info.password, autocommit=True, application_name="prodmatch"
    )


def update_settings(conn: psycopg.Connection, model: Model, values: dict) -> Model:
    """Merge `values` into the model's settings (e.g. a recommended threshold)."""
    conn.execute(
        "UPDATE prodmatch.models SET settings = settings || %s WHERE id = %s",
        (psycopg.types.json.Jsonb(values), model.id),
    )
    return get_model(conn, model.name)


def default_name(source: str) -> str:
    """A short name from a hub id or folder: openai/clip-vit-base-patch32 -> clip-vit-base-patch32."""
    tail = Path(source.rstrip("/\\")).name or source
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-") or "model"


def vector_type(dimension: int) -> str:
    """The type the index casts to: `vector` up to 2,000 dimensions, `halfvec` above."""
    return "vector" if dimension <= HNSW_MAX_VECTOR_DIM else "halfvec"


def space_dimension(model: Model, space: str) -> int:
    if space not in SPACES:
        raise ConfigError(f"unknown space {space!r}; choose one of {', '.join(SPACES)}")
    return model.fused_dimension if space == "fused" else model.dimension


def index_type(model: Model, space: str) -> str:
    """The type the model's index on `space` casts to: `halfvec` for halfvec storage, else `vector_type`."""
    return "halfvec" if model.storage == "halfvec" else vector_type(space_dimension(model, space))


def vector_column(model: Model, space: str) -> str:
    """The column of `prodmatch.embeddings` holding the model's `space` vectors: `fused_vector` or `fused_half`."""
    space_dimension(model, space)  # validates the space
    return f"{space}_half" if model.storage == "halfvec" else f"{space}_vector"


def vector_expression(model: Model, space: str, alias: str | None = "e") -> sql.Composed:
    """`(e.fused_vector::vector(512))` or `(e.fused_half::halfvec(512))`: what the model's HNSW index is on."""
    dim = space_dimension(model, space)
    name = vector_column(model, space)
    column = sql.Identifier(alias, name) if alias else sql.Identifier(name)
    return sql.SQL("({}::{}({}))").format(column, sql.SQL(index_type(model, space)), sql.Literal(dim))


def index_name(model: Model, space: str) -> str:
    return f"embeddings_model_{model.id}_{space}_hnsw"


def create_indexes(
    conn: psycopg.Connection, model: Model, build: IndexBuild | None = None, spaces: Sequence[str] = SPACES
) -> None:
    """One partial HNSW cosine index per vector kind, on this model's rows only.

    Built with CREATE INDEX CONCURRENTLY, so `conn` must be in autocommit mode: a plain CREATE INDEX holds a
    SHARE lock on `embeddings` that makes every product INSERT (its trigger adds embedding rows) and every
    worker write wait. A build that fails leaves an invalid index, which is dropped before re-raising. `build`
    (default: the settings' `index_build`, sized to the machine) sets the build's memory and parallel workers.
    `spaces` (default: all) limits the build to some of them (benchmarks/citus.py at 1,000,000: the fused one).
    """
    use_index_build(conn, build)
    for space in spaces:
        index = sql.Identifier(index_name(model, space))
        try:
            conn.execute(
                sql.SQL(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON prodmatch.embeddings"
                    " USING hnsw ({expr} {ops}) WHERE model_id = {model_id}"
                ).format(
                    index=index,
                    expr=vector_expression(model, space, alias=None),
                    ops=sql.SQL(f"{index_type(model, space)}_cosine_ops"),
                    model_id=sql.Literal(model.id),
                )
            )
        except psycopg.Error:
            conn.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier("prodmatch", index_name(model, space))
                )
            )
            raise


def use_index_build(
    conn: psycopg.Connection, build: IndexBuild | None = None, *, local: bool = False
) -> None:
    """Set `maintenance_work_mem` and `max_parallel_maintenance_workers` for the index builds that follow on
    `conn` (for its session; with `local`, for its current transaction only)."""
    build = build or load_settings().index_build
    for name, value in (
        ("maintenance_work_mem", build.maintenance_work_mem),
        ("max_parallel_maintenance_workers", str(build.workers)),
    ):
        conn.execute("SELECT set_config(%s, %s, %s)", (name, value, local))


_MODEL_COLUMNS = (
    "id, name, source, revision, family, dimension, fused_dimension, fusion, image_weight, text_template,"
    " settings, storage"
)


def _all_models(conn: psycopg.Connection) -> list[Model]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {_MODEL_COLUMNS} FROM prodmatch.models ORDER BY id").fetchall()
    return [Model(**r) for r in rows]
