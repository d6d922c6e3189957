"""Measured peak memory of exact `link`, `dedupe` and `index check` against the estimates the memory guard uses.

Builds catalogues A_n and B_n (n products each, image / text / fused vectors of DIM dimensions, clustered so the
search does real work) in an embedded server under a temporary PRODMATCH_HOME (or PRODMATCH_DATABASE_URL), then
runs each operation in a fresh subprocess that samples its own resident memory every 2 ms and prints the peak
above the baseline taken just before the call, next to the estimate.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/memory.py --sizes 5000 10000 20000 --dim 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.store.models import get_model

CHILD = r"""
import json, os, sys, threading, time
import numpy as np
from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.match.link import link, dedupe
from prodmatch.match.index_check import check_index
import prodmatch.quality.builtin  # noqa: F401  (imports done before the baseline)
import torch
torch.ones(4) @ torch.ones(4)
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
op, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = db.connect(Settings(database_url=url))
peak = [0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
baseline = rss()
thread = threading.Thread(target=sample, daemon=True)
thread.start()
started = time.perf_counter()
if op == "link":
    result = link(conn, f"A_{n}", f"B_{n}", mode="exact", space="fused")
    estimate = result.memory_estimate
elif op == "dedupe":
    result = dedupe(conn, f"A_{n}", 0.95, space="fused")
    estimate = result.memory_estimate
elif op == "lexical":  # benchmarks/memory_guard.py's links
    result = link(conn, f"A_{n}", f"B_{n}", space="lexical", memory_budget_bytes=2**40)
    estimate = result.memory_estimate
elif op == "matcher":
    result = link(conn, f"A_{n}", f"B_{n}", memory_budget_bytes=2**40)  # the built-in matcher
    estimate = result.memory_estimate
else:
    result = check_index(conn, space="fused", ef_values=(40,))
    estimate = result.memory_estimate
seconds = time.perf_counter() - started
done.set()
thread.join()
print(json.dumps({"op": op, "n": n, "peak": peak[0] - baseline, "estimate": estimate,
                  "pairs": getattr(result, "pairs", None), "seconds": seconds}))
"""


def build(url: str, sizes: list[int], dim: int, seed: int = 0) -> None:
    """Catalogues A_n and B_n for each n, a model 'bench' with all three spaces, its HNSW index skipped."""
    rng = np.random.default_rng(seed)
    with db.connection(Settings(database_url=url)) as conn:
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
            " VALUES ('bench', 'synthetic', 'clip', %s, %s, '{title}')",
            (dim, dim),
        )
        model = get_model(conn, "bench")
        centres = rng.standard_normal((max(sizes) // 4, dim)).astype(np.float32)
        for n in sizes:
            for side in ("A", "B"):
                name = f"{side}_{n}"
                catalog = conn.execute(
                    "INSERT INTO prodmatch.catalogs (name) VALUES (%s) RETURNING id", (name,)
                ).fetchone()[0]
                with conn.cursor().copy(
                    "COPY prodmatch.products (catalog_id, external_id, title) FROM STDIN"
                ) as copy:
                    for i in range(n):
                        copy.write_row((catalog, f"{name}-{i}", f"product {i % 997} colour {i % 13}"))
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM prodmatch.products WHERE catalog_id = %s ORDER BY id", (catalog,)
                    )
                ]
                conn.execute(
                    "DELETE FROM prodmatch.embeddings WHERE model_id = %s AND product_id = ANY(%s)",
                    (model.id, ids),
                )
                with conn.cursor().copy(
                    "COPY prodmatch.embeddings (model_id, product_id, image_vector, text_vector, fused_vector,"
                    " status) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int4", "int8", "vector", "vector", "vector", "text"])
                    for start in range(0, n, 4096):
                        rows = min(4096, n - start)
                        picked = centres[rng.integers(0, len(centres), rows)]
                        spaces = [
                            picked + 0.3 * rng.standard_normal((rows, dim)).astype(np.float32)
                            for _ in range(3)
                        ]
                        spaces = [s / np.linalg.norm(s, axis=1, keepdims=True) for s in spaces]
                        for i in range(rows):
                            copy.write_row(
                                (model.id, ids[start + i], spaces[0][i], spaces[1][i], spaces[2][i], "done")
                            )
        conn.execute("ANALYZE prodmatch.products, prodmatch.embeddings")
        conn.commit()
        refresh_lexical(conn)  # link refreshes the lexical space first; done here so it is not measured
        conn.commit()


def measure(url: str, op: str, n: int) -> dict:
    """Run `op` ("link", "dedupe", "index", "lexical", "matcher") on A_n / B_n in a fresh process: its figures."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, op, str(n), url], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--ops", nargs="+", default=["link", "dedupe", "index"])
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="prodmatch-memory-"))
    url = os.environ.get("PRODMATCH_DATABASE_URL") or db.database_url(Settings(home=home))
    db.upgrade(Settings(database_url=url, home=home))
    build(url, args.sizes, args.dim)
    mib = 2**20
    print(f"{'op':<7}{'n x n':>14}{'peak MiB':>10}{'estimate MiB':>14}{'ratio':>7}{'s':>7}")
    for op in args.ops:
        for n in args.sizes if op != "index" else [args.sizes[-1]]:
            r = measure(url, op, n)
            print(
                f"{op:<7}{f'{n:,} x {n:,}':>14}{r['peak'] / mib:>10.0f}{r['estimate'] / mib:>14.0f}"
                f"{r['estimate'] / max(r['peak'], 1):>7.2f}{r['seconds']:>7.1f}"
            )


if __name__ == "__main__":
    main()
