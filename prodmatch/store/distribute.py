"""The prodmatch schema on a Citus coordinator: which tables are sharded, which are replicated, and the triggers.

`store.migrate.upgrade` calls `distribute` after the migrations when the database has the `citus` extension;
on plain PostgreSQL nothing here runs. The layout (docs/scaling.md, "Citus"):

- **sharded by product id, co-located**: `embeddings` (`product_id`), `lexical` (`product_id`), `matches`
  (`source_product_id`) and `duplicate_clusters` (`product_id`): the vectors, their HNSW indexes and the
  results, which is where the bytes and the CPU time are. Every shard of every catalogue is on some worker, so
  one large catalogue is spread over all of them, and a vector search runs on every shard at once;
- **replicated to every node (reference tables)**: `products` and the small tables (`catalogs`, `models`,
  `matchers`, `match_runs`, `lexical_terms`, `ingest_runs`, `ingest_rejects`, `labels`, `clusters`,
  `product_clusters`, `cluster_builds`). A product row is a
  few hundred bytes next to kilobytes of vectors and index per model; replicated, every join of a shard with
  `products` runs on the worker itself, and the unique key `(catalog_id, external_id)` that ingest's upsert
  relies on stays enforceable (Citus cannot enforce a unique key without the distribution column);
- `alembic_version` stays a plain table on the coordinator.

Citus drops the views that depend on a table it distributes; they are read before and created again after.
The products triggers are replaced by the Citus forms in `sql/citus.sql`. Migrations up and down run on the
distributed tables as they are (Citus passes DDL on to the shards); `upgrade` distributes what a migration added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from prodmatch.errors import DatabaseError
from prodmatch.store.schema import SCHEMA

# (table, distribution column); all co-located with the first.
DISTRIBUTED = (
    ("embeddings", "product_id"),
    ("lexical", "product_id"),
    ("matches", "source_product_id"),
    ("duplicate_clusters", "product_id"),
)
# In foreign-key order: a reference table may point only at reference tables.
REFERENCE = (
    "catalogs",
    "models",
    "matchers",
    "match_runs",
    "lexical_terms",
    "ingest_runs",
    "ingest_rejects",
    "products",
    "labels",
    "clusters",
    "product_clusters",
    "cluster_builds",
)
# the others: sql/citus.sql, on Citus only (`citus_product_changes`: its earlier form, dropped there)
LOCAL = ("alembic_version", "citus_product_change_sets", "citus_product_changes")


@dataclass(frozen=True)
class Placement:
    """One node's share of the distributed tables: how many shards, and their total size."""

    node: str
    shards: int
    size_bytes: int


def is_citus(conn: psycopg.Connection) -> bool:
    """Whether this database has the citus extension (then it must be the coordinator)."""
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is not None


def distribute(conn: psycopg.Connection) -> list[str]:
    """Make the schema's tables reference or distributed tables (those not yet); returns the tables changed."""
    _check_tables_known(conn)
    conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
    done = _citus_tables(conn)
    views = _view_definitions(conn)
    changed = []
    for table in REFERENCE:
        if table not in done and _exists(conn, table):
            _drop_triggers(conn, table)
            conn.execute("SELECT create_reference_table(%s)", (f"{SCHEMA}.{table}",))
            changed.append(table)
    first = f"{SCHEMA}.{DISTRIBUTED[0][0]}"
    for table, column in DISTRIBUTED:
        if table not in done and _exists(conn, table):
            _drop_triggers(conn, table)
            colocate = "default" if table == DISTRIBUTED[0][0] else first
            conn.execute(
                "SELECT create_distributed_table(%s, %s, colocate_with => %s)",
                (f"{SCHEMA}.{table}", column, colocate),
            )
            changed.append(table)
    _restore_views(conn, views)
    apply_statements(conn, "citus.sql")
    # The sharded tables have foreign keys to the replicated `products` (and `models`, `match_runs`); Citus then
    # refuses, in one transaction, a parallel command on the shards after a read of `products` (link drops and
    # builds the lexical index, dedupe replaces its run after reading vectors). One connection per worker for
    # multi-shard writes and DDL lifts that, for every session of this database.
    # A call's SET LOCAL hnsw.ef_search (prodmatch.set_ef_search, sql/citus.sql) is passed on to the workers.
    for setting, value in (
        ("citus.multi_shard_modify_mode", "sequential"),
        ("citus.propagate_set_commands", "local"),
    ):
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(conn.info.dbname), sql.SQL(setting), sql.Literal(value)
            )
        )
    _hnsw_defaults_on_workers(conn)
    return changed


def placements(conn: psycopg.Connection) -> list[Placement]:
    """Shards of the distributed tables per worker (`db status` on Citus)."""
    rows = conn.execute(
        """
        SELECT s.nodename || ':' || s.nodeport, count(*), coalesce(sum(s.shard_size), 0)
          FROM citus_shards s
         WHERE s.citus_table_type = 'distributed' AND s.table_name::text LIKE 'prodmatch.%%'
         GROUP BY 1 ORDER BY 1
        """
    ).fetchall()
    return [Placement(node=node, shards=shards, size_bytes=int(size)) for node, shards, size in rows]


# The HNSW scans run in the workers' sessions, where the functions' own `SET hnsw.iterative_scan` does not reach
# (Citus passes on SET LOCAL commands, not settings made inside functions). A call's ef_search reaches them as a
# SET LOCAL (prodmatch.set_ef_search, sql/citus.sql) or as an argument of the shard calls (candidates()); for
# anything else (an analyst's own query) each worker gets the SQL API's defaults server-wide (ALTER SYSTEM, then
# a reload: a worker refuses ALTER DATABASE).
HNSW_WORKER_DEFAULTS = {"hnsw.ef_search": "100", "hnsw.iterative_scan": "relaxed_order"}


def _hnsw_defaults_on_workers(conn: psycopg.Connection) -> None:
    """Set HNSW_WORKER_DEFAULTS on every worker (again at each `db upgrade`, so a new worker gets them too)."""
    commands = [
        sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.SQL(name), sql.Literal(value)).as_string(conn)
        for name, value in HNSW_WORKER_DEFAULTS.items()
    ]
    for command in [*commands, "SELECT pg_reload_conf()"]:
        failed = conn.execute(
            "SELECT nodename, nodeport, result FROM run_command_on_workers(%s) WHERE NOT success", (command,)
        ).fetchall()
        if failed:
            host, port, error = failed[0]
            raise DatabaseError(f"cannot run {command} on the Citus worker {host}:{port}: {error}")


def apply_statements(conn: psycopg.Connection, name: str) -> None:
    """Run a file of `sql/` one statement at a time: Citus passes a DDL command's whole query string on to the
    workers, and they refuse several commands in one."""
    from prodmatch.store.server import resource_dir

    text = (resource_dir("sql") / name).read_text(encoding="utf-8")
    for statement in _statements(text):
        conn.execute(statement)


def _statements(text: str) -> list[str]:
    """Split SQL at the semicolons that end a line outside a dollar-quoted body ($$, $f$, $query$ ...)."""
    statements, current, quote = [], [], None
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        for tag in _DOLLAR_TAG.findall(line):
            if quote is None:
                quote = tag
            elif tag == quote:
                quote = None
        if quote is None and line.rstrip().endswith(";"):
            statements.append("\n".join(current))
            current = []
    if "".join(current).strip():
        statements.append("\n".join(current))
    return statements


_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


def _check_tables_known(conn: psycopg.Connection) -> None:
    known = {t for t, _ in DISTRIBUTED} | set(REFERENCE) | set(LOCAL)
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (SCHEMA,),
        )
    }
    unknown = sorted(tables - known)
    if unknown:
        raise DatabaseError(
            f"cannot distribute the schema on Citus: no placement for table(s) {', '.join(unknown)};"
            " add them to prodmatch/store/distribute.py (reference or distributed)"
        )


def _citus_tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
        (SCHEMA,),
    )
    return {row[0] for row in rows}


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{table}",)).fetchone()[0]


def _drop_triggers(conn: psycopg.Connection, table: str) -> None:
    """Citus forbids triggers on a table it distributes; sql/citus.sql creates the ones that work there."""
    rows = conn.execute(
        "SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal",
        (f"{SCHEMA}.{table}",),
    ).fetchall()
    for (name,) in rows:
        conn.execute(
            sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), sql.Identifier(SCHEMA, table))
        )


def _view_definitions(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, definition) of the schema's views, in creation order (a view may select from an older one)."""
    return conn.execute(
        "SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'v' ORDER BY c.oid",
        (SCHEMA,),
    ).fetchall()


def _restore_views(conn: psycopg.Connection, views: list[tuple[str, str]]) -> None:
    for name, definition in views:
        if not _exists(conn, name):
            conn.execute(
                sql.SQL("CREATE VIEW {} AS {}").format(sql.Identifier(SCHEMA, name), sql.SQL(definition))
            )
