"""Administration: a read-only role for analysts (`prodmatch db grant-reader`)."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner

from prodmatch import match as matching
from prodmatch import store as db
from prodmatch.cli import main


def test_grant_reader_can_read_but_not_write(settings, matched, pg_server):
    with db.connection(settings) as conn:
        matching.link(conn, "shop", "rival", k=2)
        conn.execute("DROP ROLE IF EXISTS analyst")
        conn.execute("CREATE ROLE analyst LOGIN")
        conn.commit()
    runner = CliRunner()
    result = runner.invoke(main, ["--database-url", settings.database_url, "db", "grant-reader", "analyst"])
    assert result.exit_code == 0, result.output
    missing = runner.invoke(main, ["--database-url", settings.database_url, "db", "grant-reader", "nobody"])
    assert missing.exit_code == 1 and "CREATE ROLE" in missing.output
    url = settings.database_url.replace("postgres:@", "analyst:@")
    with psycopg.connect(url, autocommit=True) as reader:
        assert reader.execute("SELECT count(*) FROM prodmatch.matches_v").fetchone()[0] == 48
        product = reader.execute("SELECT id FROM prodmatch.products ORDER BY id LIMIT 1").fetchone()[0]
        assert len(reader.execute("SELECT * FROM prodmatch.similar(%s, k => 3)", (product,)).fetchall()) == 3
        for statement in (
            "INSERT INTO prodmatch.catalogs (name) VALUES ('x')",
            "UPDATE prodmatch.products SET title = 'x'",
            "DELETE FROM prodmatch.matches",
            "ALTER TABLE prodmatch.products ADD COLUMN x int",
            "DROP VIEW prodmatch.matches_v",
            "CREATE TABLE prodmatch.x (id int)",
            "TRUNCATE prodmatch.embeddings",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(statement)
    with db.connection(settings) as conn:
        conn.execute("REASSIGN OWNED BY analyst TO postgres; DROP OWNED BY analyst; DROP ROLE analyst")
