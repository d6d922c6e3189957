"""Speed of the lexical space and of `link --matcher` against today's exact cosine link, in one run.

    python benchmarks/link_speed.py [--products 100000] [--train-sources 2000]

Two catalogues A and B of N products each, written straight into the tables: titles from
benchmarks/lexical_speed.py's generator (brands in Latin and Cyrillic, model codes written four ways, units),
B holding noisy copies of 70% of A (a code re-spelt, words shuffled, the price moved a little) and others; a
512-dimensional fused vector per product around 5,000 centres (benchmarks/match.py's clustered vectors, copies
near their originals). Steps, each timed:

1. the lexical space for all 2N products (`refresh_lexical`: encode, IDF, write, HNSW index) and per 100,000;
2. exact cosine link A -> B, k=5 (today's `prodmatch link`);
3. `matcher train` on the gold pairs of `--train-sources` products of A (with the model's vectors);
4. `link --matcher` A -> B (hybrid candidates: exact top-k of the fused space, lexical top-k, code hits; every
   pair's signals; the matcher's probabilities; the stored run), and its time as a multiple of step 2;
5. the matcher run's precision / recall / F1 on all gold pairs;
6. the process's peak resident memory (`getrusage` max RSS) before and after step 4: the link works in
   blocks and chunks, so its peak grows with the catalogues, not with pairs times signals.
Uses a throw-away embedded server.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lexical_speed import title  # noqa: E402
from match import clustered_catalogues  # noqa: E402
from quality import _cpu  # noqa: E402

from prodmatch import store  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.embed.lexical_refresh import refresh_lexical  # noqa: E402
from prodmatch.match.link import link  # noqa: E402
from prodmatch.quality.matchers import train_and_store  # noqa: E402
from prodmatch.store.models import get_model  # noqa: E402


def catalogues(n: int, seed: int = 0) -> tuple[list[dict], list[dict], list[tuple[int, int]]]:
    rng = random.Random(seed)
    a = [{**title(rng), "price": round(rng.uniform(5, 2000), 2)} for _ in range(n)]
    b, gold = [], []
    copies = rng.sample(range(n), int(0.7 * n))
    for j, i in enumerate(copies):
        words = a[i]["title"].split()
        rng.shuffle(words)
        text = " ".join(words)
        text = text.upper() if rng.random() < 0.3 else text
        b.append(
            {
                "brand": a[i]["brand"],
                "title": text,
                "price": round(a[i]["price"] * rng.uniform(0.93, 1.07), 2),
            }
        )
        gold.append((i, j))
    while len(b) < n:
        b.append({**title(rng), "price": round(rng.uniform(5, 2000), 2)})
    return a, b, gold


def load(conn, a: list[dict], b: list[dict], va: np.ndarray, vb: np.ndarray) -> None:
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('A'), ('B')")
    for name, rows in (("A", a), ("B", b)):
        catalog_id = conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = %s", (name,)).fetchone()[0]
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title, brand, price, currency) FROM STDIN"
        ) as copy:
            for i, row in enumerate(rows):
                copy.write_row((catalog_id, f"{name}-{i}", row["title"], row["brand"], row["price"], "EUR"))
    conn.execute(
        "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
        " VALUES ('bench', 'synthetic', 'clip', 512, 512, '{title}')"
    )
    model = get_model(conn, "bench")
    ids = {
        name: [
            r[0]
            for r in conn.execute(
                "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                " WHERE c.name = %s ORDER BY p.id",
                (name,),
            )
        ]
        for name in ("A", "B")
    }
    with conn.cursor().copy(
        "COPY prodmatch.embeddings (model_id, product_id, fused_vector, status) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int8", "vector", "text"])
        for name, vectors in (("A", va), ("B", vb)):
            for pid, vector in zip(ids[name], vectors, strict=True):
                copy.write_row((model.id, pid, vector, "done"))
    conn.execute("ANALYZE prodmatch.products, prodmatch.embeddings")
    conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--train-sources", type=int, default=2000)
    args = parser.parse_args()
    n = args.products
    print(f"CPU: {_cpu()}; {n:,} x {n:,} products; embedded PostgreSQL")
    a, b, gold = catalogues(n)
    va, vb = clustered_catalogues(n)
    for i, j in gold:  # the copies' vectors near their originals
        vb[j] = va[i] + 0.15 * np.random.default_rng(j).standard_normal(va.shape[1]).astype(np.float32)
        vb[j] /= np.linalg.norm(vb[j])
    home = Path(tempfile.mkdtemp(prefix="prodmatch-link-speed-"))
    try:
        settings = Settings(home=home)
        store.upgrade(settings)
        with store.connection(settings) as conn:
            started = time.perf_counter()
            load(conn, a, b, va, vb)
            print(f"load (COPY): {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            built = refresh_lexical(conn)
            conn.commit()
            lexical = time.perf_counter() - started
            print(
                f"1. lexical space for {built.documents:,} products: {lexical:.1f} s "
                f"({lexical / built.documents * 100_000:.1f} s per 100,000 products, HNSW index included)"
            )
            started = time.perf_counter()
            cosine = link(conn, "A", "B", k=5, mode="exact", space="fused", model="bench")
            t_cosine = time.perf_counter() - started
            print(f"2. exact cosine link, k=5: {t_cosine:.1f} s ({n / t_cosine:,.0f} products/s)")
            gold_file = home / "gold.csv"
            train = sorted(random.Random(1).sample(range(len(gold)), min(args.train_sources, len(gold))))
            with open(gold_file, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(("source_catalog", "source_id", "target_catalog", "target_id", "label"))
                for k in train:
                    i, j = gold[k]
                    writer.writerow(("A", f"A-{i}", "B", f"B-{j}", 1))
                # Products of A with no copy in B: a label-0 row names them, so all their candidates are
                # non-matches (a gold file lists every true target of the sources it names).
                unmatched = sorted(set(range(n)) - {i for i, _ in gold})
                for i in random.Random(2).sample(unmatched, min(len(unmatched), len(train) // 2)):
                    writer.writerow(("A", f"A-{i}", "B", "B-0", 0))
            started = time.perf_counter()
            report = train_and_store(conn, gold_file, "A", "B", model="bench", name="bench-matcher")
            print(
                f"3. matcher train on {report.gold_pairs} gold pairs: {time.perf_counter() - started:.1f} s "
                f"({report.kind}, held-out F1 {report.metrics['out_of_fold_f1']:.3f})"
            )
            rss_before = _max_rss()
            started = time.perf_counter()
            matched = link(conn, "A", "B", k=5, matcher="bench-matcher")
            t_matcher = time.perf_counter() - started
            print(
                f"4. link --matcher, k=5: {t_matcher:.1f} s ({n / t_matcher:,.0f} products/s) = "
                f"{t_matcher / t_cosine:.2f}x the exact cosine link; {matched.pairs:,} pairs stored, "
                f"{matched.accepted:,} accepted"
            )
            truth = {(f"A-{i}", f"B-{j}") for i, j in gold}
            accepted = set(
                conn.execute(
                    "SELECT source_external_id, target_external_id FROM prodmatch.matches_v"
                    " WHERE run_id = %s AND accepted",
                    (matched.run_id,),
                ).fetchall()
            )
            top1 = set(
                conn.execute(
                    "SELECT source_external_id, target_external_id FROM prodmatch.matches_v"
                    " WHERE run_id = %s AND rank = 1",
                    (cosine.run_id,),
                ).fetchall()
            )
            for label, found in (("matcher accepted", accepted), ("cosine rank 1", top1)):
                tp = len(found & truth)
                p, r = tp / max(len(found), 1), tp / len(truth)
                print(f"5. {label}: precision {p:.3f} recall {r:.3f} F1 {2 * p * r / max(p + r, 1e-9):.3f}")
            print(
                f"6. peak RSS of the process: {rss_before:,.0f} MiB before link --matcher, {_max_rss():,.0f} MiB after"
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _max_rss() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
