"""Matching speed and quality on clustered 512-dimensional vectors, in one run.

    python benchmarks/match.py [--products 100000] [--ann-sources 2000] [--naive-sources 200]

Two catalogues A and B of N products each (70% of B are noisy copies of A's products; products come in families
around 5,000 centres, so neighbours are close, as for real product photos). Prints:
- HNSW `prodmatch.similar(..., in_catalog => 'B')` (the model's index holds A and B): recall@10 against exact
  search and p50/p99 latency for ef_search 40/100/200/400;
- `link` A -> B with k=5: exact mode (blocked bf16/fp32 matmul) vs ann mode (HNSW, on a subset of sources,
  extrapolated) vs a naive Python loop of one SQL query per product, in products/s; exact mode as a share of
  this machine's measured matmul FLOP/s; recall of ann vs exact.
Uses PRODMATCH_DATABASE_URL if set, else a throw-away embedded server.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import cpu_name  # noqa: E402

from prodmatch import match as matching
from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings, load_settings  # noqa: E402
from prodmatch.hardware import fast_bf16, matmul_flops  # noqa: E402
from prodmatch.match.exact import top_k_cosine  # noqa: E402
from prodmatch.store.models import create_indexes, get_model  # noqa: E402

DIM = 512


def clustered_catalogues(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5000, DIM)).astype(np.float32)
    a = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    b = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    copies = rng.permutation(n)[: int(0.7 * n)]
    b[: len(copies)] = a[copies] + 0.15 * rng.standard_normal((len(copies), DIM)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return a, b


def load(conn, a: np.ndarray, b: np.ndarray) -> None:
    """Catalogues, products, a 512-dim model and its fused vectors, then the HNSW index (built once)."""
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('A'), ('B')")
    for name, vectors in (("A", a), ("B", b)):
        catalog_id = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = %s", (name,)).fetchone()[0]
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title) FROM STDIN"
        ) as copy:
            for i in range(len(vectors)):
                copy.write_row((catalog_id, f"{name}-{i}", f"product {name}-{i}"))
    conn.execute(
        "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
        " VALUES ('bench', 'synthetic', 'clip', %s, %s, '{title}')",
        (DIM, DIM),
    )
    model = get_model(conn, "bench")
    ids = {
        name: [r[0] for r in conn.execute(
            "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
            " WHERE c.name = %s ORDER BY p.id", (name,))]
        for name in ("A", "B")
    }  # fmt: skip
    with conn.cursor().copy(
        "COPY prodmatch.embeddings (model_id, product_id, fused_vector, status) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int8", "vector", "text"])
        for name, vectors in (("A", a), ("B", b)):
            for pid, vector in zip(ids[name], vectors, strict=True):
                copy.write_row((model.id, pid, vector, "done"))
    conn.execute("ANALYZE prodmatch.products, prodmatch.embeddings")
    conn.commit()
    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '2GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    create_indexes(conn, model)
    conn.commit()
    print(
        f"HNSW build (m=16, ef_construction=64) over {len(a) + len(b):,} vectors: {time.perf_counter() - started:.1f} s"
    )


def bench_similar(
    conn, a: np.ndarray, b: np.ndarray, a_ids: np.ndarray, b_ids: np.ndarray, queries: int
) -> None:
    rng = np.random.default_rng(1)
    sample = rng.choice(len(a), queries, replace=False)
    exact = top_k_cosine(a[sample], b, 10, candidate_precision="fp32")
    print(
        f"\nHNSW similar(k=10, in_catalog => 'B') over {len(a) + len(b):,} indexed vectors, {queries} queries:"
    )
    print(f"{'ef_search':>10} {'recall@10':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for ef in (40, 100, 200, 400):
        recalls, latencies = [], []
        for row, q in enumerate(sample):
            started = time.perf_counter()
            got = conn.execute(
                "SELECT product_id FROM prodmatch.similar(%s::bigint, k => 10, in_catalog => 'B', ef_search => %s::int)",
                (int(a_ids[q]), ef),
            ).fetchall()
            latencies.append(time.perf_counter() - started)
            truth = set(b_ids[exact.indices[row]].tolist())
            recalls.append(len(truth & {r[0] for r in got}) / 10)
        print(
            f"{ef:>10} {np.mean(recalls):>10.3f} {np.percentile(latencies, 50) * 1000:>8.1f}"
            f" {np.percentile(latencies, 99) * 1000:>8.1f}"
        )
        conn.rollback()


def bench_link(
    conn, settings: Settings, n: int, ann_sources: int, naive_sources: int, b_ids: np.ndarray
) -> None:
    print(f"\nlink A -> B, k=5, {n:,} x {n:,} products, {DIM} dimensions:")
    started = time.perf_counter()
    exact = matching.link(conn, "A", "B", k=5, mode="exact", model="bench")
    conn.commit()
    exact_seconds = time.perf_counter() - started
    flops = 2.0 * n * n * DIM
    dtype = torch.bfloat16 if fast_bf16() else torch.float32
    peak = matmul_flops(dtype)
    exact_rate = n / exact_seconds
    print(
        f"  exact (GEMM, {'bf16' if dtype == torch.bfloat16 else 'fp32'} candidates + fp32 rescoring), stored:"
        f" {exact_seconds:7.1f} s = {exact_rate:9,.0f} products/s;"
        f" {flops / exact_seconds / 1e9:.0f} GFLOP/s = {flops / exact_seconds / peak:.2f} of measured"
        f" {dtype} matmul ({peak / 1e9:.0f} GFLOP/s)"
    )

    truth = {}
    for s, t in conn.execute(
        "SELECT source_product_id, target_product_id FROM prodmatch.matches WHERE run_id = %s",
        (exact.run_id,),
    ):
        truth.setdefault(s, set()).add(t)
    sources = sorted(truth)[:ann_sources]
    started = time.perf_counter()
    found: dict[int, set] = {}
    for chunk_start in range(0, len(sources), 200):
        chunk = sources[chunk_start : chunk_start + 200]
        for s, t in conn.execute(
            "SELECT source_product_id, target_product_id FROM prodmatch.candidates('A', 'B', k => 5, model => 'bench',"
            " ef_search => %s::int, source_ids => %s::bigint[])",
            (matching.DEFAULT_EF_SEARCH, chunk),
        ):
            found.setdefault(s, set()).add(t)
    ann_seconds = time.perf_counter() - started
    conn.rollback()
    ann_rate = len(sources) / ann_seconds
    recall = np.mean([len(found.get(s, set()) & truth[s]) / len(truth[s]) for s in sources])
    print(
        f"  ann (HNSW LATERAL, ef_search {matching.DEFAULT_EF_SEARCH}), {len(sources):,} sources:"
        f" {ann_rate:9,.0f} products/s (100k would take {n / ann_rate:.0f} s); recall@5 vs exact {recall:.3f}"
    )

    vectors = {
        pid: vec
        for pid, vec in zip(
            *db.fetch_vectors(
                conn,
                get_model(conn, "bench"),
                "fused",
                conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = 'A'").fetchone()[0],
            ),
            strict=True,
        )
    }
    started = time.perf_counter()
    for s in sources[:naive_sources]:
        conn.execute(
            "SELECT e.product_id FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
            " JOIN prodmatch.catalogs c ON c.id = p.catalog_id WHERE c.name = 'B'"
            " ORDER BY e.fused_vector <=> %s LIMIT 5",
            (vectors[s],),
        ).fetchall()
    naive_rate = naive_sources / (time.perf_counter() - started)
    conn.rollback()
    print(
        f"  naive loop (one exact SQL query per product, no index), {naive_sources} sources:"
        f" {naive_rate:9,.1f} products/s"
    )
    print(
        f"  exact / ann = {exact_rate / ann_rate:.1f}x; exact / naive = {exact_rate / naive_rate:,.0f}x;"
        f" target: exact 100k x 100k under 60 s -> {'met' if n >= 100_000 and exact_seconds < 60 else 'see above'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ann-sources", type=int, default=2000)
    parser.add_argument("--naive-sources", type=int, default=50)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}")
    a, b = clustered_catalogues(args.products)
    with tempfile.TemporaryDirectory() as tmp:
        env = load_settings()
        settings = env if env.database_url else Settings(home=Path(tmp) / "home")
        db.upgrade(settings)
        with db.connection(settings) as conn:
            started = time.perf_counter()
            load(conn, a, b)
            print(f"loaded in {time.perf_counter() - started:.1f} s")
            a_ids, _ = db.fetch_vectors(
                conn,
                get_model(conn, "bench"),
                "fused",
                conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = 'A'").fetchone()[0],
            )
            b_ids, _ = db.fetch_vectors(
                conn,
                get_model(conn, "bench"),
                "fused",
                conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = 'B'").fetchone()[0],
            )
            bench_similar(conn, a, b, a_ids, b_ids, args.queries)
            bench_link(conn, settings, args.products, args.ann_sources, args.naive_sources, b_ids)


if __name__ == "__main__":
    main()
