"""Database: migrations up, down and up again; status; the embedded default; URLs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
from builders import REPO
from click.testing import CliRunner

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.config import Settings
from prodmatch.store import migrate


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'prodmatch'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrations_up_down_up(empty_settings: Settings):
    assert db.current_revision(empty_settings) is None
    head = db.upgrade(empty_settings)
    assert head == db.head_revision()
    assert {"catalogs", "products", "models", "embeddings", "match_runs", "matches"} <= tables(
        empty_settings.database_url
    )
    assert db.downgrade(empty_settings, "base") is None
    assert tables(empty_settings.database_url) == {"alembic_version"}
    assert db.upgrade(empty_settings) == head
    with psycopg.connect(empty_settings.database_url) as conn:
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    assert {"products_inserted", "products_updated", "products_touch"} <= triggers


def test_alembic_command_line_from_the_repository_root(empty_settings: Settings):
    env = {**os.environ, "PRODMATCH_DATABASE_URL": empty_settings.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert db.current_revision(empty_settings) == db.head_revision()


def test_products_table_has_the_public_columns(settings: Settings):
    with db.connection(settings) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'prodmatch' AND table_name = 'products' ORDER BY ordinal_position"
            )
        ]
    assert columns == [
        "id", "catalog_id", "external_id", "title", "description", "brand", "category", "price",
        "currency", "image", "attributes", "content_hash", "created_at", "updated_at",
    ]  # fmt: skip


def test_db_status_json_reports_versions_revision_and_counts(settings: Settings):
    result = CliRunner().invoke(main, ["--database-url", settings.database_url, "db", "status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["server_version"].startswith(os.environ.get("PGSERVER_POSTGRES_VERSION", "18"))
    assert report["pgvector_version"] >= "0.7"
    assert report["schema_revision"] == report["head_revision"] == db.head_revision()
    assert report["row_counts"]["products"] == 0
    assert report["embedded"] is False


def test_cli_upgrade_and_downgrade(empty_settings: Settings):
    runner = CliRunner()
    base = ["--database-url", empty_settings.database_url, "db"]
    up = runner.invoke(main, [*base, "upgrade"])
    assert up.exit_code == 0 and db.head_revision() in up.output
    down = runner.invoke(main, [*base, "downgrade", "base"])
    assert down.exit_code == 0 and "base" in down.output


def test_embedded_server_is_the_default_and_is_reused(tmp_path: Path):
    home = tmp_path / "home"
    code = (
        "import json, sys; from prodmatch import store as db; from prodmatch.config import load_settings;"
        "s = load_settings(); db.upgrade(s); st = db.status(s);"
        "print(json.dumps([st.embedded, st.schema_revision, str(s.pgdata)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PRODMATCH_DATABASE_URL"}
    env["PRODMATCH_HOME"] = str(home)
    for _ in range(2):  # the second run finds the data the first one left
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        embedded, revision, pgdata = json.loads(done.stdout)
        assert embedded and revision == db.head_revision()
        assert Path(pgdata) == home / "pgdata" and (home / "pgdata" / "PG_VERSION").exists()


def test_a_command_on_a_database_without_the_newest_schema_says_to_upgrade(
    empty_settings: Settings, tmp_path: Path
):
    """On a configured server prodmatch never migrates by itself: a command that meets a missing or older schema
    ends in one line naming `prodmatch db upgrade`, not a traceback; after the upgrade the same command runs."""
    shop = tmp_path / "shop.csv"
    shop.write_text("id,title\n1,Kettle\n", encoding="utf-8")
    runner = CliRunner()
    base = ["--database-url", empty_settings.database_url]
    head = db.head_revision()
    result = runner.invoke(main, [*base, "ingest", str(shop), "--catalog", "shop"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"has no prodmatch schema; this prodmatch needs revision {head}: run prodmatch db upgrade" in (
        result.output
    )
    assert db.upgrade(empty_settings, "0010") == "0010"  # before the clusters' tables
    result = runner.invoke(main, [*base, "clusters", "build"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"schema at revision 0010; this prodmatch needs revision {head}" in result.output
    db.upgrade(empty_settings)
    assert runner.invoke(main, [*base, "ingest", str(shop), "--catalog", "shop"]).exit_code == 0
    assert runner.invoke(main, [*base, "clusters", "build"]).exit_code == 0


def test_migration_files_are_named_after_their_revision():
    """The check before each command on the embedded database reads the newest revision from file names."""
    assert migrate.newest_migration_file() == db.head_revision()
    for path in (migrate.resource_dir("migrations") / "versions").glob("*.py"):
        assert re.search(rf"^revision = \"{path.name.split('_', 1)[0]}\"$", path.read_text(), re.M), path.name


def test_the_first_command_on_a_fresh_embedded_database_creates_its_schema(tmp_path: Path):
    """The embedded server is prodmatch's own: `ingest` on a fresh PRODMATCH_HOME needs no `db upgrade`."""
    shop = tmp_path / "shop.csv"
    shop.write_text("id,title\n1,Kettle\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PRODMATCH_DATABASE_URL"}
    env["PRODMATCH_HOME"] = str(tmp_path / "home")
    run = [sys.executable, "-m", "prodmatch.cli"]
    first = subprocess.run(
        [*run, "ingest", str(shop), "--catalog", "shop"], env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    assert f"created prodmatch's tables in the embedded database (schema revision {db.head_revision()})" in (
        first.stderr
    )
    second = subprocess.run([*run, "catalog", "list"], env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "shop" in second.stdout
    assert "created" not in second.stderr and "migrated" not in second.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path):
    url = "postgresql://someone:secret@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(main, ["--database-url", url, "db", "status"])
    assert result.exit_code == 1
    assert "cannot connect to postgresql://someone:***@127.0.0.1:1/nowhere" in result.output
    assert "secret" not in result.output


def test_mask_url():
    assert db.mask_url("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert db.mask_url("host=h password=secret user=u") == "host=h password=*** user=u"


def test_db_shell_runs_sql_on_the_embedded_database(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "PRODMATCH_DATABASE_URL"}
    env["PRODMATCH_HOME"] = str(tmp_path / "home")
    run = [sys.executable, "-m", "prodmatch.cli"]
    assert subprocess.run([*run, "db", "upgrade"], env=env, capture_output=True).returncode == 0
    done = subprocess.run(
        [*run, "db", "shell", "-At", "-c", "SELECT count(*) FROM prodmatch.products", "-c", "SELECT 6 * 7"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "42"]
    failed = subprocess.run(
        [*run, "db", "shell", "-c", "SELECT nope"], env=env, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "nope" in failed.stderr


def test_schema_py_and_the_migrations_agree(settings: Settings):
    env = {**os.environ, "PRODMATCH_DATABASE_URL": settings.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "check"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr


def test_analyze_if_stale_analyzes_only_tables_changed_a_lot(conn: psycopg.Connection):
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop')")
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
        " SELECT (SELECT id FROM prodmatch.catalogs), 'p' || i, 'item ' || i FROM generate_series(1, 2000) i"
    )
    conn.commit()
    conn.execute("SELECT pg_stat_force_next_flush()")  # statistics reach pg_stat_* at the next idle moment
    conn.commit()

    assert db.analyze_if_stale(conn) == ["products"]
    conn.commit()
    analyzed = conn.execute(
        "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE schemaname = 'prodmatch'"
        " AND relname = 'products'"
    ).fetchone()[0]
    assert analyzed
    assert db.analyze_if_stale(conn) == []  # fresh statistics: nothing to do


def test_migration_0003_sets_and_resets_the_ef_search_default(empty_settings: Settings):
    def ef_defaults() -> set[str]:
        with psycopg.connect(empty_settings.database_url) as conn:
            arguments = [
                r[0]
                for r in conn.execute(
                    "SELECT pg_get_function_arguments(p.oid) FROM pg_proc p"
                    " JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname = 'prodmatch' AND p.proname IN ('similar', 'search', 'candidates')"
                )
            ]
        assert len(arguments) == 3
        return {a.split("ef_search integer DEFAULT ")[1].split(",")[0] for a in arguments}

    db.upgrade(empty_settings)
    assert ef_defaults() == {"100"}
    assert db.downgrade(empty_settings, "0002") == "0002"
    assert ef_defaults() == {"NULL::integer"}
    db.upgrade(empty_settings)
    assert ef_defaults() == {"100"}


def test_migration_0008_adds_change_indexes_and_notifies_then_goes(empty_settings: Settings):
    def present(conn) -> tuple[set[str], set[str]]:
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'prodmatch'")
            if r[0].endswith(("_updated_at_idx", "_embedded_at_idx", "_weighted_documents_idx"))
        }
        triggers = {
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgname IN ('products_changed', 'embeddings_written')"
            )
        }
        return indexes, triggers

    db.upgrade(empty_settings)
    with (
        psycopg.connect(empty_settings.database_url, autocommit=True) as conn,
        psycopg.connect(empty_settings.database_url, autocommit=True) as listener,
    ):
        assert present(conn) == (
            {
                "products_updated_at_idx",
                "lexical_updated_at_idx",
                "lexical_weighted_documents_idx",
                "embeddings_embedded_at_idx",
            },
            {"products_changed", "embeddings_written"},
        )
        listener.execute("LISTEN prodmatch_changed")
        catalog = conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('c') RETURNING id").fetchone()[
            0
        ]
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title) VALUES (%s, 'a', 't')",
            (catalog,),
        )
        conn.execute("DELETE FROM prodmatch.products WHERE external_id = 'a'")
        got = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
        assert got == ["products insert", "products delete"]
    assert db.downgrade(empty_settings, "0007") == "0007"
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        assert present(conn) == (set(), set())
        assert not conn.execute("SELECT 1 FROM pg_proc WHERE proname = 'notify_changed'").fetchone()
