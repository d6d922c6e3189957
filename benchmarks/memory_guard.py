"""Measured peak memory of the lexical link and the matcher link (the built-in one, `link` with no flags) against
the estimates the memory guard checks them with (`match.memory.lexical_link_peak_bytes`,
`matcher_link_peak_bytes`).

Builds catalogues A_n and B_n (n products each; titles of brand, product words, sizes, colours and a model code,
B's a reworded copy of A's) in an embedded server under a temporary PRODMATCH_HOME (or PRODMATCH_DATABASE_URL),
refreshes the lexical space, then runs each link in a fresh subprocess that samples its own resident memory every
2 ms and prints the peak above the baseline taken just before the call, next to the estimate.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/memory_guard.py --sizes 2000 5000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory import measure  # noqa: E402  (one child process samples every benchmark's peak)

from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.embed.lexical_refresh import refresh_lexical  # noqa: E402

BRANDS = ["Acme", "Borealis", "Cobalt", "Dunmore", "Eversun", "Fjord", "Granite", "Helix", "Ionic", "Juno"]
WORDS = [
    "wireless",
    "headphones",
    "stainless",
    "steel",
    "kettle",
    "cordless",
    "drill",
    "running",
    "shoes",
    "cotton",
    "shirt",
    "ceramic",
    "mug",
    "gaming",
    "mouse",
    "leather",
    "wallet",
    "espresso",
    "machine",
    "desk",
    "lamp",
    "backpack",
    "waterproof",
    "jacket",
    "bluetooth",
    "speaker",
    "electric",
    "toothbrush",
    "yoga",
    "mat",
]
COLOURS = ["black", "white", "red", "blue", "green", "grey", "silver", "navy"]


def titles(n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """n titles and a reworded copy of each (words shuffled, one dropped, the code kept)."""
    a, b = [], []
    for i in range(n):
        words = list(rng.choice(WORDS, size=4, replace=False))
        brand, colour = BRANDS[i % len(BRANDS)], COLOURS[int(rng.integers(len(COLOURS)))]
        size = f"{int(rng.integers(1, 500))} {rng.choice(['ml', 'cm', 'W', 'GB'])}"
        code = f"{brand[:2].upper()}-{i:05d}{chr(65 + i % 26)}"
        a.append(f"{brand} {' '.join(words)} {size} {colour} {code}")
        rng.shuffle(words)
        b.append(f"{brand.upper()} {' '.join(words[:3])}, {colour}, {size.replace(' ', '')} ({code})")
    return a, b


def build(url: str, sizes: list[int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with db.connection(Settings(database_url=url)) as conn:
        for n in sizes:
            for side, names in zip(("A", "B"), titles(n, rng), strict=True):
                name = f"{side}_{n}"
                catalog = conn.execute(
                    "INSERT INTO prodmatch.catalogs (name) VALUES (%s) RETURNING id", (name,)
                ).fetchone()[0]
                with conn.cursor().copy(
                    "COPY prodmatch.products (catalog_id, external_id, title, brand, price) FROM STDIN"
                ) as copy:
                    for i, title in enumerate(names):
                        copy.write_row((catalog, f"{name}-{i}", title, title.split()[0], 10 + i % 90))
        conn.commit()
        refresh_lexical(conn)  # link refreshes the lexical space first; done here so it is not measured
        conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--ops", nargs="+", default=["lexical", "matcher"])
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="prodmatch-memory-guard-"))
    url = os.environ.get("PRODMATCH_DATABASE_URL") or db.database_url(Settings(home=home))
    db.upgrade(Settings(database_url=url, home=home))
    build(url, args.sizes)
    mib = 2**20
    print(f"{'link':<9}{'n x n':>14}{'pairs':>8}{'peak MiB':>10}{'estimate MiB':>14}{'ratio':>7}{'s':>7}")
    for op in args.ops:
        for n in args.sizes:
            r = measure(url, op, n)
            print(
                f"{op:<9}{f'{n:,} x {n:,}':>14}{r['pairs']:>8}{r['peak'] / mib:>10.0f}{r['estimate'] / mib:>14.0f}"
                f"{r['estimate'] / max(r['peak'], 1):>7.2f}{r['seconds']:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
