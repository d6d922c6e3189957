"""Catalogue and product lookups: the one place that turns a catalogue name or CATALOG:ID into database ids.

The catalogue lookup itself is the SQL function `prodmatch.catalog_id(name)` (sql/matching.sql), which the SQL
API's similar / search / candidates use too; Python calls it so both say the same thing for an unknown name.
"""

from __future__ import annotations

import psycopg

from prodmatch.errors import ConfigError, IngestError


def ensure_catalog(conn: psycopg.Connection, name: str) -> int:
    """The id of catalogue `name`, created if it does not exist."""
    if not name or not name.strip():
        raise IngestError("the catalogue name must not be empty (--catalog NAME)")
    row = conn.execute(
        "INSERT INTO prodmatch.catalogs (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id",
        (name,),
    ).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = %s", (name,)).fetchone()
    return row[0]


# --- single queries ---------------------------------------------------------------------------------------


def find_product(conn: psycopg.Connection, catalog: str, external_id: str) -> int:
    """The product id of CATALOG:EXTERNAL_ID."""
    row = conn.execute(
        "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = %s AND p.external_id = %s",
        (catalog, external_id),
    ).fetchone()
    if row is None:
        raise ConfigError(f"no product {catalog}:{external_id}")
    return row[0]


def parse_product_ref(ref: str) -> tuple[str, str]:
    """'CATALOG:EXTERNAL_ID' -> (catalog, external_id); the id may itself contain colons."""
    catalog, sep, external_id = ref.partition(":")
    if not sep or not catalog or not external_id:
        raise ConfigError(f"{ref!r}: expected CATALOG:EXTERNAL_ID, e.g. shop:SKU-123")
    return catalog, external_id


def catalog_id(conn: psycopg.Connection, name: str) -> int:
    """The id of catalogue `name`; ConfigError naming the catalogues that exist when there is none."""
    try:
        with conn.transaction():
            return conn.execute("SELECT prodmatch.catalog_id(%s)", (name,)).fetchone()[0]
    except psycopg.errors.RaiseException as error:
        raise ConfigError(str(error).split("\n")[0].replace("prodmatch: ", "")) from error
