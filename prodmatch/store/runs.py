"""Stored match runs: `prodmatch.match_runs`, their pairs in `prodmatch.matches`, and their export to files;
and the clustering built from them (`prodmatch.clusters`, `product_clusters`, `cluster_builds`, migration 0011).

A run is replaced by a later run with the same parameters. Pairs go in with one binary COPY; every signal column
of the pairs that `prodmatch.matches` has is stored, the rest stays NULL. The clustering's arithmetic (average
linkage of the accepted pairs, which id a cluster keeps) is `prodmatch.match.clusters`; here are only its reads
and writes.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
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


# --- clusters: what feeds them, what is stored --------------------------------------------------------------

CLUSTERS_LOCK = "prodmatch.clusters"  # one writer of the clustering at a time (advisory lock key)


def latest_runs(conn: psycopg.Connection) -> list[int]:
    """The newest link run of each (source, target) catalogue pair and the newest dedupe run of each catalogue."""
    rows = conn.execute(
        "SELECT DISTINCT ON (kind, source_catalog_id, target_catalog_id) id FROM prodmatch.match_runs"
        " ORDER BY kind, source_catalog_id, target_catalog_id, created_at DESC, id DESC"
    ).fetchall()
    return sorted(r[0] for r in rows)


def missing_runs(conn: psycopg.Connection, run_ids: list[int]) -> list[int]:
    """Of `run_ids`, those that are not stored runs."""
    rows = conn.execute(
        "SELECT r FROM unnest(%s::bigint[]) r WHERE NOT EXISTS (SELECT 1 FROM prodmatch.match_runs m WHERE m.id = r)",
        (run_ids,),
    ).fetchall()
    return [r[0] for r in rows]


@dataclass(frozen=True)
class ClusterEvidence:
    """What a clustering is built from (`prodmatch.match.assign.offer_clusters`): the accepted pairs of the link
    runs with their weight (the match probability; a cosine run's similarity), the duplicates of the dedupe runs
    (each member with its centre), every such product's catalogue, and the (source, target) catalogue pairs the
    link runs compared."""

    left: np.ndarray
    right: np.ndarray
    weights: np.ndarray
    same_left: np.ndarray
    same_right: np.ndarray
    catalogs: tuple[np.ndarray, np.ndarray]  # (product ids, the catalogue of each)
    compared: list[tuple[int, int]]


def cluster_evidence(conn: psycopg.Connection, run_ids: list[int]) -> ClusterEvidence:
    """The evidence of `run_ids` for a clustering (see `ClusterEvidence`). A product's catalogue is its run's:
    a link run's sources are of its source catalogue and its targets of its target catalogue, a dedupe run's
    members of its catalogue."""
    runs = {
        run_id: (kind, source, target)
        for run_id, kind, source, target in conn.execute(
            "SELECT id, kind, source_catalog_id, target_catalog_id FROM prodmatch.match_runs WHERE id = ANY(%s)",
            (run_ids,),
        )
    }
    linked = conn.execute(
        "SELECT run_id, array_agg(source_product_id), array_agg(target_product_id),"
        " array_agg(coalesce(match_probability,"
        "  greatest(fused_similarity, image_similarity, text_similarity, lexical_similarity), 1))"
        " FROM prodmatch.matches WHERE run_id = ANY(%s) AND accepted GROUP BY run_id",
        (run_ids,),
    ).fetchall()
    # The centres are read first (a materialized CTE): on Citus, `duplicate_clusters` is sharded by product id and
    # a self-join on cluster_id would need repartitioning; joined to an intermediate result it runs on each shard.
    duplicates = conn.execute(
        "WITH centres AS MATERIALIZED ("
        " SELECT run_id, cluster_id, product_id FROM prodmatch.duplicate_clusters"
        "  WHERE run_id = ANY(%(runs)s) AND is_centre)"
        " SELECT d.run_id, array_agg(d.product_id), array_agg(c.product_id)"
        "  FROM prodmatch.duplicate_clusters d"
        "  JOIN centres c ON c.run_id = d.run_id AND c.cluster_id = d.cluster_id"
        "  WHERE d.run_id = ANY(%(runs)s) AND NOT d.is_centre GROUP BY d.run_id",
        {"runs": run_ids},
    ).fetchall()
    products, catalogs = [], []
    for run_id, sources, targets, _ in linked:
        _, source, target = runs[run_id]
        products += [_ints(sources), _ints(targets)]
        catalogs += [np.full(len(sources), source), np.full(len(targets), target)]
    for run_id, members, centres in duplicates:
        products += [_ints(members), _ints(centres)]
        catalogs += [np.full(len(members) + len(centres), runs[run_id][1])]
    return ClusterEvidence(
        left=_joined([_ints(r[1]) for r in linked]),
        right=_joined([_ints(r[2]) for r in linked]),
        weights=_joined([np.array(r[3], dtype=np.float64) for r in linked]).astype(np.float64),
        same_left=_joined([_ints(r[1]) for r in duplicates]),
        same_right=_joined([_ints(r[2]) for r in duplicates]),
        catalogs=(_joined(products), _joined(catalogs).astype(np.int64)),
        compared=sorted({(s, t) for kind, s, t in runs.values() if kind == "link"}),
    )


def _ints(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def stored_clustering(conn: psycopg.Connection) -> tuple[np.ndarray, np.ndarray]:
    """(product ids, cluster ids) of the stored clustering, by product id."""
    products, clusters = conn.execute(
        "SELECT coalesce(array_agg(product_id ORDER BY product_id), '{}'),"
        " coalesce(array_agg(cluster_id ORDER BY product_id), '{}') FROM prodmatch.product_clusters"
    ).fetchone()
    return np.array(products, dtype=np.int64), np.array(clusters, dtype=np.int64)


def last_cluster_build(conn: psycopg.Connection) -> dict | None:
    """The newest row of `prodmatch.cluster_builds` (None: no clustering was built)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM prodmatch.cluster_builds ORDER BY id DESC LIMIT 1").fetchone()


def new_cluster_ids(conn: psycopg.Connection, n: int) -> np.ndarray:
    """`n` new rows of `prodmatch.clusters`; their ids, ascending."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    rows = conn.execute(
        "INSERT INTO prodmatch.clusters (created_at) SELECT now() FROM generate_series(1, %s) RETURNING id",
        (n,),
    ).fetchall()
    return np.sort(np.array([r[0] for r in rows], dtype=np.int64))


def write_clustering(
    conn: psycopg.Connection,
    products: np.ndarray,
    clusters: np.ndarray,
    *,
    moved: np.ndarray,
    dropped: np.ndarray,
    retired: np.ndarray,
    touched: np.ndarray,
) -> None:
    """Apply a clustering as a difference: `dropped` products leave, `moved` ones (of `products`) get their new
    cluster, `retired` ids go, `touched` clusters get a new `updated_at`. Run inside the caller's transaction."""
    gone = np.union1d(dropped, products[moved])
    if len(gone):
        conn.execute("DELETE FROM prodmatch.product_clusters WHERE product_id = ANY(%s)", (gone.tolist(),))
    if len(retired):
        conn.execute("DELETE FROM prodmatch.clusters WHERE id = ANY(%s)", (retired.tolist(),))
    if len(touched):
        conn.execute(
            "UPDATE prodmatch.clusters SET updated_at = now() WHERE id = ANY(%s)", (touched.tolist(),)
        )
    with conn.cursor().copy(
        "COPY prodmatch.product_clusters (product_id, cluster_id) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "int8"])
        for row in zip(products[moved].tolist(), clusters[moved].tolist(), strict=True):
            copy.write_row(row)


def record_cluster_build(
    conn: psycopg.Connection, runs: list[int], requested: list[int] | None, clusters: int, products: int
) -> int:
    """A row of `prodmatch.cluster_builds`; its id."""
    return conn.execute(
        "INSERT INTO prodmatch.cluster_builds (runs, requested_runs, clusters, products) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (runs, requested, clusters, products),
    ).fetchone()[0]
