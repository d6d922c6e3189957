"""Stored match runs: `prodmatch.match_runs`, their pairs in `prodmatch.matches`, and their export to files.

A run is replaced by a later run with the same parameters. Pairs go in with one binary COPY; every signal column
of the pairs that `prodmatch.matches` has is stored, the rest stays NULL.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from prodmatch.store.models import Model

if TYPE_CHECKING:
    from prodmatch.match.pairs import CandidatePairs


def _plain(row: dict) -> dict:
    """Decimal prices to float so results serialise as JSON."""
    return {k: float(v) if k.endswith("price") and v is not None else v for k, v in row.items()}


def write_matches(conn: psycopg.Connection, run_id: int, out: Path) -> None:
    """Write a run's pairs (prodmatch.matches_v columns) as CSV, or JSONL when the name ends in .jsonl."""
    out = Path(out)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM prodmatch.matches_v WHERE run_id = %s ORDER BY source_external_id, rank", (run_id,)
        )
        rows = (_plain(r) for r in cur)
        with open(out, "w", encoding="utf-8", newline="") as f:
            if out.suffix.lower() in (".jsonl", ".ndjson"):
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            else:
                writer = None
                for row in rows:
                    if writer is None:
                        writer = csv.DictWriter(f, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)


# Signal columns of prodmatch.matches that a run may fill, in table order.
MATCH_SIGNAL_COLUMNS = (
    "fused_similarity",
    "image_similarity",
    "text_similarity",
    "lexical_similarity",
    "match_probability",
)


def store_pairs(conn: psycopg.Connection, run_id: int, pairs: CandidatePairs) -> None:
    """One binary COPY of the ranked pairs with their signal columns (NULL where a signal is missing)."""
    names = [name for name in MATCH_SIGNAL_COLUMNS if name in pairs.signals]
    matrix = np.stack([pairs.signals[name] for name in names], axis=1) if names else np.empty((len(pairs), 0))
    missing = np.isnan(matrix)
    # A signal missing for every pair is left out (NULL by default); NaN becomes None only where it occurs.
    present = [i for i in range(len(names)) if not missing[:, i].all()]
    columns = sql.SQL(", ").join(sql.Identifier(names[i]) for i in present)
    query = sql.SQL(
        "COPY prodmatch.matches (run_id, source_product_id, target_product_id, rank, accepted, signals{comma}{columns})"
        " FROM STDIN (FORMAT BINARY)"
    ).format(comma=sql.SQL(", " if present else ""), columns=columns)
    accepted = pairs.signals.get("accepted")
    accepted = [False] * len(pairs) if accepted is None else np.asarray(accepted, dtype=bool).tolist()
    product_signals = pairs.signals.get("product_signals")
    product_signals = [None] * len(pairs) if product_signals is None else [Jsonb(s) for s in product_signals]
    similarities = matrix[:, present].tolist()
    if missing[:, present].any():
        similarities = [[None if v != v else v for v in row] for row in similarities]  # NaN != NaN
    with conn.cursor().copy(query) as copy:
        copy.set_types(["int8", "int8", "int8", "int2", "bool", "jsonb", *["float4"] * len(present)])
        for s, t, rank, ok, signals, values in zip(
            pairs.sources.tolist(),
            pairs.targets.tolist(),
            pairs.ranks.tolist(),
            accepted,
            product_signals,
            similarities,
            strict=True,
        ):
            copy.write_row((run_id, s, t, rank, ok, signals, *values))


def replace_run(
    conn: psycopg.Connection,
    kind: str,
    source_id: int,
    target_id: int | None,
    model: Model | None,
    params: dict,
    *,
    matcher_id: int | None = None,
) -> int:
    """A new run id; an earlier run with the same parameters is deleted with its pairs (re-runs replace).

    An advisory lock on the run's identity makes two identical runs at once replace each other in turn
    instead of one failing on the unique index.
    """
    model_id = model.id if model is not None else None
    identity = json.dumps([kind, source_id, target_id, model_id, params], sort_keys=True, default=str)
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (identity,))
    conn.execute(
        "DELETE FROM prodmatch.match_runs WHERE kind = %s AND source_catalog_id = %s"
        " AND target_catalog_id IS NOT DISTINCT FROM %s AND model_id IS NOT DISTINCT FROM %s AND params = %s",
        (kind, source_id, target_id, model_id, Jsonb(params)),
    )
    return conn.execute(
        "INSERT INTO prodmatch.match_runs (kind, source_catalog_id, target_catalog_id, model_id, matcher_id, params)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (kind, source_id, target_id, model_id, matcher_id, Jsonb(params)),
    ).fetchone()[0]
