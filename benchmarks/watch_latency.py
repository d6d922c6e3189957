"""Latency of `prodmatch link --watch`: from an application's plain-SQL INSERT to its matches in matches_v.

    python benchmarks/watch_latency.py [--products 1000] [--offers 10] [--poll-seconds 1.0]

Generates a demo shop and competitor (`prodmatch.demo.catalogues`, no neural model), ingests them into a throw-away
embedded PostgreSQL (or PRODMATCH_DATABASE_URL), links them on the lexical space and with a learned matcher trained
on the demo's gold pairs, and for each run starts `watch_link` in a thread. Then, one at a time, it inserts a near
copy of a random shop product by plain SQL and measures the seconds until the new offer's rows are readable in
`prodmatch.matches_v`, and how long the watcher's pass took (the rest is waiting for the next wake-up: without a
registered model no NOTIFY is sent, so the poll interval bounds it). Prints p50 and max of both per run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodmatch import match  # noqa: E402
from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings, load_settings  # noqa: E402
from prodmatch.demo.catalogues import generate  # noqa: E402
from prodmatch.ingest.load import ingest_file  # noqa: E402
from prodmatch.match.watch import WatchPass, watch_link  # noqa: E402
from prodmatch.quality.matchers import train_and_store  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@contextmanager
def watching(settings: Settings, run_id: int, poll_seconds: float) -> Iterator[list[WatchPass]]:
    """`watch_link` on run `run_id` in a thread for the block; yields its passes (growing) once the first one,
    which recomputes the whole run, is done. The watcher is stopped and joined when the block ends."""
    stop = threading.Event()
    passes: list[WatchPass] = []
    thread = threading.Thread(
        target=watch_link,
        args=(settings, run_id),
        kwargs={"stop": stop, "poll_seconds": poll_seconds, "on_pass": passes.append},
        daemon=True,
    )
    thread.start()
    try:
        while not passes:
            time.sleep(0.05)
        yield passes
    finally:
        stop.set()
        thread.join()


def measure(settings: Settings, conn, run_id: int, offers: int, poll: float, seed: int) -> dict:
    """Insert `offers` products one by one; seconds until each shows in matches_v, and the passes' seconds."""
    with watching(settings, run_id, poll) as passes:
        latencies = _offers(conn, run_id, offers, poll, seed)
    work = [p.seconds for p in passes[1:] if p.recomputed_sources]
    return {
        "first_pass_s": passes[0].seconds,
        "latency_p50_s": statistics.median(latencies),
        "latency_max_s": max(latencies),
        "pass_p50_s": statistics.median(work) if work else None,
        "pass_max_s": max(work) if work else None,
    }


def _offers(conn, run_id: int, offers: int, poll: float, seed: int) -> list[float]:
    """Seconds from each offer's INSERT until it shows in matches_v."""
    shop = [
        r[0]
        for r in conn.execute(
            "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c"
            " ON c.id = p.catalog_id WHERE c.name = 'shop'"
        )
    ]
    conn.commit()
    rng = random.Random(seed)
    latencies = []
    for number in range(offers):
        external_id = f"bench-offer-{run_id}-{number}"
        started = time.perf_counter()
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, category, price, currency)"
            " SELECT catalog_id, %s, title || ' new', brand, category, price, currency"
            " FROM prodmatch.products WHERE id = %s",
            (external_id, rng.choice(shop)),
        )
        conn.commit()
        while not conn.execute(
            "SELECT EXISTS (SELECT 1 FROM prodmatch.matches_v WHERE run_id = %s AND source_external_id = %s)",
            (run_id, external_id),
        ).fetchone()[0]:
            conn.commit()
            time.sleep(0.01)
        conn.commit()
        latencies.append(time.perf_counter() - started)
        time.sleep(rng.uniform(0, poll))  # the next offer arrives at a random point of the poll cycle
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--offers", type=int, default=10)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; {args.products} shop products, a competitor of the demo's size")
    with tempfile.TemporaryDirectory() as tmp:
        env = load_settings()
        settings = env if env.database_url else Settings(home=Path(tmp) / "home")
        db.upgrade(settings)
        files = generate(Path(tmp) / "demo", args.products, seed=1, image_size=32)
        with db.connection(settings) as conn:
            ingest_file(conn, files.shop, "shop")
            ingest_file(conn, files.competitor, "competitor")
            conn.commit()
            lexical = match.link(conn, "shop", "competitor", k=5)
            print(f"lexical link: {lexical.seconds:.2f} s")
            result = measure(settings, conn, lexical.run_id, args.offers, args.poll_seconds, 1)
            print("lexical run: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items() if v is not None))
            train_and_store(conn, files.gold, "shop", "competitor", name="bench")
            learned = match.link(conn, "shop", "competitor", k=5, matcher="bench", one_to_one=True)
            print(f"matcher link (one-to-one): {learned.seconds:.2f} s")
            result = measure(settings, conn, learned.run_id, args.offers, args.poll_seconds, 2)
            print("matcher run: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items() if v is not None))


if __name__ == "__main__":
    main()
