"""Train prodmatch's built-in matcher on the development data, and measure it leaving one dataset out.

    python benchmarks/builtin_matcher.py [--datasets NAME ...] [--write] [--leave-one-out] [--k 10] [--in-pool NAME]
                                         [--scope matched|labelled] [--seeds N] [--signal-dropout SHARE]

Every development set (benchmarks/quality_cases.py) is ingested into one fresh embedded database with no neural
model; the candidates of each train split's gold sources are gathered and labelled exactly as `prodmatch matcher
train` does. Then:

* ``--write``: one matcher trained on every set's train split is written to prodmatch/data/builtin_matcher.json
  with what it was trained on (each file's name and SHA-256, pairs and matches per set, the depth k).
* ``--leave-one-out``: for each dataset family (Walmart-Amazon's two variants are one family: the same offers), a
  matcher trained on the OTHER families only is judged end to end on the family's test split, next to a matcher
  trained on the set's own train split and to the best single signal (its threshold chosen on the train split);
  precision / recall / F1 in the three decision modes (all pairs over the threshold, the default of `link`; each
  source's best; one-to-one). Prints one table; --plot writes it as a PNG.

The built-in matcher is trained on the candidates of the sources with a twin. `--scope labelled` judges the
leave-one-out on every labelled source of the test split (those known only by the data's label-0 pairs too, as
`prodmatch eval` does), and trains the own matcher on the labelled sources of its train split, as `matcher train`
learns from a user's review labels (quality_cases.build_case `non_matches`; benchmarks/quality.py `--scope`).

The shipped matcher also learns from a copy of every set's pairs in which each signal family (codes, brand,
price, attributes, lexical, ...) is missing for a fifth of them (`--signal-dropout`, quality.builtin.
with_signal_dropout), as on a user's catalogue without that field. `--seeds N` trains the leave-one-out
matchers (built-in and own) with N seeds and reports the mean and the range: one training run's F1 moves by
up to 0.01 with the seed.

``--cluster-view`` adds to the leave-one-out the F1 of the pairs the default mode accepts that the clustering of
offers keeps together (`clusters build`, `eval --matcher`'s row `matcher clusters`).

``--in-pool NAME`` asks what one matcher for every catalogue can give a set when that set IS in its pool: matchers
trained on every set's train split (as ``--write``), first as shipped (each set capped at the median set's true
matches), then with no cap and NAME's pairs counted ``--times`` K times each, are judged on every test split
beside the set's own matcher (same seeds); ``--in-pool-plot`` draws the table. A set that the leave-one-out cannot
bring to its own matcher's figure shows here whether the signals can express its notion of "same product" at all,
and what the other sets give up when one matcher must hold both.

`--absent-twins SHARE` adds to each set's training pairs, for that share of its sources with a twin, their
candidates with the twin taken out (labelled 0), as if those products had no twin (quality.builtin.
with_absent_twins); measured in docs/benchmarks.md, not shipped.

The same seed gives the same matcher: rerunning --write on the same data and code reproduces the file.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quality import EXTRA_SIGNALS, _cpu, _gathered, _signal  # noqa: E402
from quality_cases import DATA, DATASETS, build_case  # noqa: E402

from prodmatch import store  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.embed.lexical_refresh import refresh_lexical  # noqa: E402
from prodmatch.ingest.load import ingest_file  # noqa: E402
from prodmatch.ingest.sources import IngestOptions  # noqa: E402
from prodmatch.match.assign import cluster_view  # noqa: E402
from prodmatch.match.hybrid import DEFAULT_K  # noqa: E402
from prodmatch.match.signals.features import FeatureMatrix  # noqa: E402
from prodmatch.quality.builtin import (  # noqa: E402
    BUILTIN_FILE,
    SIGNAL_DROPOUT,
    LabelledPairs,
    builtin_record,
    file_sha256,
    is_neural,
    train_builtin,
)
from prodmatch.quality.matchers import MODES, SINGLE_SIGNALS, _score, best_threshold  # noqa: E402
from prodmatch.quality.training import train_matcher  # noqa: E402


def family(name: str) -> str:
    """Datasets that share offers form one family: leaving one out leaves them all out."""
    return "walmart-amazon" if name.startswith("walmart-amazon") else name


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--write", action="store_true", help=f"write {BUILTIN_FILE}")
    parser.add_argument("--leave-one-out", action="store_true")
    parser.add_argument("--plot", type=Path, help="write the leave-one-out table as this PNG")
    parser.add_argument("--json", type=Path, help="write the leave-one-out figures as JSON")
    parser.add_argument(
        "--scope",
        choices=("matched", "labelled"),
        default="matched",
        help="the sources the leave-one-out judges",
    )
    parser.add_argument(
        "--absent-twins",
        type=float,
        default=0.0,
        help="add, for this share of each set's sources with a twin, a copy of their candidates without the twin"
        " (labelled 0: a catalogue where those products have no twin); 0 = as shipped",
    )
    parser.add_argument(
        "--signal-dropout",
        type=float,
        default=SIGNAL_DROPOUT,
        help="share of pairs that lose each signal family in the training copy (quality.builtin."
        f"with_signal_dropout); {SIGNAL_DROPOUT} as shipped, 0 = none",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train the leave-one-out matchers with this many seeds and report the mean and range of F1",
    )
    parser.add_argument(
        "--cluster-view",
        action="store_true",
        help="also judge, in the leave-one-out, the accepted pairs the clustering of offers keeps together",
    )
    parser.add_argument(
        "--in-pool",
        metavar="NAME",
        help="judge matchers trained on every set, NAME among them with its pairs counted --times K times each",
    )
    parser.add_argument("--times", type=int, nargs="+", default=[1, 3, 10], help="weights for --in-pool")
    parser.add_argument("--in-pool-plot", type=Path, help="write the --in-pool table as this PNG")
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the gathered pairs in this file (a pickle of this script's own arrays)",
    )
    args = parser.parse_args()
    print(f"CPU: {_cpu()}; PostgreSQL embedded; no neural model; k={args.k}", flush=True)
    if args.cache and args.cache.exists():
        with open(args.cache, "rb") as f:
            data = pickle.load(f)  # noqa: S301 - a file this script wrote itself
    else:
        home = Path(tempfile.mkdtemp(prefix="prodmatch-builtin-"))
        try:
            settings = Settings(home=home)
            store.upgrade(settings)
            data = {name: gather_dataset(settings, name, args.k, home, args.scope) for name in args.datasets}
        finally:
            shutil.rmtree(home, ignore_errors=True)
        if args.cache:
            with open(args.cache, "wb") as f:
                pickle.dump(data, f)
    options = {"absent_twins": args.absent_twins, "signal_dropout": args.signal_dropout}
    if args.write:
        write(data, args.k, options)
    if args.leave_one_out:
        rows = leave_one_out(data, args.scope, options, args.seeds, args.cluster_view)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        if args.plot:
            plot(rows, args.plot)
    if args.in_pool:
        if args.in_pool not in data:
            parser.error(f"--in-pool {args.in_pool}: not among the gathered datasets {sorted(data)}")
        table = in_pool(data, args.in_pool, args.times, options, args.seeds)
        if args.in_pool_plot:
            plot_in_pool(table, args.in_pool, args.in_pool_plot)


def gather_dataset(settings: Settings, name: str, k: int, home: Path, scope: str = "matched") -> dict:
    """The train and test splits' labelled candidates of one dataset (with `scope` "labelled", those of every
    labelled source as well, under "labelled")."""
    started = time.perf_counter()
    labelled = scope == "labelled"
    cases = {
        split: build_case(name, split, home / "cases" / name, non_matches=labelled)
        for split in ("train", "test")
    }
    with store.connection(settings) as conn:
        for case in cases.values():
            for catalog, path in (
                (case.source_catalog, case.source_path),
                (case.target_catalog, case.target_path),
            ):
                ingest_file(conn, path, catalog, IngestOptions(progress=False))
        conn.commit()
        refresh_lexical(conn)
        conn.commit()
        out = {split: _gathered(conn, case, k) for split, case in cases.items()}
        if labelled:
            out["labelled"] = {split: _gathered(conn, case, k, "labelled") for split, case in cases.items()}
    folder, files, _ = DATASETS[name]
    out["files"] = [
        {"file": f"{folder}/{files[split]}", "sha256": file_sha256(DATA / folder / files[split])}
        for split in ("train",)
    ]
    print(
        f"{name}: train {len(out['train']['labels'])} pairs ({int(out['train']['labels'].sum())} matches), "
        f"test {len(out['test']['labels'])} pairs; union recall test {out['test']['recall'].get('union', 0):.3f} "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    return out


def labelled(name: str, split: dict) -> LabelledPairs:
    return LabelledPairs(name, split["matrix"], split["labels"], split["pairs"].sources)


def write(data: dict, k: int, options: dict) -> None:
    started = time.perf_counter()
    matcher, counts = train_builtin([labelled(name, d["train"]) for name, d in data.items()], **options)
    datasets = [{**count, "files": data[count["dataset"]]["files"], "split": "train"} for count in counts]
    record = builtin_record(
        matcher,
        k=k,
        datasets=datasets,
        script="benchmarks/builtin_matcher.py",
        training={"seed": 0, "balance": "median", **options},
    )
    BUILTIN_FILE.parent.mkdir(parents=True, exist_ok=True)
    BUILTIN_FILE.write_text(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    m = matcher.metrics
    print(
        f"\nbuilt-in matcher: {matcher.kind} over {len(matcher.feature_names)} features, threshold "
        f"{matcher.threshold:.3f}, held-out F1 {m.get('out_of_fold_f1', float('nan')):.3f} "
        f"({time.perf_counter() - started:.0f} s) -> {BUILTIN_FILE}",
        flush=True,
    )


def leave_one_out(
    data: dict,
    scope: str = "matched",
    options: dict | None = None,
    seeds: int = 1,
    cluster_view: bool = False,
) -> list[dict]:
    """Per dataset: F1 of the built-in matcher trained without its family and of its own matcher, per decision
    mode, as the mean over `seeds` training seeds (each seed's figures under "<who>:<mode>:seeds"), beside the
    best single signal."""
    rows = []
    for name, dataset in data.items():
        others = [labelled(o, data[o]["train"]) for o in data if family(o) != family(name)]
        # the own matcher, the single signals' thresholds and the judged test sources
        d = dataset["labelled"] if scope == "labelled" else dataset
        test = d["test"]
        pairs, labels, gold = test["pairs"], test["labels"], test["gold"]
        row = {"dataset": name, "union_recall": test["recall"].get("union", 0.0)}
        for seed in range(seeds):
            builtin, _ = train_builtin(others, seed=seed, **(options or {}))
            own = train_matcher(
                d["train"]["matrix"], d["train"]["labels"], d["train"]["pairs"].sources, name="own", seed=seed
            )
            for label, matcher in (("builtin", builtin), ("own", own)):
                for mode, f1 in zip(MODES, mode_f1(matcher, test), strict=True):
                    row.setdefault(f"{label}:{mode}:seeds", []).append(f1)
                if cluster_view:
                    row.setdefault(f"{label}:clusters:seeds", []).append(cluster_view_f1(matcher, test))
        for column in _columns():
            row[column] = float(np.mean(row[f"{column}:seeds"]))
        for label in ("builtin", "own"):
            row[f"{label}:best:seeds"] = [
                max(row[f"{label}:{mode}:seeds"][i] for mode in MODES) for i in range(seeds)
            ]
        row["ratio:seeds"] = [
            b / max(o, 1e-9) for b, o in zip(row["builtin:best:seeds"], row["own:best:seeds"], strict=True)
        ]
        best = ("", -1.0)
        for signal in (*SINGLE_SIGNALS, *EXTRA_SIGNALS):
            if signal not in test["matrix"].names or is_neural(signal):
                continue
            for mode in MODES:
                train = d["train"]
                threshold = best_threshold(
                    train["pairs"].sources, train["pairs"].targets, train["labels"], _signal(train, signal),
                    train["gold"], mode,
                )  # fmt: skip
                f1 = _score(signal, mode, pairs, labels, _signal(test, signal), threshold, gold).f1
                if f1 > best[1]:
                    best = (f"{signal} {mode}", f1)
        row["best_single"], row["best_single_f1"] = best
        rows.append(row)
    print(
        f"\n== leave one dataset out (test split, {scope} sources, end-to-end F1; builtin trained WITHOUT the"
        f" dataset's family; mean of {seeds} seed(s))"
    )
    header = (
        f"{'dataset':<28}{'recall':>7}" + "".join(f"{c:>14}" for c in _columns()) + f"{'best single':>13}"
    )
    print(header + f"{'builtin/own':>12}")
    for r in rows:
        print(
            f"{r['dataset']:<28}{r['union_recall']:>7.3f}"
            + "".join(f"{r[c]:>14.3f}" for c in _columns())
            + f"{r['best_single_f1']:>13.3f}{np.mean(r['ratio:seeds']):>12.3f}"
            + f"  ({r['best_single']})"
        )
    if cluster_view:
        print("\nthe cluster view: accepted pairs (default mode) the clustering of offers keeps together")
        for r in rows:
            b, o = np.mean(r["builtin:clusters:seeds"]), np.mean(r["own:clusters:seeds"])
            print(
                f"{r['dataset']:<28} built-in {r['builtin:all']:.3f} -> {b:.3f}   own {r['own:all']:.3f} -> {o:.3f}"
                f"   best single {r['best_single_f1']:.3f}"
            )
    if seeds > 1:
        print("\nbest decision mode over the seeds (min - max):")
        for r in rows:
            b, o, q = r["builtin:best:seeds"], r["own:best:seeds"], r["ratio:seeds"]
            print(
                f"{r['dataset']:<28} built-in {min(b):.3f} - {max(b):.3f}   own {min(o):.3f} - {max(o):.3f}"
                f"   built-in / own {min(q):.3f} - {max(q):.3f}   over the best single signal in"
                f" {sum(x > r['best_single_f1'] for x in b)} of {seeds}"
            )
    return rows


def repeated(part: LabelledPairs, times: int) -> LabelledPairs:
    """`part` with each pair present `times` times (one source stays one group: copies share its folds)."""
    return LabelledPairs(
        part.name,
        FeatureMatrix(part.features.names, np.vstack([part.features.values] * times)),
        np.tile(part.labels, times),
        np.tile(part.sources, times),
    )


def in_pool(data: dict, weighted: str, times: list[int], options: dict, seeds: int = 1) -> dict:
    """Best-mode F1 on every test split (mean over `seeds`) of matchers trained on every set's train split: as
    shipped ("capped") and, for each K in `times`, uncapped with `weighted`'s pairs counted K times; beside each
    set's own matcher. {"columns": [...], "rows": {dataset: {column: F1}}}."""
    parts = {name: labelled(name, d["train"]) for name, d in data.items()}
    settings = {"capped": (list(parts.values()), True)}
    for k in times:
        pool = [repeated(part, k) if name == weighted else part for name, part in parts.items()]
        settings[f"{weighted} x{k}"] = (pool, False)
    rows: dict[str, dict[str, float]] = {name: {} for name in data}
    for column, (pool, balance) in settings.items():
        scores = {name: [] for name in data}
        for seed in range(seeds):
            matcher, _ = train_builtin(pool, seed=seed, balance=balance, **options)
            for name, d in data.items():
                scores[name].append(max(mode_f1(matcher, d["test"])))
        for name in data:
            rows[name][column] = float(np.mean(scores[name]))
    for name, d in data.items():
        train = d["train"]
        rows[name]["own"] = float(
            np.mean([
                max(mode_f1(train_matcher(train["matrix"], train["labels"], train["pairs"].sources, seed=s), d["test"]))
                for s in range(seeds)
            ])
        )  # fmt: skip
    columns = [*settings, "own"]
    print(
        f"\n== one matcher for every set, {weighted} in its pool (test split, best mode F1, mean of {seeds} seed(s))"
    )
    print(f"{'dataset':<28}" + "".join(f"{c:>24}" for c in columns) + f"{'0.95 x own':>12}")
    for name, row in rows.items():
        print(f"{name:<28}" + "".join(f"{row[c]:>24.3f}" for c in columns) + f"{0.95 * row['own']:>12.3f}")
    return {"columns": columns, "rows": rows, "seeds": seeds}


def mode_f1(matcher, test: dict, matrix: FeatureMatrix | None = None) -> list[float]:
    """End-to-end F1 of `matcher` on a gathered test split in each decision mode (MODES), scoring `matrix`
    (the split's own features unless given)."""
    features = test["matrix"] if matrix is None else matrix
    probability = matcher.predict_proba(features, allow_missing=True).astype(np.float64)
    return [
        _score(
            matcher.name, mode, test["pairs"], test["labels"], probability, matcher.threshold, test["gold"]
        ).f1
        for mode in MODES
    ]


def cluster_view_f1(matcher, test: dict) -> float:
    """End-to-end F1 of the pairs `link`'s default mode accepts that the clustering of offers keeps together
    (`match.assign.offer_clusters`, as `clusters build`; what `eval --matcher` prints as `matcher clusters`)."""
    pairs = test["pairs"]
    probability = matcher.predict_proba(test["matrix"], allow_missing=True).astype(np.float64)
    _, together = cluster_view(pairs, probability, np.flatnonzero(probability >= matcher.threshold))
    kept = np.where(together, probability, -np.inf)
    return _score(matcher.name, "all", pairs, test["labels"], kept, matcher.threshold, test["gold"]).f1


def _columns() -> list[str]:
    return [f"{who}:{mode}" for who in ("builtin", "own") for mode in MODES]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["dataset"] for r in rows]
    x = np.arange(len(rows))
    bars = (
        (
            "built-in, no label: all pairs over its threshold (link's default)",
            [r["builtin:all"] for r in rows],
        ),
        ("built-in, no label: best decision mode", [max(r[f"builtin:{m}"] for m in MODES) for r in rows]),
        ("trained on the set's own labels: best mode", [max(r[f"own:{m}"] for m in MODES) for r in rows]),
        ("best single signal (threshold from own labels)", [r["best_single_f1"] for r in rows]),
    )
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.2
    for i, (label, values) in enumerate(bars):
        ax.bar(x + (i - 1.5) * width, values, width, label=label)
    ax.set_xticks(x, names, rotation=12, fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_yticks(np.arange(0, 1.01, 0.2))
    ax.set_ylabel("end-to-end F1 (test split)")
    seeds = len(rows[0].get("builtin:best:seeds", [0])) if rows else 1
    ax.set_title(
        "Built-in matcher, leave one dataset out (trained without the set's family)"
        + (f"; mean of {seeds} training seeds" if seeds > 1 else "")
    )
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def plot_in_pool(table: dict, weighted: str, path: Path) -> None:
    """One line per dataset: best-mode F1 by how the pool was weighted, and its 0.95 x own-matcher level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in table["columns"] if c != "own"]
    fig, ax = plt.subplots(figsize=(9, 5))
    x = np.arange(len(columns))
    for i, (name, row) in enumerate(table["rows"].items()):
        colour = f"C{i}"
        ax.plot(x, [row[c] for c in columns], "o-", color=colour, label=name)
        ax.axhline(0.95 * row["own"], color=colour, linestyle=":", linewidth=1)
    ax.set_xticks(x, columns)
    ax.set_ylabel("end-to-end F1, best mode (test split)")
    ax.set_title(
        f"One matcher for every set, {weighted} in the pool with more weight\n"
        f"(dotted: 0.95 x the set's own matcher; mean of {table['seeds']} seed(s))",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
