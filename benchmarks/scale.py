"""How prodmatch grows from 100,000 to 1,000,000 products on this machine: one fresh database per size.

    python benchmarks/scale.py [--sizes 100000 300000 1000000] [--dim 128] [--json docs/scale.json]
                               [--png docs/scale.png]

Per size N, a target catalogue of N products and a source catalogue of 10,000 (noisy copies of target
products), with synthetic rows (brand, title with a model code, category, price) and clustered synthetic fused
vectors (families of ~20 products around a centre, as for real product photos) written straight into the tables
with COPY: embedding a million products with a model is not possible on this CPU. Measured per step, each with
its peak memory (the benchmark process's RSS and the summed Pss of the database server's processes, sampled
every 0.2 s):
- ingest: COPY of the product rows (the products triggers run), rows/s;
- vectors: COPY of the fused vectors for two models on the same products, one with `vector` storage and one with
  `halfvec` storage;
- lexical: `prodmatch.embed.lexical_refresh.refresh_lexical` (encode, document frequencies, sparse HNSW build);
- hnsw: `create_indexes` per model (the build settings of `config.IndexBuild`), seconds and index size, and the
  table bytes the model's vectors take;
- similar: `prodmatch.similar(id, k => 10, in_catalog => 'target')` at the default ef_search, p50/p99 and
  recall@10 against exact search, per storage;
- link: `link --mode ann` of the 10,000 sources against the N targets, products/s and recall@5 against exact
  top-5 (numpy), per storage;
- ef_search sweep: recall@10 and p50 of `similar` at ef_search 40 to 800 (100 queries, last storage);
- what half precision alone costs: recall@10 of exact search on fp16-rounded vectors against fp32, 2,000 queries;
- watch: `link --watch` (`watch_link`) following the stored ANN link run of the last storage; an application
  inserts, one at a time, new source offers and new target products by plain SQL, and the embedding worker's
  write of each one's vector is simulated by the worker's own UPDATE (status 'done', embedded_at); measured: the
  seconds from the INSERT's commit to the product's rows in `prodmatch.matches_v` (p50 / max), the watcher's pass
  seconds, and its first (whole-run) pass.
Only the fused space is filled (one space, 128 dimensions by default) so that the three sizes run in under an
hour here; the image and text indexes of each model stay empty. Uses a throw-away embedded server per size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pgvector import HalfVector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import cpu_name  # noqa: E402
from watch_latency import watching  # noqa: E402

from prodmatch import match as matching  # noqa: E402
from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings, load_settings  # noqa: E402
from prodmatch.embed.lexical_refresh import refresh_lexical  # noqa: E402
from prodmatch.match.exact import top_k_cosine  # noqa: E402
from prodmatch.store.models import autocommit_twin, create_indexes, get_model, index_name  # noqa: E402

SOURCES = 10_000
EF_SWEEP = (40, 100, 200, 400, 800)  # hnsw.ef_search values tried for `similar` at each size
BRANDS = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "tyrell",
    "cyberdyne",
    "soylent",
]
NOUNS = ["kettle", "toaster", "blender", "lamp", "drill", "speaker", "monitor", "router", "camera", "watch"]
ADJECTIVES = ["black", "white", "steel", "compact", "pro", "mini", "max", "classic", "smart", "eco"]


# --- memory sampling --------------------------------------------------------------------------------------


def _rss_kb(pid: int, field: str, where: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{where}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _server_pids(postmaster: int) -> list[int]:
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


class MemorySampler:
    """Peak RSS of this process and peak summed proportional set size (Pss) of the server's processes."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self.peak_self = self.peak_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pids: list[int] = []
        tick = 0
        while not self._stop.wait(0.2):
            if tick % 10 == 0:
                pids = _server_pids(self.postmaster)
            tick += 1
            self.peak_self = max(self.peak_self, _rss_kb(os.getpid(), "VmRSS"))
            # Pss: shared memory (shared_buffers, a parallel build's graph) counted once across the processes
            self.peak_server = max(self.peak_server, sum(_rss_kb(p, "Pss", "smaps_rollup") for p in pids))

    def reset(self) -> None:
        self.peak_self = _rss_kb(os.getpid(), "VmRSS")
        self.peak_server = 0

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def step(results: dict, name: str, sampler: MemorySampler):
    sampler.reset()
    started = time.perf_counter()
    out: dict = {}
    yield out
    out["seconds"] = round(time.perf_counter() - started, 2)
    out["peak_process_mb"] = round(sampler.peak_self / 1024)
    out["peak_server_mb"] = round(sampler.peak_server / 1024)
    results[name] = out
    print(f"  {name}: {json.dumps(out)}", flush=True)
    if _PARTIAL is not None:  # what finished so far survives a run stopped half-way
        _PARTIAL.write_text(json.dumps(results, indent=1) + "\n")


# --- synthetic data -----------------------------------------------------------------------------------------


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Target vectors (n, dim), source vectors (SOURCES, dim; noisy copies of targets), the family of each
    target (its cluster) and the family of each source; vectors float32 and unit length."""
    rng = np.random.default_rng(seed)
    families = max(1, n // 20)
    centres = rng.standard_normal((families, dim), dtype=np.float32)
    family = rng.integers(0, families, n)
    target = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in slices: a million x dim at once doubles the peak memory
        stop = min(n, start + 100_000)
        target[start:stop] = centres[family[start:stop]] + 0.6 * rng.standard_normal(
            (stop - start, dim), dtype=np.float32
        )
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    copied = rng.choice(n, SOURCES, replace=False)
    source = target[copied] + 0.15 * rng.standard_normal((SOURCES, dim), dtype=np.float32)
    source /= np.linalg.norm(source, axis=1, keepdims=True)
    return target, source, family, family[copied]


def product_row(catalog_id: int, name: str, i: int, family: int) -> tuple:
    """A product of family `family`: family members share brand, noun and adjective and differ by model code."""
    brand, noun, adjective = BRANDS[family % 10], NOUNS[(family // 10) % 10], ADJECTIVES[(family // 100) % 10]
    title = f"{brand} {adjective} {noun} {family % 997}-{i % 89}"
    return (catalog_id, f"{name}-{i}", title, brand, noun, 10 + (family % 500))


def load_products(conn, family: np.ndarray, source_family: np.ndarray) -> dict[str, np.ndarray]:
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('target'), ('source')")
    ids = {}
    for name, fams in (("target", family), ("source", source_family)):
        catalog_id = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = %s", (name,)).fetchone()[0]
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title, brand, category, price) FROM STDIN"
        ) as copy:
            for i, f in enumerate(fams.tolist()):
                copy.write_row(product_row(catalog_id, name, i, f))
        ids[name] = np.array(
            [r[0] for r in conn.execute("SELECT id FROM prodmatch.products WHERE catalog_id = %s ORDER BY id",
                                        (catalog_id,))], dtype=np.int64)  # fmt: skip
    conn.commit()
    return ids


def load_vectors(conn, storage: str, ids: dict[str, np.ndarray], vectors: dict[str, np.ndarray]) -> int:
    dim = vectors["target"].shape[1]
    conn.execute(
        "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template, storage)"
        " VALUES (%s, 'synthetic', 'clip', %s, %s, '{title}', %s)",
        (storage, dim, dim, storage),
    )
    model = get_model(conn, storage)
    column = "fused_half" if storage == "halfvec" else "fused_vector"
    with conn.cursor().copy(
        f"COPY prodmatch.embeddings (model_id, product_id, {column}, status) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int8", storage, "text"])
        for name in ("target", "source"):
            rows = vectors[name] if storage == "vector" else [HalfVector(v) for v in vectors[name]]
            for pid, vector in zip(ids[name].tolist(), rows, strict=True):
                copy.write_row((model.id, pid, vector, "done"))
    conn.commit()
    return model.id


# --- one size -----------------------------------------------------------------------------------------------


_PARTIAL: Path | None = None


def run_size(
    n: int, dim: int, queries: int, storages: tuple[str, ...], lexical: bool, watch_offers: int = 20
) -> dict:
    print(f"\n== {n:,} target products + {SOURCES:,} sources, {dim} dimensions", flush=True)
    results: dict = {"products": n + SOURCES, "dim": dim}
    target, source, family, source_family = synthetic(n, dim)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home")
        db.upgrade(settings)
        postmaster = int((settings.pgdata / "postmaster.pid").read_text().split()[0])
        sampler = MemorySampler(postmaster)
        results["index_build"] = load_settings().index_build.__dict__
        with db.connection(settings) as conn:
            with step(results, "ingest", sampler) as out:
                ids = load_products(conn, family, source_family)
            out["rows_per_s"] = round((n + SOURCES) / out["seconds"])
            vectors = {"target": target, "source": source}
            models = {}
            for storage in storages:
                with step(results, f"vectors_{storage}", sampler):
                    models[storage] = load_vectors(conn, storage, ids, vectors)
                results[f"vectors_{storage}"]["rows_per_s"] = round(
                    (n + SOURCES) / results[f"vectors_{storage}"]["seconds"]
                )
            conn.commit()
            with autocommit_twin(conn) as twin:
                twin.execute("VACUUM ANALYZE prodmatch.products, prodmatch.embeddings")
            if lexical:
                with step(results, "lexical", sampler) as out:
                    done = refresh_lexical(conn)
                    out["products_per_s"] = round(done.documents / max(done.seconds, 1e-9))
                out["index_mb"] = _size_mb(conn, "prodmatch.lexical_vector_hnsw")
            for storage, model_id in models.items():
                model = get_model(conn, storage)
                conn.commit()
                with step(results, f"hnsw_{storage}", sampler) as out, autocommit_twin(conn) as twin:
                    create_indexes(twin, model)
                out["index_mb"] = _size_mb(conn, f"prodmatch.{index_name(model, 'fused')}")
                column = "fused_half" if storage == "halfvec" else "fused_vector"
                out["vector_bytes_mb"] = round(
                    conn.execute(
                        f"SELECT sum(pg_column_size({column})) FROM prodmatch.embeddings WHERE model_id = %s",
                        (model_id,),
                    ).fetchone()[0]
                    / 2**20,
                    1,
                )
                out["rows_per_s"] = round((n + SOURCES) / out["seconds"])
                conn.commit()
            results["embeddings_table_mb"] = _size_mb(conn, "prodmatch.embeddings", total=True)
            conn.execute("ANALYZE prodmatch.embeddings")
            conn.commit()
            truth10 = top_k_cosine(source[:queries], target, 10, candidate_precision="fp32").indices
            # what half precision alone costs, without an index: exact top-10 on fp16-rounded vectors
            rounded = top_k_cosine(
                source[:2000].astype(np.float16).astype(np.float32),
                target.astype(np.float16).astype(np.float32),
                10,
                candidate_precision="fp32",
            ).indices
            exact = top_k_cosine(source[:2000], target, 10, candidate_precision="fp32").indices
            results["exact_recall_at_10_of_halfvec_rounding"] = round(
                float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(exact, rounded, strict=True)])), 5
            )
            for storage in models:
                with step(results, f"similar_{storage}", sampler) as out:
                    latencies, recalls, nearest = [], [], []
                    for q in range(queries):
                        started = time.perf_counter()
                        got = conn.execute(
                            "SELECT product_id FROM prodmatch.similar(%s::bigint, k => 10, in_catalog => 'target',"
                            " model => %s)",
                            (int(ids["source"][q]), storage),
                        ).fetchall()
                        latencies.append(time.perf_counter() - started)
                        truth = set(ids["target"][truth10[q]].tolist())
                        recalls.append(len(truth & {r[0] for r in got}) / 10)
                        nearest.append(bool(got) and got[0][0] == ids["target"][truth10[q][0]])
                    conn.rollback()
                out.update(
                    p50_ms=round(float(np.percentile(latencies, 50)) * 1000, 2),
                    p99_ms=round(float(np.percentile(latencies, 99)) * 1000, 2),
                    recall_at_10=round(float(np.mean(recalls)), 4),
                    # the exact nearest product returned first: what matching needs when the other nine are
                    # near-ties inside a family of look-alikes (recall@10 then measures tie-breaking)
                    nearest_first=round(float(np.mean(nearest)), 4),
                    queries=queries,
                    ef_search=matching.DEFAULT_EF_SEARCH,
                )
            # what a wider search buys at this size: recall@10 and p50 of `similar` per ef_search, last storage
            sweep = {}
            for ef in EF_SWEEP:
                latencies, recalls = [], []
                for q in range(min(queries, 100)):
                    started = time.perf_counter()
                    got = conn.execute(
                        "SELECT product_id FROM prodmatch.similar(%s::bigint, k => 10, in_catalog => 'target',"
                        " model => %s, ef_search => %s)",
                        (int(ids["source"][q]), storage, ef),
                    ).fetchall()
                    latencies.append(time.perf_counter() - started)
                    truth = set(ids["target"][truth10[q]].tolist())
                    recalls.append(len(truth & {r[0] for r in got}) / 10)
                conn.rollback()
                sweep[str(ef)] = {
                    "recall_at_10": round(float(np.mean(recalls)), 4),
                    "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
                }
            results[f"ef_search_sweep_{storage}"] = sweep
            print(f"  ef_search_sweep_{storage}: {json.dumps(sweep)}", flush=True)
            truth5 = top_k_cosine(source, target, 5, candidate_precision="fp32").indices
            for storage in models:
                found: dict[int, set] = {}
                with step(results, f"link_ann_{storage}", sampler) as out:
                    if lexical:
                        run = matching.link(
                            conn, "source", "target", k=5, mode="ann", model=storage, space="fused"
                        )
                        conn.commit()
                        pairs = conn.execute(
                            "SELECT source_product_id, target_product_id FROM prodmatch.matches WHERE run_id = %s",
                            (run.run_id,),
                        ).fetchall()
                    else:  # link would build the lexical space first: run its ANN query alone, unstored
                        out["note"] = (
                            "prodmatch.candidates in chunks of 200 (link --mode ann's query), not stored"
                        )
                        pairs = []
                        chunks = ids["source"].tolist()
                        for start in range(0, len(chunks), 200):
                            pairs += conn.execute(
                                "SELECT source_product_id, target_product_id FROM prodmatch.candidates('source',"
                                " 'target', k => 5, model => %s, source_ids => %s::bigint[])",
                                (storage, chunks[start : start + 200]),
                            ).fetchall()
                        conn.rollback()
                out["products_per_s"] = round(SOURCES / out["seconds"])
                for s, t in pairs:
                    found.setdefault(s, set()).add(t)
                hits = [
                    len(found.get(int(s), set()) & set(ids["target"][truth5[i]].tolist())) / 5
                    for i, s in enumerate(ids["source"])
                ]
                out["recall_at_5"] = round(float(np.mean(hits)), 4)
                out["nearest_found"] = round(  # the exact nearest target among the source's 5 candidates
                    float(
                        np.mean(
                            [int(ids["target"][truth5[i][0]]) in found.get(int(s), set())
                             for i, s in enumerate(ids["source"])]
                        )
                    ),
                    4,
                )  # fmt: skip
                conn.rollback()
                last_run = run.run_id if lexical else None
            if last_run is not None and watch_offers:
                with step(results, "watch", sampler) as out:
                    out.update(
                        measure_watch(settings, conn, last_run, storage, ids, target, source, watch_offers)
                    )
        sampler.stop()
    return results


def measure_watch(
    settings: Settings,
    conn,
    run_id: int,
    storage: str,
    ids: dict[str, np.ndarray],
    target: np.ndarray,
    source: np.ndarray,
    offers: int,
    poll_seconds: float = 1.0,
) -> dict:
    """Insert `offers` products (sources and targets alternately) while `watch_link` follows run `run_id`."""
    started = time.perf_counter()
    # the first pass computes the whole run and keeps it in memory
    with watching(settings, run_id, poll_seconds) as passes:
        first_pass = time.perf_counter() - started
        model = get_model(conn, storage)
        catalogs = dict(conn.execute("SELECT name, id FROM prodmatch.catalogs").fetchall())
        conn.commit()
        rng = np.random.default_rng(7)
        latencies: dict[str, list[float]] = {"source": [], "target": []}
        appeared = {"source": 0, "target": 0}
        for number in range(offers):
            side = ("source", "target")[number % 2]
            # a near copy of an existing source's vector: a new offer in the source catalogue has the copied
            # source's matches; a new target product becomes that source's best candidate
            base = source[rng.integers(len(source))]
            vector = base + 0.02 * rng.standard_normal(base.shape[0]).astype(np.float32)
            vector /= np.linalg.norm(vector)
            external_id = f"watch-{side}-{number}"
            began = time.perf_counter()
            product_id = conn.execute(
                "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, category, price)"
                " VALUES (%s, %s, %s, 'acme', 'kettle', 10) RETURNING id",
                (catalogs[side], external_id, f"acme new kettle {number}"),
            ).fetchone()[0]
            conn.commit()
            column = "fused_half" if storage == "halfvec" else "fused_vector"
            value = HalfVector(vector) if storage == "halfvec" else vector
            conn.execute(  # what the embedding worker writes once it has embedded the new product
                f"UPDATE prodmatch.embeddings SET {column} = %s, status = 'done', embedded_at = now()"
                " WHERE model_id = %s AND product_id = %s",
                (value, model.id, product_id),
            )
            conn.commit()
            written = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            conn.commit()
            where = "source_external_id" if side == "source" else "target_external_id"
            # Done when the product shows in matches_v, or when a pass that saw its vector has finished: a new
            # target that the ANN search of its source misses (as a fresh `link --mode ann` would) never shows.
            while not (
                shown := conn.execute(
                    f"SELECT EXISTS (SELECT 1 FROM prodmatch.matches_v WHERE run_id = %s AND {where} = %s)",
                    (run_id, external_id),
                ).fetchone()[0]
            ) and not any(p.checkpoint > written for p in passes):
                conn.commit()
                if time.perf_counter() - began > 300:
                    raise RuntimeError(f"{external_id}: no watcher pass within 300 s")
                time.sleep(0.01)
            conn.commit()
            latencies[side].append(time.perf_counter() - began)
            appeared[side] += int(shown)
            time.sleep(
                float(rng.uniform(0, poll_seconds))
            )  # the next one arrives at a random point of the poll
    work = [p.seconds for p in passes[1:] if p.recomputed_sources]
    every = latencies["source"] + latencies["target"]
    return {
        "first_pass_s": round(first_pass, 2),
        "offers": offers,
        "latency_p50_s": round(float(np.median(every)), 3),
        "latency_max_s": round(max(every), 3),
        "latency_source_p50_s": round(float(np.median(latencies["source"])), 3),
        "latency_target_p50_s": round(float(np.median(latencies["target"])), 3),
        "shown": appeared,  # of the offers/2 per side, how many are in matches_v (the others: missed by ANN)
        "pass_p50_s": round(float(np.median(work)), 3) if work else None,
        "pass_max_s": round(max(work), 3) if work else None,
        "poll_seconds": poll_seconds,
    }


def _size_mb(conn, relation: str, total: bool = False) -> float:
    function = "pg_total_relation_size" if total else "pg_relation_size"
    return round(conn.execute(f"SELECT {function}(%s::regclass)", (relation,)).fetchone()[0] / 2**20, 1)


# --- report -------------------------------------------------------------------------------------------------


def draw(runs: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["products"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in [
        ("ingest", "ingest (COPY)"),
        ("lexical", "lexical build"),
        ("hnsw_vector", "HNSW build, vector"),
        ("hnsw_halfvec", "HNSW build, halfvec"),
        ("link_ann_vector", "link --mode ann 10k, vector"),
        ("link_ann_halfvec", "link --mode ann 10k, halfvec"),
    ]:
        have = [r for r in runs if key in r]  # a size run with fewer steps (--no-lexical) plots what it has
        left.plot([r["products"] for r in have], [r[key]["seconds"] for r in have], marker="o", label=label)
    have = [r for r in runs if "watch" in r]
    left.plot(
        [r["products"] for r in have],
        [r["watch"]["latency_p50_s"] for r in have],
        marker="s",
        linestyle="--",
        label="--watch: INSERT -> matches_v, p50",
    )
    left.set(xscale="log", yscale="log", xlabel="products", ylabel="seconds", title="time per step")
    left.legend(fontsize=8)
    for key, label in [
        ("hnsw_vector", "HNSW index, vector"),
        ("hnsw_halfvec", "HNSW index, halfvec"),
        ("lexical", "lexical HNSW index"),
    ]:
        have = [r for r in runs if key in r]
        right.plot([r["products"] for r in have], [r[key]["index_mb"] for r in have], marker="o", label=label)
    if all("similar_halfvec" in r for r in runs):
        twin = right.twinx()
        twin.plot(
            sizes,
            [r["similar_halfvec"]["p99_ms"] for r in runs],
            "k--",
            marker="x",
            label="similar p99 (halfvec)",
        )
        twin.set_ylabel("similar p99 ms")
        twin.legend(loc="lower right", fontsize=8)
    right.set(xscale="log", yscale="log", xlabel="products", ylabel="MB", title="index size")
    right.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", type=Path, default=Path("docs/scale.json"))
    parser.add_argument("--png", type=Path, default=Path("docs/scale.png"))
    parser.add_argument("--storages", nargs="+", choices=["vector", "halfvec"], default=["vector", "halfvec"])
    parser.add_argument(
        "--no-lexical", action="store_true", help="Skip the lexical build (link then skips it too)."
    )
    parser.add_argument("--partial", type=Path, help="Write each size's figures here after every step.")
    parser.add_argument(
        "--watch-offers",
        type=int,
        default=20,
        help="Products inserted under `link --watch` (0: skip the step).",
    )
    args = parser.parse_args()
    global _PARTIAL
    _PARTIAL = args.partial
    print(f"CPU: {cpu_name()}; index build settings: {load_settings().index_build}", flush=True)
    runs = []
    for n in args.sizes:
        runs.append(
            run_size(n, args.dim, args.queries, tuple(args.storages), not args.no_lexical, args.watch_offers)
        )
        args.json.write_text(json.dumps({"cpu": cpu_name(), "runs": runs}, indent=1) + "\n")
        draw(runs, args.png)


if __name__ == "__main__":
    main()
