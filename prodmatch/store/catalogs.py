"""Catalogue and product lookups: the one place that turns a catalogue name or CATALOG:ID into database ids.

The catalogue lookup itself is the SQL function `prodmatch.catalog_id(name)` (sql/matching.sql), which the SQL
API's similar / search / candidates use too; Python calls it so both say the same thing for an unknown name.

Each catalogue also keeps its attribute roles (`prodmatch.roles`): `catalog_roles` shows them beside the keys its
products fill in, `set_attribute_roles` changes them (and marks the catalogue's lexical rows stale), and
`roles_by_catalog` gives readers the overrides to attach to product mappings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import psycopg
from psycopg.types.json import Jsonb

from prodmatch import roles
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


# --- attribute roles --------------------------------------------------------------------------------------

# A lexical row's content_hash that no product has: the row counts as stale, so its terms and codes are redone.
_STALE_HASH = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class CatalogSummary:
    """One catalogue: its name, how many products, and how many attribute roles it sets itself."""

    name: str
    products: int
    attribute_roles: dict[str, str]
    created_at: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CatalogList:
    catalogs: list[CatalogSummary]

    def to_dict(self) -> dict:
        return {"catalogs": [c.to_dict() for c in self.catalogs]}

    def to_text(self) -> str:
        if not self.catalogs:
            return "no catalogues yet (prodmatch ingest FILE --catalog NAME)"
        lines = [f"{'catalogue':<24} {'products':>10}  attribute roles set"]
        for c in self.catalogs:
            own = ", ".join(f"{k}={v}" for k, v in c.attribute_roles.items()) or "-"
            lines.append(f"{c.name:<24} {c.products:>10,}  {own}")
        return "\n".join(lines)


@dataclass(frozen=True)
class KeyRole:
    """An attribute key of a catalogue: how many products fill it in, its built-in and catalogue roles."""

    key: str
    products: int
    builtin: str | None  # None: prodmatch does not know the key
    catalog: str | None  # None: the catalogue does not set it
    role: str | None  # what matching uses: the catalogue's, else the built-in one (None: not read)


@dataclass(frozen=True)
class CatalogRoles:
    """The attribute keys of a catalogue's products (most filled first) and the catalogue's own role settings."""

    catalog: str
    products: int
    keys: list[KeyRole]
    attribute_roles: dict[str, str]  # as stored: {key as written: role}

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self, *, listed: int = 60) -> str:
        lines = [f"{self.catalog}: {self.products:,} products, {len(self.keys)} attribute keys"]
        lines.append(f"  {'key':<28} {'products':>9}  {'built-in':<12} {'catalogue':<12} role")
        for k in self.keys[:listed]:
            lines.append(
                f"  {k.key:<28} {k.products:>9,}  {k.builtin or '-':<12} {k.catalog or '-':<12} {k.role or '-'}"
            )
        if len(self.keys) > listed:
            lines.append(f"  ... {len(self.keys) - listed} more keys (--json lists them all)")
        present = {roles.normalize_key(k.key) for k in self.keys}
        unused = [
            f"{k}={v}" for k, v in self.attribute_roles.items() if roles.normalize_key(k) not in present
        ]
        if unused:
            lines.append("  set but on no product: " + ", ".join(unused))
        return "\n".join(lines)


def list_catalogs(conn: psycopg.Connection) -> CatalogList:
    """Every catalogue with its product count and its own attribute roles, by name."""
    rows = conn.execute(
        "SELECT c.name, (SELECT count(*) FROM prodmatch.products p WHERE p.catalog_id = c.id), c.attribute_roles,"
        " c.created_at FROM prodmatch.catalogs c ORDER BY c.name"
    ).fetchall()
    return CatalogList([CatalogSummary(r[0], r[1], r[2], r[3].isoformat()) for r in rows])


def catalog_roles(conn: psycopg.Connection, catalog: str) -> CatalogRoles:
    """The attribute keys the products of `catalog` fill in, with counts, built-in, catalogue and effective roles."""
    cid = catalog_id(conn, catalog)
    stored = attribute_roles(conn, cid)
    overrides = roles.normalize_roles(stored)
    products = conn.execute(
        "SELECT count(*) FROM prodmatch.products WHERE catalog_id = %s", (cid,)
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT key, count(*) FROM prodmatch.products p, jsonb_each(p.attributes) AS a(key, value)"
        " WHERE p.catalog_id = %s AND a.value NOT IN ('null'::jsonb, '\"\"'::jsonb)"
        " GROUP BY key ORDER BY count(*) DESC, key",
        (cid,),
    ).fetchall()
    keys = [
        KeyRole(
            key,
            count,
            roles.builtin_role(key),
            overrides.get(roles.normalize_key(key)),
            roles.role_of(key, overrides),
        )
        for key, count in rows
    ]
    return CatalogRoles(catalog, products, keys, stored)


def attribute_roles(conn: psycopg.Connection, catalog_id: int) -> dict[str, str]:
    """The attribute roles catalogue `catalog_id` sets itself, as stored ({key as written: role})."""
    row = conn.execute(
        "SELECT attribute_roles FROM prodmatch.catalogs WHERE id = %s", (catalog_id,)
    ).fetchone()
    return dict(row[0]) if row else {}


def roles_by_catalog(conn: psycopg.Connection) -> dict[int, dict[str, str]]:
    """Each catalogue's role overrides as readers attach them to products ({normalised key: role}), by id.

    Catalogues that set nothing are left out (their products follow the built-in roles)."""
    rows = conn.execute(
        "SELECT id, attribute_roles FROM prodmatch.catalogs WHERE attribute_roles <> '{}'"
    ).fetchall()
    return {cid: roles.normalize_roles(stored) for cid, stored in rows}


def set_attribute_roles(
    conn: psycopg.Connection,
    catalog: str | int,
    assign: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> dict[str, str]:
    """Set (`assign`: {key: role}, role "none" switches a built-in key off) and `unset` a catalogue's roles.

    A key replaces any stored key that normalises the same ("Art.-Nr." and "art nr"). When the roles change, the
    catalogue's lexical rows are marked stale, so the next lexical refresh recomputes their terms and codes.
    Returns the roles now stored."""
    cid = catalog if isinstance(catalog, int) else catalog_id(conn, catalog)
    with conn.transaction():
        row = conn.execute(
            "SELECT attribute_roles FROM prodmatch.catalogs WHERE id = %s FOR NO KEY UPDATE", (cid,)
        ).fetchone()
        if row is None:
            raise ConfigError(f"no catalogue with id {cid}")
        before = dict(row[0])
        after = dict(before)
        checked = roles.normalize_roles(dict(assign or {}))  # raises on a bad role before anything changes
        for key in [*unset, *(assign or {})]:
            normalised = roles.normalize_key(key)
            if not normalised:
                raise ConfigError(f"attribute key {key!r} has no letters or digits")
            after = {k: v for k, v in after.items() if roles.normalize_key(k) != normalised}
        for key in assign or {}:
            after[key] = checked[roles.normalize_key(key)]
        if roles.normalize_roles(after) != roles.normalize_roles(before):
            conn.execute(
                "UPDATE prodmatch.catalogs SET attribute_roles = %s WHERE id = %s", (Jsonb(after), cid)
            )
            mark_lexical_stale(conn, cid)
        elif after != before:  # the same roles spelt differently: store the new spelling, nothing to redo
            conn.execute(
                "UPDATE prodmatch.catalogs SET attribute_roles = %s WHERE id = %s", (Jsonb(after), cid)
            )
    return after


def mark_lexical_stale(conn: psycopg.Connection, catalog_id: int) -> int:
    """Make every lexical row of the catalogue's products stale (re-encoded at the next refresh); how many."""
    return conn.execute(
        "UPDATE prodmatch.lexical l SET content_hash = %s FROM prodmatch.products p"
        " WHERE p.id = l.product_id AND p.catalog_id = %s",
        (_STALE_HASH, catalog_id),
    ).rowcount
