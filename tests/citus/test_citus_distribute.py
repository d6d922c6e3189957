"""`prodmatch db upgrade` on a Citus coordinator: which tables are sharded or replicated, the shards per worker,
the products triggers in their Citus form, and migrations down and up on the distributed schema."""

from __future__ import annotations

import pytest

from prodmatch import store as db
from prodmatch.store import distribute
from prodmatch.store.schema import metadata

SHARDED = {table for table, _ in distribute.DISTRIBUTED}


def test_every_table_of_the_schema_has_a_place_on_citus():
    """A new table must be placed in store/distribute.py, or `db upgrade` on Citus refuses (runs without Citus)."""
    placed = SHARDED | set(distribute.REFERENCE) | set(distribute.LOCAL)
    assert {table.name for table in metadata.sorted_tables} <= placed


def _layout(conn) -> dict[str, tuple[str, int]]:
    rows = conn.execute(
        "SELECT c.relname, d.partmethod, d.colocationid FROM pg_dist_partition d"
        " JOIN pg_class c ON c.oid = d.logicalrelid WHERE c.relnamespace = 'prodmatch'::regnamespace"
    ).fetchall()
    return {name: (method, colocation) for name, method, colocation in rows}


def test_upgrade_distributes_the_schema(citus_settings):
    assert db.upgrade(citus_settings) == db.head_revision()
    with db.connection(citus_settings) as conn:
        layout = _layout(conn)
        assert {t for t, (method, _) in layout.items() if method == "h"} == SHARDED
        assert {t for t, (method, _) in layout.items() if method == "n"} == set(distribute.REFERENCE)
        assert len({layout[t][1] for t in SHARDED}) == 1  # co-located: joins on product id stay on a worker
        placements = distribute.placements(conn)
        # 4 shards per table (the fixture's citus.shard_count) x 4 tables, spread evenly over the two workers
        assert [p.shards for p in placements] == [8, 8]
        # the SQL API's HNSW defaults where the index scans run
        settings = conn.execute(
            "SELECT DISTINCT result FROM run_command_on_workers($$SELECT current_setting('hnsw.ef_search', true)$$)"
        ).fetchall()
        assert settings == [("100",)]
        views = {r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'prodmatch'")}
        assert {"matches_v", "duplicates_v", "embedding_errors_v", "labels_v"} <= views
    report = db.status(citus_settings)
    assert [p.shards for p in report.shards] == [8, 8]
    assert "8 shards" in report.to_text()
    # a second upgrade changes nothing, and drops the pending triggers' table of before (one row per product)
    with db.connection(citus_settings) as conn:
        conn.execute("CREATE TABLE prodmatch.citus_product_changes (product_id bigint, inserted boolean)")
        conn.commit()
    assert db.upgrade(citus_settings) == db.head_revision()
    with db.connection(citus_settings) as conn:
        assert conn.execute("SELECT to_regclass('prodmatch.citus_product_changes')").fetchone() == (None,)


def test_products_triggers_queue_embeddings_on_the_cluster(citus_settings):
    """Every way an application writes products queues their embeddings (at commit, on Citus)."""
    db.upgrade(citus_settings)
    with db.connection(citus_settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop')")
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
            " VALUES ('m', 'x', 'clip', 4, 4, '{title}')"
        )
        conn.commit()
        values = ", ".join(f"(1, 'p{i}', 'item {i}')" for i in range(1, 11))
        conn.execute(f"INSERT INTO prodmatch.products (catalog_id, external_id, title) VALUES {values}")
        conn.commit()
        # an INSERT ... SELECT that Citus runs on every copy of `products`, and a COPY
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
            " SELECT 1, 'p' || g, 'item ' || g FROM generate_series(11, 15) g"
        )
        conn.commit()
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title) FROM STDIN"
        ) as copy:
            for i in range(16, 21):
                copy.write_row((1, f"p{i}", f"item {i}"))
        # the statement's ids wait for the commit as one row (one deferred firing), not one row per product
        noted = conn.execute(
            "SELECT cardinality(product_ids) FROM prodmatch.citus_product_change_sets"
        ).fetchall()
        assert noted == [(5,)]
        conn.commit()
        statuses = conn.execute("SELECT status, count(*) FROM prodmatch.embeddings GROUP BY 1").fetchall()
        assert statuses == [("pending", 20)]  # one row per product, each on its product's shard
        conn.execute("UPDATE prodmatch.embeddings SET status = 'done'")
        conn.execute("UPDATE prodmatch.products SET title = title || ' v2' WHERE external_id IN ('p1', 'p2')")
        conn.execute("UPDATE prodmatch.products SET updated_at = updated_at WHERE external_id = 'p3'")
        conn.commit()
        pending = conn.execute(
            "SELECT p.external_id FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
            " WHERE e.status = 'pending' ORDER BY 1"
        ).fetchall()
        assert pending == [("p1",), ("p2",)]  # only a content change re-queues
        conn.execute("DELETE FROM prodmatch.products WHERE external_id = 'p1'")
        assert conn.execute("SELECT count(*) FROM prodmatch.embeddings").fetchone()[0] == 19
        assert conn.execute("SELECT count(*) FROM prodmatch.citus_product_change_sets").fetchone()[0] == 0


def test_product_writes_notify_listeners_on_the_coordinator(citus_settings):
    """`embed --watch` and `link --watch` LISTEN on the coordinator: the Citus triggers NOTIFY there, once."""
    db.upgrade(citus_settings)
    with db.connection(citus_settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop')")
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
            " VALUES ('m', 'x', 'clip', 4, 4, '{title}')"
        )
    with db.connection(citus_settings, autocommit=True) as listener, db.connection(citus_settings) as writer:
        listener.execute("LISTEN prodmatch_pending")
        listener.execute("LISTEN prodmatch_changed")
        writer.execute("INSERT INTO prodmatch.products (catalog_id, external_id, title) VALUES (1, 'a', 'x')")
        writer.commit()
        channels = sorted(n.channel for n in listener.notifies(timeout=2, stop_after=2))
    assert channels == ["prodmatch_changed", "prodmatch_pending"]


@pytest.mark.parametrize("down_to", ["0007", "base"])
def test_migrations_go_down_and_up_on_the_cluster(citus_settings, down_to):
    db.upgrade(citus_settings)
    reached = db.downgrade(citus_settings, down_to)
    assert reached == (None if down_to == "base" else down_to)
    assert db.upgrade(citus_settings) == db.head_revision()
    with db.connection(citus_settings) as conn:
        assert set(_layout(conn)) == SHARDED | set(distribute.REFERENCE)
        triggers = {
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'prodmatch.embeddings'::regclass AND NOT tgisinternal"
            )
        }
        assert "embeddings_written" not in triggers  # a shard's NOTIFY would reach no one
