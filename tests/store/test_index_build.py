"""Index builds sized to the machine (config.IndexBuild) and `prodmatch db status`'s index sizes and validity."""

from __future__ import annotations

import json
import os

import numpy as np
import psycopg
import pytest
from builders import products_with_vectors
from click.testing import CliRunner

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.config import IndexBuild, Settings, load_settings
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.errors import ConfigError
from prodmatch.store.admin import index_status
from prodmatch.store.models import autocommit_twin, create_indexes, get_model


def test_index_build_defaults_follow_the_machine_and_the_environment_overrides():
    machine = load_settings(environ={}).index_build
    assert machine.workers == max(0, min(8, (os.cpu_count() or 1) - 1))
    megabytes = int(machine.maintenance_work_mem.removesuffix("MB"))
    assert 64 <= megabytes <= 16 * 1024
    chosen = load_settings(
        environ={"PRODMATCH_MAINTENANCE_WORK_MEM": "3GB", "PRODMATCH_INDEX_WORKERS": "4"}
    ).index_build
    assert chosen == IndexBuild(maintenance_work_mem="3GB", workers=4)
    only_workers = load_settings(environ={"PRODMATCH_INDEX_WORKERS": "0"}).index_build
    assert only_workers.workers == 0 and only_workers.maintenance_work_mem == machine.maintenance_work_mem


@pytest.mark.parametrize(
    "name, value",
    [("PRODMATCH_MAINTENANCE_WORK_MEM", "lots"), ("PRODMATCH_MAINTENANCE_WORK_MEM", "2 GiB"),
     ("PRODMATCH_INDEX_WORKERS", "-1"), ("PRODMATCH_INDEX_WORKERS", "many")],
)  # fmt: skip
def test_bad_index_build_settings_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings(environ={name: value})


def _notices(conn: psycopg.Connection) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda diag: seen.append(diag.message_primary or ""))
    return seen


def test_hnsw_builds_use_the_configured_memory_and_workers(settings, tiny_clip_dir):
    """With 1MB the graph of 4,000 vectors cannot fit and pgvector says so: the setting reached the build."""
    from prodmatch.embed.registry import add_model

    rng = np.random.default_rng(0)
    with db.connection(settings) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip", build=IndexBuild("64MB", 0))
        vectors = rng.normal(size=(4000, model.dimension)).astype(np.float32)
        products_with_vectors(conn, model.id, "big", vectors, ["c"] * len(vectors))
        for space in ("image", "text", "fused"):
            conn.execute(f"DROP INDEX prodmatch.embeddings_model_{model.id}_{space}_hnsw")
        model = get_model(conn, "clip")
        conn.commit()  # an open transaction here would make CREATE INDEX CONCURRENTLY wait for it
        with autocommit_twin(conn) as twin:
            seen = _notices(twin)
            create_indexes(twin, model, IndexBuild("1MB", 1))
            assert twin.execute("SHOW maintenance_work_mem").fetchone()[0] == "1MB"
            assert twin.execute("SHOW max_parallel_maintenance_workers").fetchone()[0] == "1"
        assert any("no longer fits into maintenance_work_mem" in m for m in seen), seen
        with autocommit_twin(conn) as twin:
            for space in ("image", "text", "fused"):
                twin.execute(f"DROP INDEX prodmatch.embeddings_model_{model.id}_{space}_hnsw")
            seen = _notices(twin)
            create_indexes(twin, model, IndexBuild("1GB", 0))
        assert not any("no longer fits" in m for m in seen), seen


def test_lexical_rebuild_uses_the_configured_memory_for_its_transaction_only(conn):
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('big')")
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand)"
        " SELECT 1, 'p' || i, 'widget model ' || i || ' colour ' || (i % 97) || ' size ' || (i % 13), 'acme'"
        " FROM generate_series(1, 3000) i"
    )
    conn.commit()
    seen = _notices(conn)
    before = conn.execute("SHOW maintenance_work_mem").fetchone()[0]
    conn.commit()
    refresh_lexical(conn, build=IndexBuild("1MB", 0))
    assert any("no longer fits into maintenance_work_mem" in m for m in seen), seen
    assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == before  # SET LOCAL: gone after commit


def test_db_status_lists_each_index_with_its_size_and_validity(settings: Settings):
    with db.connection(settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('a')")
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title) VALUES (1, 'x', 't'), (1, 'y', 't')"
        )
        conn.commit()
        with autocommit_twin(conn) as twin, pytest.raises(psycopg.errors.UniqueViolation):
            twin.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY products_title_broken ON prodmatch.products (title)"
            )
        found = {i.name: i for i in index_status(conn)}
    assert found["products_title_broken"].valid is False
    assert found["products_pkey"].valid is True and found["products_pkey"].size_bytes >= 8192
    assert found["lexical_vector_hnsw"].method == "hnsw" and found["lexical_vector_hnsw"].table == "lexical"
    runner = CliRunner()
    as_text = runner.invoke(main, ["--database-url", settings.database_url, "db", "status"])
    assert as_text.exit_code == 0, as_text.output
    line = next(x for x in as_text.output.splitlines() if "products_title_broken" in x)
    assert "INVALID" in line and " B " in line
    pkey = next(x for x in as_text.output.splitlines() if "products_pkey" in x)
    assert "INVALID" not in pkey and "kB" in pkey
    as_json = runner.invoke(main, ["--database-url", settings.database_url, "db", "status", "--json"])
    report = json.loads(as_json.stdout)
    broken = next(i for i in report["indexes"] if i["name"] == "products_title_broken")
    assert broken == {**broken, "valid": False, "table": "products", "method": "btree"}
