"""Registering a model: probe it, then store it with its HNSW indexes and queue every product for it.

`add_model` loads the encoder once (`embed.encoders`) to learn its family and vector dimension, checks the
fusion method and text template (`embed.fusion`, `embed.text`), and in one transaction inserts the
`prodmatch.models` row, creates its partial HNSW indexes (`store.models.create_indexes`) and marks every product
pending, so the worker (`embed.worker`) starts on them. Behind `prodmatch models add` and fine-tuning.
"""

from __future__ import annotations

import psycopg

from prodmatch.embed.fusion import fused_dimension
from prodmatch.embed.text import DEFAULT_TEXT_TEMPLATE, check_template
from prodmatch.errors import ConfigError
from prodmatch.store.models import (
    HNSW_MAX_HALFVEC_DIM,
    Model,
    create_indexes,
    default_name,
    find_model,
    get_model,
)


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
) -> Model:
    """Load `source` to read its family and dimension, register it, index it and queue every product."""
    from prodmatch.embed.encoders import Encoder

    check_template(text_template)
    fused_dimension(1, fusion)  # validates the method
    if not 0.0 <= image_weight <= 1.0:
        raise ConfigError(f"--image-weight must be between 0 and 1, got {image_weight}")
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
        row = conn.execute(
            "INSERT INTO prodmatch.models (name, source, revision, family, dimension, fused_dimension, fusion,"
            " image_weight, text_template, settings) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
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
                psycopg.types.json.Jsonb({"max_text_tokens": info.max_text_tokens}),
            ),
        ).fetchone()
        model = get_model(conn, name)
        assert model.id == row[0]
        create_indexes(conn, model)
        conn.execute(
            "INSERT INTO prodmatch.embeddings (model_id, product_id) SELECT %s, id FROM prodmatch.products",
            (model.id,),
        )
        conn.execute("SELECT pg_notify('prodmatch_pending', 'model')")
    return model
