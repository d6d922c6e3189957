"""Rows of prodmatch.models and the per-model HNSW indexes that registration creates."""

from __future__ import annotations

import numpy as np

from prodmatch import store as db


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
