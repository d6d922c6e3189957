"""How long `match.assign.offer_clusters` (average linkage of accepted pairs into clusters of offers) takes on
large tangled inputs, in memory: what `clusters build` and each `link --watch` rebuild pay on top of reading the
pairs.

    python benchmarks/offer_clusters_speed.py [--products 20000 100000] [--repeat 2]

Two generated inputs per size, seeded:

* marketplace: each product has 1-4 offers in shop A and 1-6 in shop B, 70% of its A x B pairs accepted (match
  probabilities uniform), and 30% of A's offers also accepted with one random offer of another product (a
  lookalike): connected components chain most offers into one;
* random: 4 accepted pairs per product between random products of two catalogues, one component of nearly all
  (no structure to find; the worst case for any greedy linkage).

For each: connected components (the floor), `offer_clusters` as shipped (rounds of joins between groups that
are each other's best partner, vectorised, then the one-at-a-time greedy for the rest), and the one-at-a-time
greedy alone (`assign._ROUND_SHARE = 0`), whose clusters must be the same.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quality import _cpu  # noqa: E402

from prodmatch.match import assign  # noqa: E402

SHOP, RIVAL = 1, 2


def marketplace(products: int, seed: int = 0):
    """(left, right, weights, catalogs) of a marketplace-like run: see the module's docstring."""
    rng = np.random.default_rng(seed)
    in_a, in_b = rng.integers(1, 5, products), rng.integers(1, 7, products)
    start_a = np.r_[0, np.cumsum(in_a)[:-1]]
    start_b = np.r_[0, np.cumsum(in_b)[:-1]] + in_a.sum()
    per_product = in_a * in_b
    product = np.repeat(np.arange(products), per_product)
    within = np.arange(per_product.sum()) - np.repeat(np.cumsum(per_product) - per_product, per_product)
    left = start_a[product] + within // in_b[product]
    right = start_b[product] + within % in_b[product]
    kept = rng.random(len(left)) < 0.7
    lookalike = np.flatnonzero(rng.random(in_a.sum()) < 0.3)
    left = np.r_[left[kept], lookalike]
    right = np.r_[right[kept], in_a.sum() + rng.integers(0, in_b.sum(), len(lookalike))]
    ids = np.arange(in_a.sum() + in_b.sum())
    catalogs = np.where(ids < in_a.sum(), SHOP, RIVAL)
    return left, right, rng.uniform(0.4, 1.0, len(left)), (ids, catalogs)


def random_pairs(products: int, seed: int = 0):
    """(left, right, weights, catalogs): 4 accepted pairs per product between random products of A and B."""
    rng = np.random.default_rng(seed)
    left = rng.integers(0, products, 4 * products)
    right = products + rng.integers(0, products, 4 * products)
    ids = np.arange(2 * products)
    return left, right, rng.uniform(0.4, 1.0, len(left)), (ids, np.where(ids < products, SHOP, RIVAL))


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - started


def measure(kind: str, products: int, repeat: int) -> dict:
    left, right, weights, catalogs = (marketplace if kind == "marketplace" else random_pairs)(products)
    _, components = timed(assign.connected_clusters, left, right)
    largest = int(np.bincount(assign.connected_clusters(left, right)[1]).max())
    shipped, greedy = [], []
    rounds = assign._ROUND_SHARE
    try:
        for _ in range(repeat):  # alternating, so a noisy neighbour hits both alike
            found, seconds = timed(
                assign.offer_clusters, left, right, catalogs, [(SHOP, RIVAL)], weights=weights
            )
            shipped.append(seconds)
            assign._ROUND_SHARE = 0
            alone, seconds = timed(
                assign.offer_clusters, left, right, catalogs, [(SHOP, RIVAL)], weights=weights
            )
            greedy.append(seconds)
            assign._ROUND_SHARE = rounds
    finally:
        assign._ROUND_SHARE = rounds
    same = all(np.array_equal(a, b) for a, b in zip(found, alone, strict=True))
    return {
        "input": kind,
        "products": products,
        "pairs": len(left),
        "largest component": largest,
        "clusters": int(found[1].max()) + 1 if len(found[1]) else 0,
        "components s": components,
        "shipped s": min(shipped),
        "greedy alone s": min(greedy),
        "same": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"CPU: {_cpu()}")
    print(
        "| input | products | accepted pairs | largest component | clusters | components s | shipped s"
        " | greedy alone s | greedy / shipped | same clusters |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for products in args.products:
        for kind in ("marketplace", "random"):
            r = measure(kind, products, args.repeat)
            print(
                f"| {r['input']} | {r['products']:,} | {r['pairs']:,} | {r['largest component']:,} |"
                f" {r['clusters']:,} | {r['components s']:.2f} | {r['shipped s']:.2f} | {r['greedy alone s']:.2f}"
                f" | {r['greedy alone s'] / r['shipped s']:.1f} | {'yes' if r['same'] else 'NO'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
