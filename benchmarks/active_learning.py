"""How many labels the review app's active learner needs, against labelling pairs in random order.

    python benchmarks/active_learning.py [--size 300] [--budget 200] [--step 20] [--plot docs/review/active_learning.png]

The demo catalogues (a shop and a competitor with gold pairs), no neural model: the lexical space links the shop
to the competitor (k=5) and those candidate pairs are what people would label. The shop's products are split in
two halves: pairs of the first half may be labelled, the second half is the test. A scripted labeller answers
from the gold pairs (same product / different), `--step` labels at a time:

- **active**: the next pairs are chosen by `prodmatch.review.queue.next_pairs` exactly as the review app does
  (before any matcher: spread over the score range; then mostly where the current matcher is least sure, plus a
  share of random high and low ones), the matcher retrained on the labels after every step;
- **random**: the same number of pairs drawn uniformly from the pool.

After every step a matcher is trained on the labels so far, on them alone (`train_and_store(labelled_only=True)`:
the retrain hook's training until session 13, `matcher train --labels --prior none` now; the hook now starts from
the built-in matcher, measured by benchmarks/few_labels.py) and judged end to end on the test half
(`evaluate_matcher`, F1 of its decisions). The reference
is a matcher trained on every gold pair of the first half. Prints the curves and how many labels each strategy
needs to reach 90% of the reference F1; `--plot` draws them as PNG.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quality import _cpu  # noqa: E402

from prodmatch import store  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.demo.catalogues import generate  # noqa: E402
from prodmatch.errors import ProdmatchError  # noqa: E402
from prodmatch.ingest import IngestOptions, ingest_file  # noqa: E402
from prodmatch.match.link import link  # noqa: E402
from prodmatch.quality.gold import read_gold  # noqa: E402
from prodmatch.quality.matchers import evaluate_matcher, score_pairs, train_and_store  # noqa: E402
from prodmatch.review.queue import Candidate, next_pairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="prodmatch-active-"))
    try:
        settings = Settings(home=home)
        store.upgrade(settings)
        files = generate(home / "demo", args.size, seed=args.seed, image_size=32)
        with store.connection(settings) as conn:
            for catalog, path in (
                (files.shop_catalog, files.shop),
                (files.competitor_catalog, files.competitor),
            ):
                ingest_file(conn, path, catalog, IngestOptions(progress=False))
            conn.commit()
            run = link(conn, files.shop_catalog, files.competitor_catalog, k=5)
            ids = _ids(conn)
            gold = {
                (ids[("shop", p.source_id)], ids[("competitor", p.target_id)]) for p in read_gold(files.gold)
            }
            sources = sorted(
                {
                    r[0]
                    for r in conn.execute(
                        "SELECT source_product_id FROM prodmatch.matches WHERE run_id = %s", (run.run_id,)
                    )
                }
            )
            random.Random(args.seed).shuffle(sources)
            train_sources = set(sources[: len(sources) // 2])
            pool = [
                Candidate(s, t, float(score))
                for s, t, score in conn.execute(
                    "SELECT source_product_id, target_product_id, lexical_similarity FROM prodmatch.matches"
                    " WHERE run_id = %s",
                    (run.run_id,),
                )
                if s in train_sources
            ]
            test_gold = _write_gold(
                home / "test.csv", [(s, t, 1) for s, t in gold if s not in train_sources], ids
            )
            full_gold = _write_gold(
                home / "train.csv", [(s, t, 1) for s, t in gold if s in train_sources], ids
            )
            train_and_store(conn, full_gold, "shop", "competitor", name="reference")
            reference = _f1(conn, test_gold, "reference")
            print(
                f"CPU: {_cpu()}; demo size {args.size}; {len(pool)} candidate pairs to label; reference F1 {reference:.3f}"
            )
            curves = {}
            for strategy in ("active", "random"):
                curves[strategy] = _curve(conn, strategy, pool, gold, ids, test_gold, args, home)
        target = 0.9 * reference
        print(
            f"\nlabels -> F1 (test half; reference with all {len(gold & {(s, t) for s, t in gold if s in train_sources})} train gold pairs: {reference:.3f})"
        )
        for strategy, curve in curves.items():
            print(f"{strategy:>7}: " + "  ".join(f"{n}:{f:.3f}" for n, f in curve))
            reached = next((n for n, f in curve if f >= target), None)
            print(
                f"{strategy:>7}: 90% of the reference F1 ({target:.3f}) reached with {reached or f'more than {args.budget}'} labels"
            )
        if args.plot:
            _plot(curves, reference, args.plot)
            print(f"plot: {args.plot}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _curve(conn, strategy, pool, gold, ids, test_gold, args, home) -> list[tuple[int, float]]:
    rng = random.Random(args.seed + (0 if strategy == "active" else 1))
    labelled: dict[tuple[int, int], int] = {}
    probabilities: dict[tuple[int, int], float] | None = None
    curve = []
    while len(labelled) < min(args.budget, len(pool)):
        done = {key for key in labelled}
        if strategy == "random":
            remaining = [c for c in pool if (c.source_product_id, c.target_product_id) not in done]
            chosen = rng.sample(remaining, min(args.step, len(remaining)))
        else:
            scored = [
                Candidate(c.source_product_id, c.target_product_id, c.score,
                          None if probabilities is None else probabilities.get((c.source_product_id, c.target_product_id)))
                for c in pool
            ]  # fmt: skip
            chosen = next_pairs(scored, done, n=args.step, seed=len(labelled))
        for c in chosen:
            key = (c.source_product_id, c.target_product_id)
            labelled[key] = int(key in gold)  # the scripted labeller answers from the gold pairs
        gold_file = _write_gold(home / f"{strategy}.csv", [(s, t, y) for (s, t), y in labelled.items()], ids)
        name = f"al-{strategy}"
        try:
            train_and_store(conn, gold_file, "shop", "competitor", name=name, labelled_only=True)
        except ProdmatchError:  # too few matches or non-matches so far
            curve.append((len(labelled), 0.0))
            continue
        curve.append((len(labelled), _f1(conn, test_gold, name)))
        if strategy == "active":
            keys = [(c.source_product_id, c.target_product_id) for c in pool]
            probabilities = dict(zip(keys, score_pairs(conn, name, keys).tolist(), strict=True))
    return curve


def _f1(conn, gold_file: Path, matcher: str) -> float:
    evaluation = evaluate_matcher(conn, gold_file, matcher, "shop", "competitor")
    return max(r.f1 for r in evaluation.rows if r.name == "matcher")


def _ids(conn) -> dict[tuple[str, str], int]:
    return {
        (catalog, external_id): pid
        for catalog, external_id, pid in conn.execute(
            "SELECT c.name, p.external_id, p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        )
    }


def _write_gold(path: Path, pairs: list[tuple[int, int, int]], ids: dict) -> Path:
    names = {pid: key for key, pid in ids.items()}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("source_catalog", "source_id", "target_catalog", "target_id", "label"))
        for s, t, label in pairs:
            writer.writerow((*names[s], *names[t], label))
    return path


def _plot(curves: dict, reference: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for strategy, curve in curves.items():
        ax.plot([n for n, _ in curve], [f for _, f in curve], marker="o", label=strategy)
    ax.axhline(reference, color="grey", linestyle="--", label=f"all gold pairs ({reference:.3f})")
    ax.axhline(0.9 * reference, color="grey", linestyle=":", label="90% of that")
    ax.set_xlabel("labels given")
    ax.set_ylabel("matcher F1 on held-out products")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Active learning vs random order (demo catalogues, lexical + codes)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
