"""Rows of prodmatch.models and the per-model HNSW indexes that registration creates."""

from __future__ import annotations

import numpy as np
import pytest

from prodmatch import store as db
from prodmatch.store.models import (
    SPACES,
    autocommit_twin,
    create_indexes,
    get_model,
    index_name,
    vector_expression,
)


def test_model_registration_creates_three_hnsw_indexes_the_planner_uses(settings, clip_model):
    with db.connection(settings) as conn:
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'prodmatch' AND indexname LIKE %s",
            (f"embeddings_model_{clip_model.id}_%",),
        ).fetchall()
        assert len(indexes) == 3
        assert all(
            "hnsw" in d and "vector_cosine_ops" in d and f"model_id = {clip_model.id}" in d
            for (d,) in indexes
        )
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                f"EXPLAIN SELECT product_id FROM prodmatch.embeddings WHERE model_id = {clip_model.id}"
                f" ORDER BY fused_vector::vector({clip_model.dimension}) <=> %s::vector({clip_model.dimension})"
                " LIMIT 5",
                (np.ones(clip_model.dimension, dtype=np.float32),),
            )
        )
    assert f"embeddings_model_{clip_model.id}_fused_hnsw" in plan


# (dimension, fusion): fused vectors of 2000 dimensions are the last `vector`, 2001 to 4000 are `halfvec`.
SHAPES = [(32, "mean"), (512, "concat"), (1000, "concat"), (2000, "mean"), (1024, "concat"), (2001, "mean")]


@pytest.mark.parametrize("dimension, fusion", SHAPES)
def test_python_and_sql_index_expressions_agree(conn, dimension, fusion):
    """`store.models.vector_expression` (used to build the indexes) and `prodmatch.vector_expr` (used by the
    SQL API's queries) must produce the same expression, or queries silently stop using the HNSW index."""
    fused = dimension * 2 if fusion == "concat" else dimension
    model_id = conn.execute(
        "INSERT INTO prodmatch.models (name, source, revision, family, dimension, fused_dimension, fusion,"
        " image_weight, text_template, settings) VALUES (%s, 'nowhere', NULL, 'clip', %s, %s, %s, 0.5, '{title}',"
        " '{}') RETURNING id",
        (f"m{dimension}-{fusion}", dimension, fused, fusion),
    ).fetchone()[0]
    model = get_model(conn, f"m{dimension}-{fusion}")
    conn.commit()
    with autocommit_twin(conn) as twin:  # the indexes are built CONCURRENTLY, outside a transaction
        create_indexes(twin, model)
    conn.execute("SET enable_seqscan = off")
    for space in SPACES:
        python_form = vector_expression(model, space).as_string(conn).replace('"', "")
        sql_form = conn.execute("SELECT prodmatch.vector_expr(%s, %s)", (model_id, space)).fetchone()[0]
        assert python_form == sql_form
        dim = fused if space == "fused" else dimension
        kind = "vector" if dim <= 2000 else "halfvec"
        assert f"::{kind}({dim}))" in sql_form
        query = "'[" + ",".join(["1"] * dim) + f"]'::{kind}({dim})"
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT e.product_id FROM prodmatch.embeddings e WHERE e.model_id = {model_id}"
                f" ORDER BY {sql_form} <=> {query} LIMIT 5"
            )
        )
        assert index_name(model, space) in plan
