"""Rows of prodmatch.models and the per-model HNSW indexes that registration creates."""

from __future__ import annotations

import numpy as np
import pytest
from builders import plan_with_indexes_only

from prodmatch import store as db
from prodmatch.embed.registry import add_model
from prodmatch.errors import ConfigError
from prodmatch.store.models import (
    SPACES,
    autocommit_twin,
    create_indexes,
    get_model,
    index_name,
    vector_expression,
)


@pytest.mark.parametrize("storage", ["halfvec", "vector"])
def test_model_registration_creates_three_hnsw_indexes_the_planner_uses(settings, tiny_clip_dir, storage):
    with db.connection(settings) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32", storage=storage)
        assert model.storage == storage
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'prodmatch' AND indexname LIKE %s",
            (f"embeddings_model_{model.id}_%",),
        ).fetchall()
        assert len(indexes) == 3
        column = "_half" if storage == "halfvec" else "_vector"
        assert all(
            "hnsw" in d and f" {storage}_cosine_ops" in d and column in d and f"model_id = {model.id}" in d
            for (d,) in indexes
        )
        plan_with_indexes_only(conn)
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                f"EXPLAIN SELECT product_id FROM prodmatch.embeddings WHERE model_id = {model.id}"
                f" ORDER BY fused{column}::{storage}({model.dimension}) <=> %s::{storage}({model.dimension})"
                " LIMIT 5",
                (np.ones(model.dimension, dtype=np.float32),),
            )
        )
    assert f"embeddings_model_{model.id}_fused_hnsw" in plan


def test_unknown_storage_is_refused(conn, tiny_clip_dir):
    with pytest.raises(ConfigError, match="--storage must be one of vector, halfvec"):
        add_model(conn, str(tiny_clip_dir), name="clip", storage="float8")


# (dimension, fusion, storage): with vector storage, fused vectors of 2000 dimensions are the last `vector`,
# 2001 to 4000 are `halfvec`; with halfvec storage every index is on halfvec.
SHAPES = [
    (32, "mean", "vector"),
    (512, "concat", "vector"),
    (1000, "concat", "vector"),
    (2000, "mean", "vector"),
    (1024, "concat", "vector"),
    (2001, "mean", "vector"),
    (32, "mean", "halfvec"),
    (1024, "concat", "halfvec"),
]


@pytest.mark.parametrize("dimension, fusion, storage", SHAPES)
def test_python_and_sql_index_expressions_agree(conn, dimension, fusion, storage):
    """`store.models.vector_expression` (used to build the indexes) and `prodmatch.vector_expr` (used by the
    SQL API's queries) must produce the same expression, or queries silently stop using the HNSW index."""
    fused = dimension * 2 if fusion == "concat" else dimension
    model_id = conn.execute(
        "INSERT INTO prodmatch.models (name, source, revision, family, dimension, fused_dimension, fusion,"
        " image_weight, text_template, settings, storage) VALUES (%s, 'nowhere', NULL, 'clip', %s, %s, %s, 0.5,"
        " '{title}', '{}', %s) RETURNING id",
        (f"m{dimension}-{fusion}", dimension, fused, fusion, storage),
    ).fetchone()[0]
    model = get_model(conn, f"m{dimension}-{fusion}")
    conn.commit()
    with autocommit_twin(conn) as twin:  # CREATE INDEX CONCURRENTLY runs outside a transaction
        create_indexes(twin, model)
    plan_with_indexes_only(conn)
    for space in SPACES:
        python_form = vector_expression(model, space).as_string(conn).replace('"', "")
        sql_form = conn.execute("SELECT prodmatch.vector_expr(%s, %s)", (model_id, space)).fetchone()[0]
        assert python_form == sql_form
        dim = fused if space == "fused" else dimension
        kind = "vector" if dim <= 2000 and storage == "vector" else "halfvec"
        assert f"::{kind}({dim}))" in sql_form
        assert f".{space}{'_half' if storage == 'halfvec' else '_vector'}::" in sql_form
        assert conn.execute("SELECT prodmatch.index_type(%s, %s)", (model_id, space)).fetchone()[0] == (
            f"{kind}({dim})"
        )
        query = "'[" + ",".join(["1"] * dim) + f"]'::{kind}({dim})"
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT e.product_id FROM prodmatch.embeddings e WHERE e.model_id = {model_id}"
                f" ORDER BY {sql_form} <=> {query} LIMIT 5"
            )
        )
        assert index_name(model, space) in plan
