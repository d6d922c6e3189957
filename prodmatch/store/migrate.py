"""Schema migrations: run Alembic's upgrade and downgrade on the prodmatch schema, and report revisions.

The migrations themselves live in `migrations/` (Alembic) and load the SQL API from `sql/` through
`apply_sql_file`; `store.schema` holds the SQLAlchemy tables they are checked against. `store.server` provides
the connections, `store.admin` reports the revision in `prodmatch db status`.

`upgrade` / `downgrade` move the schema; `apply_sql_file` loads one file of `sql/` from inside a migration. Every
connection failure, whether psycopg's or SQLAlchemy's, becomes a one-line DatabaseError with no password in it.
"""

from __future__ import annotations

import logging
import time

import psycopg

from prodmatch.config import Settings
from prodmatch.errors import DatabaseError, ProdmatchError
from prodmatch.store.distribute import apply_statements, distribute, is_citus
from prodmatch.store.schema import SCHEMA
from prodmatch.store.server import (
    connect_error,
    connection,
    database_url,
    ensure_pgvector,
    mask_url,
    resource_dir,
    scrub_password,
    sqlalchemy_url,
)

log = logging.getLogger(__name__)


# `upgrade` on Citus: how often distributing is tried again after Citus cancelled it in a distributed deadlock
# (a worker writing embeddings while the trigger DDL runs); the transaction is rolled back whole, so a retry is safe
DEADLOCK_RETRIES = 5


def upgrade(settings: Settings, revision: str = "head") -> str | None:
    """Migrate the schema up to `revision`; returns the revision reached. On a Citus coordinator the tables are
    then distributed (`store.distribute`), tried again when Citus cancels it in a distributed deadlock with
    work running beside it (up to DEADLOCK_RETRIES times, a little later each time)."""
    _run_alembic(settings, "upgrade", revision)
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            with connection(settings) as conn:
                if is_citus(conn) and _current_revision(conn) is not None:
                    distribute(conn)
            break
        except psycopg.errors.DeadlockDetected as error:
            if attempt == DEADLOCK_RETRIES:
                raise DatabaseError(
                    f"distributing the schema on Citus deadlocked {attempt + 1} times with work running beside "
                    f"it: {str(error).splitlines()[0]}; stop the workers (embed --watch, link --watch) and run "
                    "prodmatch db upgrade again"
                ) from None
            delay = 0.5 * (attempt + 1)
            log.warning("%s; distributing again in %.1f s", str(error).splitlines()[0], delay)
            time.sleep(delay)
    return current_revision(settings)


def downgrade(settings: Settings, revision: str) -> str | None:
    """Migrate the schema down to `revision` ("base" removes every prodmatch table)."""
    _run_alembic(settings, "downgrade", revision)
    return current_revision(settings)


def current_revision(settings: Settings) -> str | None:
    """The Alembic revision the database is at, or None before the first migration."""
    with connection(settings) as conn:
        return _current_revision(conn)


def schema_behind(settings: Settings) -> tuple[str | None, str | None] | None:
    """(the database's revision, this prodmatch's newest) when the schema is missing or older, else None.

    None too when the database is at a revision this prodmatch does not know (a newer prodmatch migrated it).
    Asked before every CLI command on the embedded database: a schema at the newest migration file's revision
    is answered without loading Alembic (~0.13 s of a ~1 s command)."""
    current = current_revision(settings)
    if current is not None and current == newest_migration_file():
        return None
    script = _script_directory()
    head = script.get_current_head()
    if current == head or (current is not None and not _known_revision(script, current)):
        return None
    return current, head


def ensure_embedded_schema(settings: Settings) -> str | None:
    """Bring the embedded database's schema to the newest revision; a line saying what was done, or None.

    The embedded server is prodmatch's own, so a first command on a fresh `PRODMATCH_HOME` (or after
    prodmatch was updated) needs no `db upgrade`; a configured server is never migrated without being asked."""
    if settings.database_url:
        return None
    behind = schema_behind(settings)
    if behind is None:
        return None
    current, head = behind
    upgrade(settings)
    if current is None:
        return f"created prodmatch's tables in the embedded database (schema revision {head})"
    return f"migrated the embedded database's schema from revision {current} to {head}"


def schema_hint(settings: Settings) -> str | None:
    """A one-line explanation when a command failed because the schema is missing or older, else None."""
    try:
        behind = schema_behind(settings)
    except ProdmatchError:
        return None
    if behind is None:
        return None
    current, head = behind
    where = f"the database {mask_url(database_url(settings))}"
    found = "has no prodmatch schema" if current is None else f"has prodmatch's schema at revision {current}"
    return f"{where} {found}; this prodmatch needs revision {head}: run prodmatch db upgrade"


def newest_migration_file() -> str:
    """The revision the newest file of `migrations/versions` is named after ("0015_units_..." -> "0015"): every
    migration file starts with its revision, so this is `head_revision` read from file names alone (tested)."""
    names = (path.name for path in (resource_dir("migrations") / "versions").glob("[0-9]*_*.py"))
    return max(names, default="").split("_", 1)[0]


def head_revision() -> str | None:
    """The newest revision in `migrations/`."""
    return _script_directory().get_current_head()


def apply_sql_file(bind, name: str) -> None:
    """Run one file of `sql/` (functions, views, triggers) on a migration's connection."""
    conn = bind.connection.driver_connection
    if is_citus(conn):
        apply_statements(conn, name)  # Citus refuses several DDL commands in one query string
        return
    apply_sql_text(conn, name)


def apply_sql_text(conn: psycopg.Connection, name: str) -> None:
    """Run one file of `sql/` on a psycopg connection."""
    text = (resource_dir("sql") / name).read_text(encoding="utf-8")
    # Straight to psycopg with no parameters, so `%` in format() strings is not taken for a placeholder.
    conn.execute(text)


def _known_revision(script, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _script_directory():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _run_alembic(settings: Settings, command_name: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError
    from sqlalchemy import create_engine
    from sqlalchemy import exc as sa_exc

    url = database_url(settings)
    try:
        engine = create_engine(sqlalchemy_url(url), poolclass=_null_pool())
    except sa_exc.ArgumentError as exc:
        raise DatabaseError(
            f"the database URL {mask_url(url)} is not valid: {scrub_password(str(exc), url)}"
        ) from None
    try:
        with engine.begin() as sa_conn:
            ensure_pgvector(sa_conn.connection.driver_connection, url)
            if is_citus(sa_conn.connection.driver_connection):
                # the migrations drop and create triggers on tables that may be distributed (sql/citus.sql)
                sa_conn.connection.driver_connection.execute("SET LOCAL citus.enable_unsafe_triggers = on")
            config = _alembic_config()
            config.attributes["connection"] = sa_conn
            getattr(command, command_name)(config, revision)
    except (psycopg.OperationalError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise connect_error(url, getattr(exc, "orig", None) or exc) from None
    except sa_exc.DBAPIError as exc:
        first = str(exc.orig or exc).splitlines()[0]
        raise DatabaseError(f"{command_name} {revision} failed: {scrub_password(first, url)}") from exc
    except CommandError as exc:
        raise DatabaseError(f"{command_name} {revision}: {exc}") from exc
    finally:
        engine.dispose()


def _alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    return config


def _null_pool():
    from sqlalchemy.pool import NullPool

    return NullPool


def _current_revision(conn: psycopg.Connection) -> str | None:
    if not _table_exists(conn, "alembic_version"):
        return None
    row = conn.execute("SELECT version_num FROM prodmatch.alembic_version").fetchone()
    return row[0] if row else None


def _table_exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{table}",)).fetchone()[0]
