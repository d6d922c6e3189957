"""docs/scaling/partition_by_catalog.sql: products and embeddings LIST-partitioned by catalogue, with the triggers."""

from __future__ import annotations

from builders import REPO


def test_partition_by_catalog_recipe_keeps_the_pending_triggers_and_prunes(conn):
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop'), ('rival'), ('small')")
    conn.execute(
        "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
        " VALUES ('m1', 'x', 'clip', 4, 4, '{title}'), ('m2', 'x', 'clip', 4, 4, '{title}')"
    )
    conn.execute((REPO / "docs" / "scaling" / "partition_by_catalog.sql").read_text())
    conn.execute("SELECT part.add_catalog_partitions(1), part.add_catalog_partitions(2)")  # 'small': DEFAULT
    conn.execute(
        "INSERT INTO part.products (catalog_id, external_id, title)"
        " SELECT c, 'p' || i, 'thing ' || i FROM generate_series(1, 3) c, generate_series(1, 5) i"
    )
    placed = conn.execute(
        "SELECT tableoid::regclass::text, count(*) FROM part.products GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert placed == [("part.products_1", 5), ("part.products_2", 5), ("part.products_default", 5)]
    # the statement trigger queued every product for every model, in the product's catalogue partition
    pending = conn.execute(
        "SELECT tableoid::regclass::text, status, count(*) FROM part.embeddings GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    assert pending == [
        ("part.embeddings_1", "pending", 10),
        ("part.embeddings_2", "pending", 10),
        ("part.embeddings_default", "pending", 10),
    ]
    conn.execute("UPDATE part.embeddings SET status = 'done'")
    conn.execute("UPDATE part.products SET title = 'changed' WHERE catalog_id = 2 AND external_id = 'p1'")
    conn.execute("UPDATE part.products SET price = price WHERE catalog_id = 1")  # no content change
    again = conn.execute(
        "SELECT e.catalog_id, p.external_id, count(*) FROM part.embeddings e"
        " JOIN part.products p ON p.catalog_id = e.catalog_id AND p.id = e.product_id"
        " WHERE e.status = 'pending' GROUP BY 1, 2"
    ).fetchall()
    assert again == [(2, "p1", 2)]
    conn.execute("DELETE FROM part.products WHERE catalog_id = 3 AND external_id = 'p2'")
    assert conn.execute("SELECT count(*) FROM part.embeddings WHERE catalog_id = 3").fetchone()[0] == 8
    # ids stay unique across partitions, as prodmatch's API assumes
    ids = conn.execute("SELECT count(DISTINCT id), count(*) FROM part.products").fetchone()
    assert ids[0] == ids[1] == 14
    conn.execute("ANALYZE part.products")
    plan = "\n".join(
        r[0]
        for r in conn.execute("EXPLAIN SELECT id FROM part.products WHERE catalog_id = 2 AND title = 'x'")
    )
    assert "products_2" in plan and "products_1" not in plan and "products_default" not in plan
