"""prodmatch on a local Citus cluster against a single node, in one run: index build, similar() latency and
recall, link --mode ann throughput, shard balance.

    python benchmarks/citus.py [--products 20000] [--dimension 256] [--queries 200] [--workers 2] [--shards 8]

Both sides get the same clustered random vectors (no neural model: a model row of that dimension, halfvec
storage, vectors written as the worker would) for a `shop` catalogue of N products and a `rival` one of N/10.
The single node is the embedded PostgreSQL; the cluster is `prodmatch.store.citus_local` (a coordinator and
--workers workers on this machine, built from ../shared/vendor/citus-14.0.1.tar.gz). Recall@10 of `similar()`
is measured against exact cosine search in numpy over the same vectors.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import cpu_name  # noqa: E402

from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.match.link import link  # noqa: E402
from prodmatch.store import citus_local, distribute  # noqa: E402
from prodmatch.store.models import create_indexes, get_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20000)
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    # a TERM (a timeout, a kill) unwinds like Ctrl-C, so the cluster's servers are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = citus_local.missing_reason()
    if reason:
        sys.exit(reason)
    vectors = _clustered(args.products + args.products // 10, args.dimension)
    home = Path(tempfile.mkdtemp(prefix="prodmatch-citus-bench-"))
    single = Settings(home=home / "single")
    single_url = db.database_url(single)
    with db.connection(single, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS citus_bench")
        conn.execute("CREATE DATABASE citus_bench")
    single = Settings(database_url=single_url.replace("/postgres?", "/citus_bench?"), home=home / "single")
    cluster = citus_local.LocalCluster.start(args.workers, shard_count=args.shards)
    try:
        on_cluster = Settings(database_url=cluster.create_database("citus_bench"), home=home / "cluster")
        print(f"{args.products:,} + {args.products // 10:,} products, {args.dimension} dimensions (halfvec)")
        print(
            f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start"
        )
        for name, target in (("single node", single), (f"citus, {args.workers} workers", on_cluster)):
            print(f"{name}:", flush=True)
            _run(target, vectors, args)
    finally:
        cluster.stop()


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 50, 1), d)).astype(np.float32)
    v = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class _Figures(dict):
    """Printed as they are measured, so an interrupted run keeps what it measured."""

    def __setitem__(self, key, value) -> None:
        print(f"  {key:<28} {value}", flush=True)
        super().__setitem__(key, value)


def _run(settings: Settings, vectors: np.ndarray, args) -> dict:
    figures: dict = _Figures()
    db.upgrade(settings)
    n = args.products
    with db.connection(settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop'), ('rival')")
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template, storage)"
            " VALUES ('bench', 'bench', 'clip', %s, %s, '{title}', 'halfvec')",
            (args.dimension, args.dimension),
        )
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title) FROM STDIN"
        ) as copy:
            for i in range(len(vectors)):
                catalog, name = (1, f"shop-{i}") if i < n else (2, f"rival-{i}")
                copy.write_row((catalog, name, f"item {i}"))
        conn.commit()
        ids = [r[0] for r in conn.execute("SELECT id FROM prodmatch.products ORDER BY id")]
        conn.execute("CREATE TABLE bench_vectors (product_id bigint, v halfvec)")
        if distribute.is_citus(conn):
            # co-located with the vectors, so the UPDATE below runs on each shard (a temporary table would be
            # sent to every shard whole: 6x slower at 100,000)
            conn.execute(
                "SELECT create_distributed_table('bench_vectors', 'product_id',"
                " colocate_with => 'prodmatch.embeddings')"
            )
        with conn.cursor().copy("COPY bench_vectors FROM STDIN") as copy:
            for pid, v in zip(ids, vectors, strict=True):
                copy.write_row((pid, "[" + ",".join(f"{x:.5f}" for x in v) + "]"))
        conn.execute(
            "UPDATE prodmatch.embeddings e SET fused_half = b.v, image_half = b.v, text_half = b.v, status = 'done',"
            " embedded_at = now() FROM bench_vectors b WHERE e.product_id = b.product_id"
        )
        conn.execute("DROP TABLE bench_vectors")
        conn.commit()
        figures["load (s)"] = round(time.perf_counter() - started, 1)
        model = get_model(conn, "bench")
    with db.connection(settings, autocommit=True) as conn:
        started = time.perf_counter()
        create_indexes(conn, model)
        figures["3 HNSW index builds (s)"] = round(time.perf_counter() - started, 1)
        conn.execute("ANALYZE prodmatch.embeddings")
        conn.execute("ANALYZE prodmatch.products")
        if distribute.is_citus(conn):
            figures["shards per worker"] = [p.shards for p in distribute.placements(conn)]
            figures["MB per worker"] = [round(p.size_bytes / 2**20) for p in distribute.placements(conn)]
    rng = np.random.default_rng(1)
    queries = rng.choice(n, args.queries, replace=False)
    latencies, recalls = [], []
    with db.connection(settings) as conn:
        for q in queries:
            started = time.perf_counter()
            found = [
                r[0] for r in conn.execute("SELECT product_id FROM prodmatch.similar(%s, k => 10)", (ids[q],))
            ]
            latencies.append((time.perf_counter() - started) * 1000)
            sims = vectors @ vectors[q]
            sims[q] = -2
            exact = {ids[i] for i in np.argpartition(-sims, 10)[:10]}
            recalls.append(len(exact & set(found)) / 10)
        conn.commit()
        latencies.sort()
        figures["similar p50 (ms)"] = round(statistics.median(latencies), 1)
        figures["similar p99 (ms)"] = round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)
        figures["similar recall@10"] = round(float(np.mean(recalls)), 3)
        started = time.perf_counter()
        run = link(conn, "rival", "shop", k=5, mode="ann", threshold=0.9)
        seconds = time.perf_counter() - started
        figures["link --mode ann (sources/s)"] = round(run.sources / seconds, 1)
        figures["load average at the end"] = round(os.getloadavg()[0], 1)
    return figures


if __name__ == "__main__":
    main()
