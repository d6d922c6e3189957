"""Clusters of offers: connected components of the accepted pairs against average linkage (what `clusters build`
and `eval --matcher` use), on the development sets' test cases.

    python benchmarks/offer_clusters.py [--datasets NAME ...] [--plot docs/quality/offer_clusters.png]

For each set (benchmarks/quality_cases.py): a fresh embedded PostgreSQL, the test case's two catalogues ingested,
`link` with no option (the built-in matcher, every pair over its threshold), then the run's accepted pairs
clustered three ways — connected components (before), `match.assign.offer_clusters` with every pair weighing the
same, and with the match probability breaking ties (as shipped) — and each judged against the gold clusters (the
connected components of the gold pairs) over the products the gold names: B-cubed precision / recall / F1, the
share of gold clusters recovered exactly, the largest cluster, and the seconds the clustering took.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quality import _cpu  # noqa: E402
from quality_cases import DATASETS, build_case  # noqa: E402

from prodmatch import store  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.ingest.load import ingest_file  # noqa: E402
from prodmatch.ingest.sources import IngestOptions  # noqa: E402
from prodmatch.match.assign import connected_clusters, offer_clusters  # noqa: E402
from prodmatch.match.link import link  # noqa: E402
from prodmatch.quality.matchers import gold_pairs_between  # noqa: E402
from prodmatch.quality.metrics import cluster_quality  # noqa: E402

WAYS = ("connected components", "average linkage, equal weights", "average linkage, by probability")


def measure(settings: Settings, name: str, home: Path) -> dict:
    case = build_case(name, "test", home / "cases" / name)
    with store.connection(settings) as conn:
        for catalog, path in (
            (case.source_catalog, case.source_path),
            (case.target_catalog, case.target_path),
        ):
            ingest_file(conn, path, catalog, IngestOptions(progress=False))
        conn.commit()
        run = link(conn, case.source_catalog, case.target_catalog, progress=False)
        rows = conn.execute(
            "SELECT source_product_id, target_product_id, match_probability FROM prodmatch.matches"
            " WHERE run_id = %s AND accepted",
            (run.run_id,),
        ).fetchall()
        source_id, target_id = (
            conn.execute("SELECT id FROM prodmatch.catalogs WHERE name = %s", (c,)).fetchone()[0]
            for c in (case.source_catalog, case.target_catalog)
        )
        positives, _ = gold_pairs_between(conn, case.gold_path, case.source_catalog, case.target_catalog)
    left = np.array([r[0] for r in rows], dtype=np.int64)
    right = np.array([r[1] for r in rows], dtype=np.int64)
    probability = np.array([r[2] for r in rows], dtype=np.float64)
    catalogs = (np.r_[left, right], np.r_[np.full(len(left), source_id), np.full(len(right), target_id)])
    compared = [(source_id, target_id)]
    gold = np.array(sorted(positives), dtype=np.int64)
    ways = {
        WAYS[0]: lambda: connected_clusters(left, right),
        WAYS[1]: lambda: offer_clusters(left, right, catalogs, compared),
        WAYS[2]: lambda: offer_clusters(left, right, catalogs, compared, weights=probability),
    }
    out = {"dataset": name, "accepted": len(rows)}
    for way, cluster in ways.items():
        started = time.perf_counter()
        products, clusters = cluster()
        seconds = time.perf_counter() - started
        quality = cluster_quality(products, clusters, gold)
        largest = int(np.bincount(clusters).max()) if len(clusters) else 0
        out[way] = {**quality.to_dict(), "largest": largest, "seconds": seconds}
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    x = np.arange(len(rows))
    width = 0.27
    for i, way in enumerate(WAYS):
        values = [r[way]["f1"] for r in rows]
        bars = ax.bar(x + (i - 1) * width, values, width, label=way)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [r["dataset"] for r in rows], rotation=10, fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("cluster B-cubed F1 (test case)")
    ax.set_title(
        "Clusters of the built-in matcher's accepted pairs: components chain, average linkage does not"
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    print(f"CPU: {_cpu()}; PostgreSQL embedded; no neural model; link with the built-in matcher", flush=True)
    home = Path(tempfile.mkdtemp(prefix="prodmatch-offer-clusters-"))
    try:
        settings = Settings(home=home)
        store.upgrade(settings)
        rows = [measure(settings, name, home) for name in args.datasets]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    columns = "".join(f"{c:>7}" for c in ("B3 P", "B3 R", "B3 F1", "exact")) + f"{'largest':>8}{'s':>7}"
    print(f"\n{'dataset':<28}{'accepted':>9}  {'way':<34}{columns}")
    for r in rows:
        for way in WAYS:
            q = r[way]
            print(
                f"{r['dataset']:<28}{r['accepted']:>9}  {way:<34}{q['precision']:>7.3f}{q['recall']:>7.3f}"
                f"{q['f1']:>7.3f}{q['exact']:>7.3f}{q['largest']:>8}{q['seconds']:>7.3f}"
            )
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
