"""store: everything that speaks SQL to the `prodmatch` schema.

Connections and the embedded server (`server`), migrations (`migrate`), status and grants (`admin`), the table
definitions (`schema`), model rows and their HNSW index expressions (`models`), catalogue and product lookups
(`catalogs`), vectors out of the database (`vectors`) and stored match runs (`runs`). Every other package reaches
the database through these modules; migrations import them too.
"""

from prodmatch.store.admin import DatabaseStatus, analyze_if_stale, grant_reader, psql_command, status
from prodmatch.store.catalogs import catalog_id, ensure_catalog, find_product, parse_product_ref
from prodmatch.store.migrate import (
    apply_sql_file,
    current_revision,
    downgrade,
    ensure_embedded_schema,
    head_revision,
    schema_hint,
    upgrade,
)
from prodmatch.store.server import (
    MIN_PGVECTOR,
    connect,
    connect_waiting,
    connection,
    database_url,
    ensure_pgvector,
    mask_url,
    pgvector_version,
    register_vector_types,
    resource_dir,
    sqlalchemy_url,
)
from prodmatch.store.vectors import fetch_spaces, fetch_vectors

__all__ = [
    "MIN_PGVECTOR",
    "DatabaseStatus",
    "analyze_if_stale",
    "apply_sql_file",
    "catalog_id",
    "connect",
    "connect_waiting",
    "connection",
    "current_revision",
    "database_url",
    "downgrade",
    "ensure_catalog",
    "ensure_embedded_schema",
    "ensure_pgvector",
    "fetch_spaces",
    "fetch_vectors",
    "find_product",
    "grant_reader",
    "head_revision",
    "mask_url",
    "parse_product_ref",
    "pgvector_version",
    "psql_command",
    "register_vector_types",
    "resource_dir",
    "schema_hint",
    "sqlalchemy_url",
    "status",
    "upgrade",
]
