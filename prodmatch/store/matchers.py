"""Rows of `prodmatch.matchers`: learned match scorers stored as data.

A matcher's `definition` is the JSON of `prodmatch.match.scoring.Matcher.to_json()` (coefficients, or LightGBM's
text model), never a pickle: loading it back can not run code. This module only moves rows; building a
`Matcher` from a definition is `prodmatch.match.scoring`'s job.

The built-in matcher (`prodmatch.quality.builtin`) ships in the package as ``prodmatch/data/builtin_matcher.json``:
the first time it is asked for (by name, or in a list), its row is written here under the name ``builtin``,
and written again when the packaged file changed (its ``definition_sha256`` differs), so it is read like any
stored matcher and runs made with it point at a real row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from prodmatch.errors import ConfigError

BUILTIN_NAME = "builtin"
BUILTIN_FILE = Path(__file__).resolve().parent.parent / "data" / "builtin_matcher.json"


@dataclass(frozen=True)
class MatcherRow:
    """One stored matcher."""

    id: int
    name: str
    model: str | None
    kind: str
    features: list[str]
    threshold: float
    metrics: dict
    trained_on: dict
    created_at: datetime
    definition: dict

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("definition")
        out["created_at"] = self.created_at.isoformat()
        return out


def save_matcher(
    conn: psycopg.Connection,
    name: str,
    model_id: int | None,
    definition: dict,
    *,
    features: list[str],
    threshold: float,
    metrics: dict,
    trained_on: dict,
) -> int:
    """Store (or replace) matcher `name`; its id."""
    row = conn.execute(
        # created_at = EXCLUDED.created_at, not now(): Citus refuses a function that is not IMMUTABLE in DO UPDATE
        # SET on a reference table.
        "INSERT INTO prodmatch.matchers"
        " (name, model_id, kind, definition, features, threshold, metrics, trained_on, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT (name) DO UPDATE SET model_id = EXCLUDED.model_id,"
        " kind = EXCLUDED.kind, definition = EXCLUDED.definition, features = EXCLUDED.features,"
        " threshold = EXCLUDED.threshold, metrics = EXCLUDED.metrics, trained_on = EXCLUDED.trained_on,"
        " created_at = EXCLUDED.created_at RETURNING id",
        (
            name,
            model_id,
            definition["kind"],
            Jsonb(definition),
            features,
            threshold,
            Jsonb(metrics),
            Jsonb(trained_on),
        ),
    ).fetchone()
    return row[0]


def list_matchers(conn: psycopg.Connection) -> list[MatcherRow]:
    """Every stored matcher, the built-in one included."""
    install_builtin(conn)
    return _rows(conn, None)


def get_matcher(conn: psycopg.Connection, name: str) -> MatcherRow:
    """Matcher `name`; ConfigError naming the stored ones when there is none."""
    if name == BUILTIN_NAME:
        install_builtin(conn)
    rows = _rows(conn, name)
    if not rows:
        known = ", ".join(r.name for r in list_matchers(conn)) or "none"
        raise ConfigError(
            f"no matcher named {name!r} (matchers: {known}); train one with: prodmatch matcher train"
        )
    return rows[0]


def drop_matcher(conn: psycopg.Connection, name: str) -> MatcherRow:
    if name == BUILTIN_NAME:
        raise ConfigError(
            "the built-in matcher ships with prodmatch and cannot be dropped; link with --matcher NAME, "
            "--threshold or --space to use something else"
        )
    found = get_matcher(conn, name)
    conn.execute("DELETE FROM prodmatch.matchers WHERE id = %s", (found.id,))
    return found


def builtin_available() -> bool:
    """Whether this installation ships the built-in matcher's file."""
    return BUILTIN_FILE.is_file()


def install_builtin(conn: psycopg.Connection) -> bool:
    """Write the packaged built-in matcher's row when it is missing or out of date; whether it is stored now.

    Nothing is written when the stored row is current (so reading through a read-only role works once the row
    exists). A database role that may not write gets the row from whoever links first.
    """
    if not builtin_available():
        return False
    record = _builtin_record()
    wanted = record["trained_on"]["definition_sha256"]
    found = conn.execute(
        "SELECT trained_on ->> 'definition_sha256' FROM prodmatch.matchers WHERE name = %s", (BUILTIN_NAME,)
    ).fetchone()
    if found is not None and found[0] == wanted:
        return True
    try:
        with conn.transaction():
            save_matcher(
                conn,
                BUILTIN_NAME,
                None,
                record["definition"],
                features=record["features"],
                threshold=record["threshold"],
                metrics=record["metrics"],
                trained_on=record["trained_on"],
            )
    except psycopg.errors.InsufficientPrivilege:
        return found is not None
    return True


@lru_cache(maxsize=1)
def _builtin_record() -> dict:
    return json.loads(BUILTIN_FILE.read_text(encoding="utf-8"))


def _rows(conn: psycopg.Connection, name: str | None) -> list[MatcherRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT mt.id, mt.name, md.name AS model, mt.kind, mt.features, mt.threshold, mt.metrics,"
            " mt.trained_on, mt.created_at, mt.definition FROM prodmatch.matchers mt"
            " LEFT JOIN prodmatch.models md ON md.id = mt.model_id"
            " WHERE %(name)s::text IS NULL OR mt.name = %(name)s ORDER BY mt.name",
            {"name": name},
        ).fetchall()
    return [MatcherRow(**row) for row in rows]
