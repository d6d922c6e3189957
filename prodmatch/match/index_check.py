"""How good the HNSW index is: recall of the index's top-k against exact search, for several ef_search values.

`check_index` samples products, asks the database for their neighbours through the model's index expression
(`store.models.vector_expression`) at each `hnsw.ef_search`, computes the exact neighbours in memory from the
vectors `store.vectors` fetches, and reports recall per setting and the smallest ef_search reaching the
target recall (`IndexCheck`). Behind `prodmatch index check`; the figure tunes `match.queries` and `match.link`.
Only the sample's vectors are held: the exact neighbours come from one streamed pass over every vector
(`store.vectors.iter_vectors`), so memory stays flat however big the catalogues (`match.memory` guards it).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import psycopg
from psycopg import sql

from prodmatch.errors import ProdmatchError
from prodmatch.hardware import memory_budget
from prodmatch.match.memory import index_check_peak_bytes, require_fits
from prodmatch.store.models import get_model, index_type, space_dimension, vector_column, vector_expression
from prodmatch.store.vectors import fetch_vectors, iter_vectors


@dataclass(frozen=True)
class IndexCheck:
    """Recall of a model's HNSW index against exact search, per ef_search."""

    model: str
    space: str
    k: int
    sample: int
    rows: list[dict]
    recommended_ef_search: int | None
    target_recall: float = 0.99
    memory_estimate: int = 0  # bytes the check was estimated to take at its peak

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        lines = [f"{self.model} / {self.space}: recall@{self.k} over {self.sample} sampled products"]
        lines += [
            f"  ef_search {row['ef_search']:>4}: recall {row['recall']:.3f}  "
            f"p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms"
            for row in self.rows
        ]
        if self.recommended_ef_search:
            lines.append(f"ef_search {self.recommended_ef_search} reaches recall {self.target_recall}")
        else:
            lines.append(
                f"no ef_search tried reaches recall {self.target_recall}; the index is losing matches"
            )
        return "\n".join(lines)


# --- index check ------------------------------------------------------------------------------------------


def check_index(
    conn: psycopg.Connection,
    *,
    model: str | None = None,
    space: str = "fused",
    sample: int = 100,
    k: int = 10,
    ef_values: tuple[int, ...] = (10, 20, 40, 80, 100, 200, 400),
    target_recall: float = 0.99,
    seed: int = 0,
    memory_budget_bytes: int | None = None,
) -> IndexCheck:
    """Recall@k of the model's HNSW index against exact search on a sample of real products, per ef_search."""
    registered = get_model(conn, model)
    ids = _product_ids(conn, registered, space)
    if len(ids) < 2:
        raise ProdmatchError(f"model {registered.name} has fewer than 2 embedded products; nothing to check")
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(ids)), min(sample, len(ids))))
    k = min(k, len(ids) - 1)
    estimate = index_check_peak_bytes(len(ids), len(picked), registered, space, k)
    require_fits(
        f"index check of {len(ids):,} products",
        estimate,
        memory_budget(memory_budget_bytes),
        "use a smaller --sample",
    )
    sample_ids, vectors = fetch_vectors(
        conn, registered, space, None, product_ids=[int(ids[i]) for i in picked]
    )
    dim = space_dimension(registered, space)
    query_sql = sql.SQL(
        "SELECT e.product_id, 1 - ({expr} <=> %s::{type}({dim})) FROM prodmatch.embeddings e"
        " WHERE e.model_id = {model} AND e.product_id <> %s ORDER BY {expr} <=> %s::{type}({dim}) LIMIT %s"
    ).format(
        expr=vector_expression(registered, space),
        type=sql.SQL(index_type(registered, space)),
        dim=sql.Literal(dim),
        model=sql.Literal(registered.id),
    )
    # The exact k-th best similarity of each query; a returned product counts as found when it is at least as
    # similar (so ties among exact duplicates do not count as misses).
    kth_best = _kth_best(conn, registered, space, sample_ids, vectors, k).tolist()
    rows = []
    for ef in ef_values:
        recalls, latencies = [], []
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef)))
            for product_id, vector, floor in zip(sample_ids.tolist(), vectors, kth_best, strict=True):
                started = time.perf_counter()
                got = conn.execute(query_sql, (vector, product_id, vector, k)).fetchall()
                latencies.append(time.perf_counter() - started)
                recalls.append(sum(1 for _, sim in got if sim >= floor - 1e-5) / k)
        rows.append(
            {
                "ef_search": ef,
                "recall": round(float(np.mean(recalls)), 4),
                "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
                "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
            }
        )
    recommended = next((r["ef_search"] for r in rows if r["recall"] >= target_recall), None)
    return IndexCheck(registered.name, space, k, len(sample_ids), rows, recommended, target_recall, estimate)


def _product_ids(conn: psycopg.Connection, model, space: str) -> np.ndarray:
    """Ids of the products that have a `space` vector, in order (8 bytes each: the only per-product memory)."""
    column = sql.Identifier("e", vector_column(model, space))  # *_vector or *_half, by the model's storage
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT e.product_id FROM prodmatch.embeddings e WHERE e.model_id = %s AND {} IS NOT NULL"
                " ORDER BY 1"
            ).format(column),
            (model.id,),
        )
        found = np.fromiter((row[0] for row in cur), dtype=np.int64)
    conn.commit()
    return found


def _kth_best(conn, model, space: str, query_ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Each query's exact k-th best similarity to any other product, in one streamed pass over every vector."""
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for ids, vectors in iter_vectors(conn, model, space, None):
        sims = queries @ vectors.T  # (queries, block)
        sims[query_ids[:, None] == ids[None, :]] = -np.inf  # a product is not its own neighbour
        both = np.concatenate([best, sims], axis=1)
        best = np.partition(both, -k, axis=1)[:, -k:]
    conn.commit()
    return best.min(axis=1)
