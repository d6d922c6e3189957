"""Administration of a prodmatch database: status, a read-only role, a psql shell and fresh planner statistics.

`status` reports the server, pgvector, the migration revision, row counts and every index of the schema with its
size and whether it is valid (`prodmatch db status`; a CREATE INDEX CONCURRENTLY that failed leaves an invalid
index, which costs writes and serves no query);
`grant_reader` lets an existing role read the schema and call the SQL API but change nothing; `psql_command`
builds the command line of `prodmatch db shell`; `analyze_if_stale` runs ANALYZE on tables that changed a lot,
which the embedding worker calls after big runs so that queries use the HNSW indexes at once. Connections come
from `store.server`, revisions from `store.migrate`.

`psql_command` hands psql the connection without its password, which travels in the PGPASSWORD environment
variable instead: a command line is visible to every local user (`ps`), an environment is not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from prodmatch.config import Settings
from prodmatch.errors import DatabaseError
from prodmatch.store.distribute import Placement, is_citus, placements
from prodmatch.store.migrate import _current_revision, _table_exists, head_revision
from prodmatch.store.schema import SCHEMA, STATUS_TABLES
from prodmatch.store.server import (
    _embedded_server,
    connection,
    database_url,
    mask_url,
    pgvector_version,
    split_password,
)


@dataclass(frozen=True)
class IndexStatus:
    """One index of the prodmatch schema: its table, access method, size and whether queries can use it."""

    name: str
    table: str
    method: str
    size_bytes: int
    valid: bool

    def to_text(self) -> str:
        state = (
            ""
            if self.valid
            else "  INVALID (a failed build: DROP INDEX CONCURRENTLY it, then build it again)"
        )
        return f"  {self.name:<44} {self.table:<14} {self.method:<6} {_size(self.size_bytes):>10}{state}"


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
    indexes: list[IndexStatus] = field(default_factory=list)
    # On a Citus coordinator: each worker's shards of the distributed tables (store.distribute); else empty.
    shards: list[Placement] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        kind = "embedded" if self.embedded else "external"
        revision = self.schema_revision or "none (run: prodmatch db upgrade)"
        behind = "" if self.schema_revision == self.head_revision else f" (newest: {self.head_revision})"
        lines = [
            f"database:   {self.url} ({kind})",
            f"server:     PostgreSQL {self.server_version}, pgvector {self.pgvector_version or '-'}",
            f"schema:     {revision}{behind}",
        ]
        lines += [f"  {table:<16}{count:>12,}" for table, count in self.row_counts.items()]
        for model, counts in self.embedding_status.items():
            lines.append(f"model {model}: " + ", ".join(f"{s} {n:,}" for s, n in counts.items()))
        if self.shards:
            lines.append("citus shards (embeddings, lexical, matches, duplicate_clusters):")
            lines += [f"  {p.node:<24}{p.shards:>6} shards {_size(p.size_bytes):>10}" for p in self.shards]
        if self.indexes:
            lines.append("indexes:")
            lines += [i.to_text() for i in self.indexes]
        if self.recent_errors:
            lines.append("recent embedding errors:")
            lines += [
                f"  {e['catalog']}:{e['external_id']} [{e['model']}, {e['status']}, attempts {e['attempts']}] {e['error']}"
                for e in self.recent_errors
            ]
        return "\n".join(lines)


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
        indexes: list[IndexStatus] = []
        shards: list[Placement] = []
        if revision is not None:
            indexes = index_status(conn)
            if is_citus(conn):
                shards = placements(conn)
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
        indexes=indexes,
        shards=shards,
    )


def index_status(conn: psycopg.Connection) -> list[IndexStatus]:
    """Every index of the prodmatch schema with its size on disk and pg_index.indisvalid, by table and name."""
    return [
        IndexStatus(*row)
        for row in conn.execute(
            "SELECT ic.relname, tc.relname, am.amname, pg_relation_size(ic.oid), i.indisvalid"
            " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid"
            " JOIN pg_am am ON am.oid = ic.relam JOIN pg_namespace n ON n.oid = ic.relnamespace"
            " WHERE n.nspname = %s ORDER BY tc.relname, ic.relname",
            (SCHEMA,),
        )
    ]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


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


def psql_command(settings: Settings, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) to run psql on this database: the password is in the environment, never on argv.

    The embedded server's own psql is used, else the one on PATH. Run it with
    `subprocess.call(argv, env=env)`; `env` is a copy of os.environ plus PGPASSWORD when there is one.
    """
    import os
    import shutil

    url = database_url(settings)
    if settings.embedded:
        server = _embedded_server(settings.pgdata, settings.pg_version)
        psql = Path(server.bin_path) / "psql"
    else:
        found = shutil.which("psql")
        if found is None:
            raise DatabaseError(
                "psql is not installed; install the PostgreSQL client (e.g. apt install postgresql-client)"
            )
        psql = Path(found)
    conninfo, password = split_password(url)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return [str(psql), conninfo, "-v", "ON_ERROR_STOP=1", *args], env


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
