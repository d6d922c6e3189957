"""prodmatch.vectors_v (migration 0012, sql/vectors.sql): every model's vectors as `vector`, whatever its storage,
and the documented nearest-neighbour shapes that read their query vector from it still use the HNSW index."""

from __future__ import annotations

import pytest
from builders import plan_with_indexes_only
from psycopg import sql

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.store.models import get_model, index_name, index_type, space_dimension, vector_expression


def test_a_halfvec_models_vectors_are_read_through_the_view(settings, matched):
    assert matched.storage == "halfvec"
    with db.connection(settings) as conn:
        stored = conn.execute(
            "SELECT count(*) FILTER (WHERE fused_vector IS NOT NULL), count(*) FILTER (WHERE fused_half IS NOT NULL)"
            " FROM prodmatch.embeddings WHERE model_id = %s",
            (matched.id,),
        ).fetchone()
        assert stored == (0, 48)  # the analyst's trap: the *_vector columns are empty for halfvec storage
        rows = conn.execute(
            "SELECT v.catalog, v.external_id, v.storage, v.image_vector = e.image_half::vector,"
            " v.text_vector = e.text_half::vector, v.fused_vector = e.fused_half::vector"
            " FROM prodmatch.vectors_v v JOIN prodmatch.embeddings e USING (model_id, product_id)"
            " WHERE v.model = 'clip'"
        ).fetchall()
    assert len(rows) == 48 and {(r[0], r[2]) for r in rows} == {("shop", "halfvec"), ("rival", "halfvec")}
    assert all(r[3] and r[4] and r[5] for r in rows)


def _plan(conn, query: sql.Composable, params: tuple) -> str:
    with conn.transaction():
        plan_with_indexes_only(conn, local=True)  # a 48-row table: ask whether the index can be used
        return "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, params))


@pytest.mark.parametrize("space", ["fused", "image", "text"])
def test_the_documented_nearest_neighbour_query_uses_the_hnsw_index(settings, matched, space):
    # docs/sql.md: order by the model's index expression, the query vector read from vectors_v and cast to the
    # index's type (prodmatch.index_type).
    with db.connection(settings) as conn:
        model = get_model(conn, "clip")
        query = sql.SQL(
            "SELECT e.product_id FROM prodmatch.embeddings e WHERE e.model_id = %s"
            " ORDER BY {expr} <=> (SELECT {column} FROM prodmatch.vectors_v"
            "  WHERE model = 'clip' AND catalog = 'rival' AND external_id = 'rival-20')::{type}({dim}) LIMIT 5"
        ).format(
            expr=vector_expression(model, space),
            column=sql.Identifier(f"{space}_vector"),
            type=sql.SQL(index_type(model, space)),
            dim=sql.Literal(space_dimension(model, space)),
        )
        plan = _plan(conn, query, (model.id,))
        assert f"Index Scan using {index_name(model, space)}" in plan, plan
        nearest = [r[0] for r in conn.execute(query, (model.id,))]
        rival_20 = conn.execute(
            "SELECT product_id FROM prodmatch.vectors_v WHERE catalog = 'rival' AND external_id = 'rival-20'"
        ).fetchone()[0]
    assert nearest[0] == rival_20 and len(nearest) == 5


def test_search_with_a_query_vector_from_the_view(settings, matched):
    # sql/vectors.sql's example: prodmatch.search (HNSW inside) fed with a vector read through the view.
    with db.connection(settings) as conn:
        rows = conn.execute(
            "SELECT external_id, similarity FROM prodmatch.search((SELECT fused_vector FROM prodmatch.vectors_v"
            "  WHERE model = 'clip' AND catalog = 'rival' AND external_id = 'rival-20'),"
            " k => 3, space => 'fused', model => 'clip')"
        ).fetchall()
    assert rows[0][0] == "rival-20" and rows[0][1] == pytest.approx(1.0, abs=1e-3)


def test_downgrade_drops_the_view_and_upgrade_brings_it_back(empty_settings: Settings):
    def has_view() -> bool:
        with db.connection(empty_settings) as conn:
            return conn.execute("SELECT to_regclass('prodmatch.vectors_v') IS NOT NULL").fetchone()[0]

    db.upgrade(empty_settings)
    assert has_view()
    db.downgrade(empty_settings, "0011")
    assert not has_view()
    db.upgrade(empty_settings)
    assert has_view()
