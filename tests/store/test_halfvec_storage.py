"""halfvec storage: where a model's vectors are kept, the SQL API on both storages, migration 0007 up and down."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from builders import plan_with_indexes_only
from click.testing import CliRunner

from prodmatch import match as matching
from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.config import Settings
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.errors import DatabaseError
from prodmatch.store.models import get_model
from prodmatch.store.vectors import fetch_vectors


def test_both_storages_side_by_side_give_the_same_neighbours(matched, settings, tiny_clip_dir):
    """`matched` embeds with the default (halfvec) model "clip"; a vector model on the same products must rank
    the same neighbours with the same similarities, to halfvec's precision, through the SQL API."""
    with db.connection(settings) as conn:
        add_model(conn, str(tiny_clip_dir), name="clip32", precision="fp32", storage="vector")
    embed(settings, EmbedOptions(batch_size=16, model="clip32"))
    with db.connection(settings) as conn:
        placed = conn.execute(
            "SELECT m.storage, count(e.fused_vector), count(e.fused_half), count(e.image_half), count(*)"
            " FROM prodmatch.embeddings e JOIN prodmatch.models m ON m.id = e.model_id GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert placed == [("halfvec", 0, 48, 48, 48), ("vector", 48, 0, 0, 48)]
        half = get_model(conn, "clip")
        full = get_model(conn, "clip32")
        ids_h, vec_h = fetch_vectors(conn, half, "fused", None)
        ids_f, vec_f = fetch_vectors(conn, full, "fused", None)
        assert (ids_h == ids_f).all()
        assert np.abs(vec_h - vec_f).max() < 2e-3 and np.abs(vec_h - vec_f).max() > 0  # rounded, not equal
        product = int(ids_h[0])
        for space in ("fused", "image", "text"):
            a = matching.similar(conn, product, k=5, space=space, model="clip")
            b = matching.similar(conn, product, k=5, space=space, model="clip32")
            # The same neighbours in the same order, except where two of them tie to halfvec's precision (the
            # tiny random model gives near ties; which one ranks first then depends on the rounding).
            score = lambda r: getattr(r, f"{space}_similarity")  # noqa: B023, E731
            assert a[0].product_id == b[0].product_id
            for ra, rb in zip(a, b, strict=True):
                assert ra.product_id == rb.product_id or abs(score(ra) - score(rb)) < 2e-3, (space, a, b)
            assert [score(r) for r in a] == pytest.approx([score(r) for r in b], abs=2e-3)
            assert [r.fused_similarity for r in a] == pytest.approx([r.fused_similarity for r in b], abs=2e-3)
        pairs = conn.execute(
            "SELECT source_product_id, target_product_id, fused_similarity, image_similarity"
            " FROM prodmatch.candidates('shop', 'rival', k => 1, model => 'clip') ORDER BY 1"
        ).fetchall()
        assert len(pairs) == 24 and all(p[2] is not None and p[3] is not None for p in pairs)
        # With 72 rows a bitmap scan of the primary key and a sort can cost less than the HNSW index (PostgreSQL 16
        # picked it once the table was analysed): leave the planner only the ordered index scan to choose.
        conn.execute("ANALYZE prodmatch.embeddings")  # as autovacuum may have done before the EXPLAIN
        plan_with_indexes_only(conn)
        d = half.fused_dimension
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                f"EXPLAIN SELECT e.product_id FROM prodmatch.embeddings e WHERE e.model_id = {half.id}"
                f" ORDER BY (e.fused_half::halfvec({d})) <=> %s::halfvec({d}) LIMIT 5",
                (vec_h[0],),
            )
        )
        assert f"embeddings_model_{half.id}_fused_hnsw" in plan
        hits = conn.execute(
            "SELECT product_id FROM prodmatch.search(%s::vector, k => 2, space => 'fused', model => 'clip')",
            (vec_f[0],),
        ).fetchall()
        assert (product,) in hits  # with its exact duplicate rival-0, in either order


def test_cli_models_add_storage_option(settings: Settings, tiny_clip_dir):
    runner = CliRunner(env={"PRODMATCH_DATABASE_URL": settings.database_url})
    added = runner.invoke(main, ["models", "add", str(tiny_clip_dir), "--name", "v", "--storage", "vector"])
    assert added.exit_code == 0, added.output
    assert "vector" in added.output
    default = runner.invoke(main, ["models", "add", str(tiny_clip_dir), "--name", "h", "--json"])
    assert default.exit_code == 0, default.output
    assert '"storage": "halfvec"' in default.output
    wrong = runner.invoke(main, ["models", "add", str(tiny_clip_dir), "--name", "x", "--storage", "int8"])
    assert wrong.exit_code != 0 and "int8" in wrong.output


def test_migration_0007_up_and_down(empty_settings: Settings):
    db.upgrade(empty_settings, "0006")
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
            " VALUES ('old', 'nowhere', 'clip', 4, 4, '{title}')"
        )
    db.upgrade(empty_settings)
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        # an existing model keeps its 4-byte vectors and its index expression
        assert conn.execute("SELECT storage FROM prodmatch.models").fetchone()[0] == "vector"
        assert conn.execute("SELECT prodmatch.vector_expr(1, 'fused')").fetchone()[0] == (
            "(e.fused_vector::vector(4))"
        )
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template,"
            " storage) VALUES ('half', 'nowhere', 'clip', 4, 4, '{title}', 'halfvec')"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE prodmatch.models SET storage = 'float8' WHERE name = 'old'")
    with pytest.raises(DatabaseError, match="models half keep halfvec vectors"):
        db.downgrade(empty_settings, "0006")
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM prodmatch.models WHERE name = 'half'")
    assert db.downgrade(empty_settings, "0006") == "0006"
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'prodmatch'"
                " AND table_name IN ('models', 'embeddings')"
            )
        }
        assert "storage" not in columns and "fused_half" not in columns and "fused_vector" in columns
        assert conn.execute("SELECT prodmatch.vector_expr(1, 'fused')").fetchone()[0] == (
            "(e.fused_vector::vector(4))"
        )
        functions = {r[0] for r in conn.execute("SELECT proname FROM pg_proc WHERE proname = 'index_type'")}
        assert functions == set()
    assert db.upgrade(empty_settings) == db.head_revision()
