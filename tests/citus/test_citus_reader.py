"""`db grant-reader` on Citus: the grants reach the workers' shards, so an analyst's role runs the SQL API there
(`similar()` and `search()` fan out to the shards as that role, `candidates()` opens its own connections to the
workers as that role and reads the shards directly) and gets the owner's answers; writes stay refused on every
table, including the sharded ones."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from prodmatch import store as db
from prodmatch.cli import main

READER = "citus_reader"


def _answers(conn, ids) -> dict:
    query = conn.execute(
        "SELECT fused_half::vector FROM prodmatch.embeddings WHERE product_id = %s", (int(ids[1]),)
    ).fetchone()[0]
    return {
        "similar": conn.execute(
            "SELECT product_id, round(fused_similarity::numeric, 4) FROM prodmatch.similar(%s, k => 5)",
            (int(ids[0]),),
        ).fetchall(),
        "search": conn.execute(
            "SELECT product_id FROM prodmatch.search(%s::vector, k => 5, space => 'fused')", (query,)
        ).fetchall(),
        "candidates": conn.execute(
            "SELECT source_product_id, target_product_id, rank FROM prodmatch.candidates('rival', 'shop', k => 3)"
        ).fetchall(),
        "shards": conn.execute("SELECT count(*) FROM prodmatch.embeddings WHERE status = 'done'").fetchone(),
    }


def test_a_reader_role_runs_the_sql_api_on_the_shards_and_cannot_write(vectors_on_cluster):
    settings, ids = vectors_on_cluster.settings, vectors_on_cluster.ids
    with db.connection(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(READER)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(READER)))
        owner = _answers(conn, ids)
    granted = CliRunner().invoke(
        main, ["--database-url", settings.database_url, "db", "grant-reader", READER]
    )
    assert granted.exit_code == 0, granted.output
    try:
        reader_url = psycopg.conninfo.make_conninfo(settings.database_url, user=READER)
        with psycopg.connect(reader_url, autocommit=True) as reader:
            assert _answers(reader, ids) == owner
            assert owner["candidates"] and owner["shards"][0] == len(ids)
            for statement in (
                "UPDATE prodmatch.embeddings SET status = 'pending'",
                "DELETE FROM prodmatch.matches",
                "INSERT INTO prodmatch.labels (source_product_id, target_product_id, label, labelled_by)"
                " VALUES (1, 2, 'match', 'x')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(statement)
    finally:
        with db.connection(settings, autocommit=True) as conn:
            # the owner by name: `REASSIGN OWNED BY ... TO CURRENT_USER` crashes the Citus 14.0.1 coordinator
            conn.execute(
                sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                    sql.Identifier(READER), sql.Identifier(conn.info.user)
                )
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(READER)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(READER)))
