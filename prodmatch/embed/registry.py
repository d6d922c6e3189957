"""Register an embedding model: read its family and dimension, add its row and indexes, queue every product.

Nothing here holds a lock an application notices: the model row is committed on its own, the HNSW indexes are
built with CREATE INDEX CONCURRENTLY, and the pending rows go in batches of `BATCH_ROWS`, each committed.
Neighbours: `store.models` holds the SQL for model rows and indexes; `embed.worker` fills the pending vectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg

from prodmatch.config import IndexBuild
from prodmatch.embed.fusion import fused_dimension
from prodmatch.embed.text import DEFAULT_TEXT_TEMPLATE, check_template
from prodmatch.errors import ConfigError
from prodmatch.store.models import (
    BATCH_ROWS,
    DEFAULT_STORAGE,
    HNSW_MAX_HALFVEC_DIM,
    STORAGES,
    Model,
    autocommit_twin,
    create_indexes,
    default_name,
    drop_model,
    find_model,
    get_model,
)

# Short names for the models docs/models.md recommends: `prodmatch models add multilingual`. An existing path of
# the same name wins, so a local folder called "clip" is still read as a folder.
MODEL_ALIASES = {
    "clip": "openai/clip-vit-base-patch32",  # English only; the default
    "multilingual": "google/siglip2-base-patch16-256",  # 100+ languages: Russian, Chinese, ...
}


def resolve_model_alias(source: str) -> str:
    """The hub id an alias stands for (see `MODEL_ALIASES`); any other source, or an existing path, unchanged."""
    if os.path.exists(os.path.expanduser(source)):
        return source
    return MODEL_ALIASES.get(source, source)


# A checkpoint whose config.json carries this key set to true has random weights (prodmatch.demo.toymodels):
# registering it records `random_weights` in the model's settings (Model.random_weights).
RANDOM_WEIGHTS_FLAG = "prodmatch_random_weights"


def add_model(
    conn: psycopg.Connection,
    source: str,
    *,
    name: str | None = None,
    revision: str | None = None,
    fusion: str = "mean",
    image_weight: float = 0.5,
    text_template: str = DEFAULT_TEXT_TEMPLATE,
    precision: str = "auto",
    storage: str = DEFAULT_STORAGE,
    build: IndexBuild | None = None,
) -> Model:
    """Load `source` to read its family and dimension, register it, index it and queue every product.

    `source` is a hub id, a local directory or an alias from `MODEL_ALIASES` (stored as the hub id it stands for).

    `storage` is "halfvec" (2-byte floats: half the table and HNSW index size) or "vector" (4-byte floats);
    `build` sizes the HNSW builds (default: the settings' `index_build`).
    """
    from prodmatch.embed.encoders import Encoder

    check_template(text_template)
    fused_dimension(1, fusion)  # validates the method
    if not 0.0 <= image_weight <= 1.0:
        raise ConfigError(f"--image-weight must be between 0 and 1, got {image_weight}")
    if storage not in STORAGES:
        raise ConfigError(f"--storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    source = resolve_model_alias(source)
    name = name or default_name(source)
    if find_model(conn, name) is not None:
        raise ConfigError(f"a model named {name!r} is already registered; pick another --name")
    info = Encoder.load(source, revision=revision, precision=precision).info
    fused = fused_dimension(info.dimension, fusion)
    if fused > HNSW_MAX_HALFVEC_DIM:
        raise ConfigError(
            f"{source}: fused vectors of {fused} dimensions exceed pgvector's HNSW limit "
            f"({HNSW_MAX_HALFVEC_DIM}); use --fusion mean"
        )
    with conn.transaction():
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, revision, family, dimension, fused_dimension, fusion,"
            " image_weight, text_template, settings, storage) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                name,
                source,
                revision,
                info.family,
                info.dimension,
                fused,
                fusion,
                image_weight,
                text_template,
                psycopg.types.json.Jsonb(
                    {"max_text_tokens": info.max_text_tokens}
                    | ({"random_weights": True} if has_random_weights(source) else {})
                ),
                storage,
            ),
        )
    model = get_model(conn, name)
    # From this commit on, the products trigger queues new products for the model; we queue the rest.
    conn.commit()
    try:
        with autocommit_twin(conn) as twin:
            create_indexes(twin, model, build)
            _queue_products(twin, model)
            twin.execute("SELECT pg_notify('prodmatch_pending', 'model')")
    except BaseException:
        drop_model(conn, model.name)  # no half-registered model is left behind
        raise
    return model


def has_random_weights(source: str) -> bool:
    """Whether `source` is a local checkpoint marked as random-weight (RANDOM_WEIGHTS_FLAG in config.json)."""
    config = Path(source) / "config.json"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get(RANDOM_WEIGHTS_FLAG) is True
    except (OSError, ValueError, AttributeError):
        return False  # a hub id, or no readable config: the encoder's own loading reports real problems


def _queue_products(conn: psycopg.Connection, model: Model) -> None:
    """A pending embedding row per existing product, BATCH_ROWS per autocommitted statement."""
    last = 0
    while True:
        last = conn.execute(
            """
            WITH batch AS (SELECT id FROM prodmatch.products WHERE id > %(last)s ORDER BY id LIMIT %(n)s),
                 queued AS (INSERT INTO prodmatch.embeddings (model_id, product_id)
                            SELECT %(model)s, id FROM batch ON CONFLICT DO NOTHING)
            SELECT max(id) FROM batch
            """,
            {"last": last, "n": BATCH_ROWS, "model": model.id},
        ).fetchone()[0]
        if last is None:
            return
