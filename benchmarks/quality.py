"""Match quality end to end through the database, on the development data in ../shared/data.

    python benchmarks/quality.py [--datasets NAME ...] [--k 10] [--plots DIR] [--scope matched|labelled]

For each dataset (benchmarks/quality_cases.py builds its train and test cases: two catalogues and a gold file
each), in a fresh embedded database and with no neural model (the random-weight CLIP that runs where the hub is
unreachable would only add noise; the matcher uses whatever model it is given):

1. ingest the four catalogues (`prodmatch ingest`'s function) and build the lexical space;
2. `matcher train` on the train case (candidates of the gold sources, threshold from held-out folds);
3. on the test case: recall of each candidate source and of their union, then end-to-end precision / recall / F1
   of each single signal (its threshold chosen on the train case, as a user would) and of the matcher (its own
   threshold), in three decision modes (all pairs over the threshold / each source's best / one-to-one);
4. the time of each step.

`--scope matched` (the default, the figures of earlier sessions): only sources with a twin are linked, trained on
and scored. `--scope labelled`: the gold files also list the data's label-0 pairs (quality_cases.build_case
`non_matches`), so sources with no twin are labelled too: `matcher train` learns from them, as from a user's
review labels, and every labelled source is linked and scored, as `prodmatch eval` does: the figures a user who
links a whole catalogue where most products have no twin would see. Prints one table per dataset and a summary;
`--plots` also writes each dataset's precision-recall curves as PNG.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quality_cases import DATASETS, build_case  # noqa: E402

from prodmatch import store  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.embed.lexical_refresh import refresh_lexical  # noqa: E402
from prodmatch.ingest.load import ingest_file  # noqa: E402
from prodmatch.ingest.sources import IngestOptions  # noqa: E402
from prodmatch.match.hybrid import features, gather  # noqa: E402
from prodmatch.match.link import load_matcher  # noqa: E402
from prodmatch.quality.matchers import (
    MODES,
    SINGLE_SIGNALS,
    _labels,
    _plot_curves,
    _score,
    best_threshold,
    gold_pairs_between,
    pr_curve,
    train_and_store,
)
from prodmatch.store.catalogs import catalog_id  # noqa: E402

EXTRA_SIGNALS = ("title_jaccard", "model_token_containment")  # simple lexical baselines beside the spaces


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--plots", type=Path)
    parser.add_argument("--scope", choices=("matched", "labelled"), default="matched")
    args = parser.parse_args()
    print(f"CPU: {_cpu()}; PostgreSQL embedded; no neural model; sources scored: {args.scope}")
    home = Path(tempfile.mkdtemp(prefix="prodmatch-quality-"))
    try:
        settings = Settings(home=home)
        store.upgrade(settings)
        summary = [run(settings, name, args.k, home, args.plots, args.scope) for name in args.datasets]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("\n== summary (test split, end-to-end F1)")
    print(f"{'dataset':<28}{'union recall':>13}{'best single':>13}{'matcher':>9}{'gain':>8}")
    for row in summary:
        print(
            f"{row['dataset']:<28}{row['union']:>13.3f}{row['best_single']:>13.3f}{row['matcher']:>9.3f}"
            f"{row['matcher'] - row['best_single']:>+8.3f}"
        )


def run(
    settings: Settings, name: str, k: int, home: Path, plots: Path | None, scope: str = "matched"
) -> dict:
    clock: dict[str, float] = {}
    started = time.perf_counter()
    labelled = scope == "labelled"
    cases = {
        split: build_case(name, split, home / "cases" / name, non_matches=labelled)
        for split in ("train", "test")
    }
    clock["build cases"] = time.perf_counter() - started
    with store.connection(settings) as conn:
        t = time.perf_counter()
        for case in cases.values():
            for catalog, path in (
                (case.source_catalog, case.source_path),
                (case.target_catalog, case.target_path),
            ):
                ingest_file(conn, path, catalog, IngestOptions(progress=False))
        conn.commit()
        clock["ingest"] = time.perf_counter() - t
        t = time.perf_counter()
        refresh_lexical(conn)
        conn.commit()
        clock["lexical space"] = time.perf_counter() - t
        train, test = cases["train"], cases["test"]
        t = time.perf_counter()
        report = train_and_store(
            conn, train.gold_path, train.source_catalog, train.target_catalog, name=name, k=k
        )
        clock["matcher train"] = time.perf_counter() - t
        matcher, _ = load_matcher(conn, name)
        t = time.perf_counter()
        train_data = _gathered(conn, train, k, scope)
        test_data = _gathered(conn, test, k, scope)
        clock["candidates + features (train+test)"] = time.perf_counter() - t
        t = time.perf_counter()
        rows, curves = [], {}
        for signal in (*SINGLE_SIGNALS, *EXTRA_SIGNALS):
            if signal not in test_data["matrix"].names:
                continue
            for mode in MODES:
                train_score = _signal(train_data, signal)
                threshold = best_threshold(
                    train_data["pairs"].sources, train_data["pairs"].targets, train_data["labels"], train_score,
                    train_data["gold"], mode,
                )  # fmt: skip
                rows.append(
                    _score(signal, mode, test_data["pairs"], test_data["labels"], _signal(test_data, signal),
                           threshold, test_data["gold"])
                )  # fmt: skip
            curves[signal] = pr_curve(
                test_data["pairs"].sources, test_data["pairs"].targets, test_data["labels"],
                _signal(test_data, signal), test_data["gold"], "top1",
            )  # fmt: skip
        probability = matcher.predict_proba(test_data["matrix"], allow_missing=True).astype(np.float64)
        clock["score test pairs"] = time.perf_counter() - t
        for mode in MODES:
            rows.append(
                _score("matcher", mode, test_data["pairs"], test_data["labels"], probability, matcher.threshold,
                       test_data["gold"])
            )  # fmt: skip
        curves["matcher"] = pr_curve(
            test_data["pairs"].sources, test_data["pairs"].targets, test_data["labels"], probability,
            test_data["gold"], "all",
        )  # fmt: skip
    print(
        f"\n== {name}: train A={train.n_source} B={train.n_target} gold={train.n_gold}; "
        f"test A={test.n_source} B={test.n_target} gold={test.n_gold}"
    )
    m = report.metrics
    print(
        f"matcher: {report.kind} over {len(report.features)} features on {report.pairs} train pairs "
        f"({report.positives} matches); held-out F1 {m['out_of_fold_f1']:.3f}; threshold {report.threshold:.3f}"
    )
    recall = test_data["recall"]
    print(f"candidate recall (test, k={k}): " + "  ".join(f"{s} {v:.3f}" for s, v in recall.items()))
    print(f"{'decision':<26}{'mode':<6}{'threshold':>10}{'precision':>11}{'recall':>8}{'F1':>7}")
    for r in rows:
        threshold = f"{r.threshold:.4f}" if np.isfinite(r.threshold) else "-"
        print(f"{r.name:<26}{r.mode:<6}{threshold:>10}{r.precision:>11.3f}{r.recall:>8.3f}{r.f1:>7.3f}")
    print("times: " + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in clock.items()))
    if plots is not None:
        print(f"plot: {_plot_curves(curves, rows, plots / f'quality_{name}.png')}")
    best_single = max(r.f1 for r in rows if r.name != "matcher")
    best_matcher = max(r.f1 for r in rows if r.name == "matcher")
    return {
        "dataset": name,
        "union": recall.get("union", 0.0),
        "best_single": best_single,
        "matcher": best_matcher,
    }


def _gathered(conn, case, k: int, scope: str = "matched") -> dict:
    """The case's candidates with their features and labels, for the sources of `scope`: "matched" (sources
    with a twin in the gold file: the figures of earlier sessions) or "labelled" (every source the gold file
    names, those known only by label-0 pairs too: what `prodmatch eval` judges, and closer to linking a whole
    catalogue where most products have no twin)."""
    positives, negatives = gold_pairs_between(conn, case.gold_path, case.source_catalog, case.target_catalog)
    named = {s for s, _ in positives} | ({s for s, _ in negatives} if scope == "labelled" else set())
    sources = np.array(sorted(named), dtype=np.int64)
    data = gather(
        conn,
        catalog_id(conn, case.source_catalog),
        catalog_id(conn, case.target_catalog),
        None,
        k=k,
        source_ids=sources,
    )
    return {
        "pairs": data.pairs,
        "matrix": features(data),
        "labels": _labels(data, positives),
        "gold": len(positives),
        "recall": data.source_recall(positives),
    }


def _signal(data: dict, name: str) -> np.ndarray:
    values = data["matrix"].column(name).astype(np.float64)
    return np.where(np.isnan(values), -np.inf, values)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {len(__import__('os').sched_getaffinity(0))} cores"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
