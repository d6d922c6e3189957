"""Rows of `prodmatch.matchers`: learned match scorers stored as data.

A matcher's `definition` is the JSON of `prodmatch.match.scoring.Matcher.to_json()` (coefficients, or LightGBM's
text model), never a pickle: loading it back can not run code. This module only moves rows; building a
`Matcher` from a definition is `prodmatch.match.scoring`'s job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from prodmatch.errors import ConfigError


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
        "INSERT INTO prodmatch.matchers (name, model_id, kind, definition, features, threshold, metrics, trained_on)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET model_id = EXCLUDED.model_id,"
        " kind = EXCLUDED.kind, definition = EXCLUDED.definition, features = EXCLUDED.features,"
        " threshold = EXCLUDED.threshold, metrics = EXCLUDED.metrics, trained_on = EXCLUDED.trained_on,"
        " created_at = now() RETURNING id",
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
    return _rows(conn, None)


def get_matcher(conn: psycopg.Connection, name: str) -> MatcherRow:
    """Matcher `name`; ConfigError naming the stored ones when there is none."""
    rows = _rows(conn, name)
    if not rows:
        known = ", ".join(r.name for r in list_matchers(conn)) or "none"
        raise ConfigError(
            f"no matcher named {name!r} (matchers: {known}); train one with: prodmatch matcher train"
        )
    return rows[0]


def drop_matcher(conn: psycopg.Connection, name: str) -> MatcherRow:
    found = get_matcher(conn, name)
    conn.execute("DELETE FROM prodmatch.matchers WHERE id = %s", (found.id,))
    return found


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
