"""prodmatch on a local Citus cluster against a single node, in one run: load, index build, similar() latency and
recall, link --mode ann throughput, shard balance.

    python benchmarks/citus.py [--products 20000] [--dimension 256] [--queries 200] [--workers 2] [--shards 8]
                               [--link-sources 0 [--link-all]] [--spaces image,text,fused]
                               [--ef-search 100[,400...]] [--sides single,citus]

Both sides get the same clustered random vectors (no neural model: a model row of that dimension, halfvec
storage) for a `shop` catalogue of N products and a `rival` one of N/10. The single node is the embedded
PostgreSQL; the cluster is `prodmatch.store.citus_local` (a coordinator and --workers workers on this machine,
built from ../shared/vendor/citus-14.0.1.tar.gz). The phases alternate between the two sides (load on one, then
on the other, then the index builds ...), so a machine shared with other work loads both alike and a run cut
short keeps the pairs it measured; the load average is printed at the start and end of each.

- load: the products by COPY (their pending `embeddings` rows come from the triggers), then the vectors as the
  embedding worker writes them: a binary COPY into a staging table and one UPDATE of `embeddings` from it (the
  worker does that per batch, into a temporary table; here the staging table is co-located with `embeddings` on
  Citus, so the UPDATE runs on each shard, and the COPY stream is built by numpy, not row by row).
- index: one HNSW index per space in --spaces (default all three, as `embed` builds them; at 1,000,000 the fused
  one only, the space `similar()` and `link` search). On Citus the workers build the shards' indexes with their
  own `maintenance_work_mem`, which the coordinator's session setting does not reach: the benchmark sets it on
  the workers (`ALTER SYSTEM`) to the single node's value.
- similar: `similar(k => 10)` of --queries shop products, p50/p99 latency and recall@10 against exact cosine
  search in numpy over the same vectors, at each --ef-search (recall against latency; link uses the first).
- link: `link --mode ann` (k = 5) of the whole rival catalogue, or with --link-sources S a fixed random sample of
  S rival products (the same on both sides) through `match.candidates.ann_candidates`, the candidate search
  that `link --mode ann` runs (without the lexical refresh and the storing of the run); sources per second, and
  how many of the sample's top-5 candidates the two sides share (--link-all: the whole link as well).

--sides single (or citus) runs one side only, e.g. to try more ef_search values on it.
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
from prodmatch.config import Settings, load_settings  # noqa: E402
from prodmatch.match.candidates import ann_candidates  # noqa: E402
from prodmatch.match.link import link  # noqa: E402
from prodmatch.match.queries import DEFAULT_EF_SEARCH  # noqa: E402
from prodmatch.store import citus_local, distribute  # noqa: E402
from prodmatch.store.models import SPACES, create_indexes, get_model  # noqa: E402

COPY_ROWS = 50_000  # vectors per binary COPY chunk (a progress line each 10%)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20000)
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--link-sources", type=int, default=0, help="a random sample of this many rival products (0: all)"
    )
    parser.add_argument("--link-all", action="store_true", help="with --link-sources: also link all of them")
    parser.add_argument(
        "--ef-search",
        default=str(DEFAULT_EF_SEARCH),
        help="similar()'s ef_search, comma-separated (link: the first)",
    )
    parser.add_argument("--sides", default="single,citus", help="single, citus or both (comma-separated)")
    parser.add_argument("--spaces", default=",".join(SPACES), help="the spaces to index (comma-separated)")
    args = parser.parse_args()
    args.spaces = tuple(s.strip() for s in args.spaces.split(","))
    args.ef_search = [int(e) for e in args.ef_search.split(",")]
    args.sides = tuple(s.strip() for s in args.sides.split(","))
    args.index_build = load_settings().index_build  # sized once, the same on both sides
    if set(args.spaces) - set(SPACES) or "fused" not in args.spaces:
        sys.exit(f"--spaces: some of {', '.join(SPACES)}, fused among them (similar() and link search it)")
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
    cluster = (
        citus_local.LocalCluster.start(args.workers, shard_count=args.shards)
        if "citus" in args.sides
        else None
    )
    try:
        print(f"{args.products:,} + {args.products // 10:,} products, {args.dimension} dimensions (halfvec)")
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average {_load()} at the start", flush=True)
        sides = {"single": _Side(single, vectors)} if "single" in args.sides else {}
        if cluster is not None:
            on_cluster = Settings(database_url=cluster.create_database("citus_bench"), home=home / "cluster")
            sides["citus"] = _Side(on_cluster, vectors)
        rng = np.random.default_rng(1)
        queries = rng.choice(args.products, args.queries, replace=False)
        rival = np.arange(args.products, len(vectors))
        sample = np.sort(rng.choice(rival, min(args.link_sources, len(rival)), replace=False))
        for phase in (_load_phase, _index_phase, _similar_phase):
            for name, side in sides.items():
                _timed(phase, name, side, args, queries)
        for name, side in sides.items():
            _timed(_link_phase, name, side, args, sample)
        if len(sample) and len(sides) == 2:
            single_pairs, citus_pairs = (side.figures.pop("pairs") for side in sides.values())
            print(f"link sample: {len(single_pairs & citus_pairs) / max(len(single_pairs), 1):.3f} of the")
            print("  single node's (source, candidate) pairs are the cluster's too")
        print(f"load average {_load()} at the end")
    finally:
        if cluster is not None:
            cluster.stop()


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 50, 1), d)).astype(np.float32)
    v = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


class _Side:
    """One database under test, its product ids (in the order of `vectors`) and its figures."""

    def __init__(self, settings: Settings, vectors: np.ndarray) -> None:
        self.settings, self.vectors = settings, vectors
        self.ids: np.ndarray = np.empty(0, dtype=np.int64)
        self.figures: dict = {}


def _timed(phase, name: str, side: _Side, args, chosen: np.ndarray) -> None:
    print(f"{name}: {phase.__doc__} (load average {_load()})", flush=True)
    started = time.perf_counter()
    for key, value in phase(side, args, chosen).items():
        side.figures[key] = value
        if key != "pairs":
            print(f"  {name:<7} {key:<30} {value}", flush=True)
    print(f"  {name:<7} {'phase took (s)':<30} {time.perf_counter() - started:.1f} (load average {_load()})")


def _load_phase(side: _Side, args, _chosen) -> dict:
    """products by COPY, vectors by binary COPY + UPDATE"""
    vectors, n = side.vectors, args.products
    figures = {}
    db.upgrade(side.settings)
    with db.connection(side.settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop'), ('rival')")
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template, storage)"
            " VALUES ('bench', 'bench', 'clip', %s, %s, '{title}', 'halfvec')",
            (args.dimension, args.dimension),
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title) FROM STDIN"
        ) as copy:
            for i in range(len(vectors)):
                catalog, name = (1, f"shop-{i}") if i < n else (2, f"rival-{i}")
                copy.write_row((catalog, name, f"item {i}"))
        conn.commit()  # on Citus the pending embeddings rows are written here (sql/citus.sql)
        figures["COPY products (s)"] = round(time.perf_counter() - started, 1)
        side.ids = np.array(
            [r[0] for r in conn.execute("SELECT id FROM prodmatch.products ORDER BY id")], dtype=np.int64
        )
        started = time.perf_counter()
        conn.execute("CREATE TABLE bench_vectors (product_id bigint, v halfvec)")
        if distribute.is_citus(conn):
            # co-located with the vectors, so the UPDATE below runs on each shard (a temporary table would be
            # sent to every shard whole: 6x slower at 100,000)
            conn.execute(
                "SELECT create_distributed_table('bench_vectors', 'product_id',"
                " colocate_with => 'prodmatch.embeddings')"
            )
        with conn.cursor().copy("COPY bench_vectors FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_BINARY_HEADER)
            for start in range(0, len(vectors), COPY_ROWS):
                stop = min(start + COPY_ROWS, len(vectors))
                copy.write(_halfvec_rows(side.ids[start:stop], vectors[start:stop]))
                if (stop // COPY_ROWS) % max(1, len(vectors) // COPY_ROWS // 10) == 0 or stop == len(vectors):
                    print(f"    {stop:,} vectors copied", flush=True)
            copy.write(_BINARY_TRAILER)
        figures["COPY vectors to staging (s)"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        conn.execute(
            "UPDATE prodmatch.embeddings e SET fused_half = b.v, image_half = b.v, text_half = b.v, status = 'done',"
            " embedded_at = now() FROM bench_vectors b WHERE e.product_id = b.product_id"
        )
        conn.execute("DROP TABLE bench_vectors")
        conn.commit()
        figures["UPDATE embeddings (s)"] = round(time.perf_counter() - started, 1)
        done = conn.execute("SELECT count(*) FROM prodmatch.embeddings WHERE status = 'done'").fetchone()[0]
        if done != len(vectors):
            raise SystemExit(f"{done} vectors written, {len(vectors)} expected")
    figures["load (s)"] = round(sum(figures.values()), 1)
    return figures


# PostgreSQL's binary COPY: a signature, flags and header extension length; each row a field count and each
# field its length then its bytes (int8 big-endian; halfvec as pgvector's halfvec_recv reads it: int16
# dimensions, int16 unused, then the float16 values, all big-endian); -1 at the end.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_BINARY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def _halfvec_rows(ids: np.ndarray, vectors: np.ndarray) -> bytes:
    """Rows (product_id bigint, v halfvec) of a binary COPY, built by numpy in one go."""
    d = vectors.shape[1]
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_length", ">i4"),
            ("id", ">i8"),
            ("v_length", ">i4"),
            ("dimensions", ">i2"),
            ("unused", ">i2"),
            ("v", ">f2", (d,)),
        ]
    )
    rows = np.zeros(len(ids), dtype=row)
    rows["fields"], rows["id_length"], rows["id"] = 2, 8, ids
    rows["v_length"], rows["dimensions"], rows["v"] = 4 + 2 * d, d, vectors
    return rows.tobytes()


def _index_phase(side: _Side, args, _chosen) -> dict:
    """HNSW index builds"""
    figures = {}
    build = args.index_build
    with db.connection(side.settings, autocommit=True) as conn:
        model = get_model(conn, "bench")
        if distribute.is_citus(conn):
            _set_on_workers(conn, "maintenance_work_mem", build.maintenance_work_mem)
        started = time.perf_counter()
        create_indexes(conn, model, build, spaces=args.spaces)
        figures[f"{len(args.spaces)} HNSW index build(s) (s)"] = round(time.perf_counter() - started, 1)
        figures["maintenance_work_mem"] = build.maintenance_work_mem
        conn.execute("ANALYZE prodmatch.embeddings")
        conn.execute("ANALYZE prodmatch.products")
        if distribute.is_citus(conn):
            placements = distribute.placements(conn)
            figures["shards per worker"] = [p.shards for p in placements]
            figures["MB per worker"] = [round(p.size_bytes / 2**20) for p in placements]
        else:
            figures["MB of embeddings"] = round(
                conn.execute("SELECT pg_total_relation_size('prodmatch.embeddings')").fetchone()[0] / 2**20
            )
    return figures


def _set_on_workers(conn, setting: str, value: str) -> None:
    """ALTER SYSTEM on every worker, then a reload (the benchmark's own cluster; setting and value are ours)."""
    command = f"ALTER SYSTEM SET {setting} = '{value}'"
    for statement in (command, "SELECT pg_reload_conf()"):
        failed = conn.execute(
            "SELECT nodename, nodeport, result FROM run_command_on_workers(%s) WHERE NOT success",
            (statement,),
        ).fetchall()
        if failed:
            raise SystemExit(f"{statement} failed on {failed}")


def _similar_phase(side: _Side, args, queries: np.ndarray) -> dict:
    """similar() latency and recall@10"""
    exact = []
    for q in queries:
        sims = side.vectors @ side.vectors[q]
        sims[q] = -2
        exact.append(set(side.ids[np.argpartition(-sims, 10)[:10]].tolist()))
    figures = {}
    for ef_search in args.ef_search:
        latencies, recalls = [], []
        with db.connection(side.settings) as conn:
            for q, nearest in zip(queries, exact, strict=True):
                started = time.perf_counter()
                found = [
                    r[0]
                    for r in conn.execute(
                        "SELECT product_id FROM prodmatch.similar(%s, k => 10, ef_search => %s::int)",
                        (int(side.ids[q]), ef_search),
                    )
                ]
                latencies.append((time.perf_counter() - started) * 1000)
                recalls.append(len(nearest & set(found)) / 10)
            conn.commit()
        latencies.sort()
        at = "" if len(args.ef_search) == 1 else f", ef_search {ef_search}"
        figures[f"similar p50 (ms){at}"] = round(statistics.median(latencies), 1)
        figures[f"similar p99 (ms){at}"] = round(
            latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1
        )
        figures[f"similar recall@10{at}"] = round(float(np.mean(recalls)), 3)
    return figures


def _link_phase(side: _Side, args, sample: np.ndarray) -> dict:
    """link --mode ann throughput"""
    figures = {}
    with db.connection(side.settings) as conn:
        if args.link_all or not len(sample):
            started = time.perf_counter()
            run = link(conn, "rival", "shop", k=5, mode="ann", threshold=0.9)
            figures["link --mode ann, all (sources/s)"] = round(
                run.sources / (time.perf_counter() - started), 1
            )
        if not len(sample):
            return figures
        started = time.perf_counter()
        model = get_model(conn, "bench")
        pairs = ann_candidates(
            conn,
            model,
            "fused",
            "rival",
            "shop",
            5,
            args.ef_search[0],
            lambda _n: None,
            source_only=side.ids[sample],
        )
        seconds = time.perf_counter() - started
        conn.commit()
    # product ids back to positions in `vectors`, so the two sides' pairs compare
    position = {int(pid): i for i, pid in enumerate(side.ids)}
    return figures | {
        f"ann candidates of {len(sample)} sources (sources/s)": round(len(sample) / seconds, 1),
        "pairs": {
            (position[int(s)], position[int(t)]) for s, t in zip(pairs.sources, pairs.targets, strict=True)
        },
    }


if __name__ == "__main__":
    main()
