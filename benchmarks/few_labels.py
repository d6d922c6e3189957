"""A few labels on a new catalogue pair: a matcher trained on them alone, against one that starts from the
built-in matcher and takes them as corrections (`matcher train --prior builtin`).

    python benchmarks/builtin_matcher.py --scope labelled --cache pairs.pkl     # gather once (~2 min)
    python benchmarks/few_labels.py pairs.pkl [--labels 25 50 100 200 400] [--draws 3] [--plot PNG]

For each development set, as a new user meets it: the built-in matcher is trained WITHOUT the set's family
(as `builtin_matcher.py --leave-one-out`), and a person labels N of the train split's candidate pairs, half of
them the pairs the built-in matcher is least sure of (as the review queue puts them first), half at random.
Then two matchers learn from those N labels: `train_matcher` on the labels alone (`matcher train --labels
--prior none`), and `train_from_prior` on every train-split candidate with the built-in matcher's probability
where no label is (`matcher train --labels`, whose default prior is the built-in matcher). Both are judged end
to end on the test split (F1 in the best decision mode), beside the built-in matcher with no label and a matcher
trained on every label of the train split. `--scope matched` judges the sources with a twin; `labelled` every
labelled source (most products without a twin).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builtin_matcher import family, labelled, mode_f1  # noqa: E402
from quality import _cpu  # noqa: E402

from prodmatch.errors import ProdmatchError  # noqa: E402
from prodmatch.quality.builtin import train_builtin  # noqa: E402
from prodmatch.quality.training import train_from_prior, train_matcher  # noqa: E402


def chosen_labels(probability: np.ndarray, threshold: float, n: int, seed: int) -> np.ndarray:
    """Indices of `n` pairs a person labels: the n // 2 the matcher is least sure of (probability nearest its
    threshold), the rest drawn at random from the others; sorted."""
    n = min(n, len(probability))
    unsure = np.argsort(np.abs(probability - threshold), kind="stable")[: n // 2]
    others = np.setdiff1d(np.arange(len(probability)), unsure)
    drawn = np.random.default_rng(seed).choice(others, size=n - len(unsure), replace=False)
    return np.sort(np.concatenate([unsure, drawn]))


def curve(data: dict, name: str, scope: str, sizes: list[int], draws: int) -> dict:
    """F1 (best decision mode) per label count, labels alone vs from the built-in prior, mean over draws."""
    split = data[name]["labelled"] if scope == "labelled" else data[name]
    train, test = split["train"], split["test"]
    builtin, _ = train_builtin([labelled(o, data[o]["train"]) for o in data if family(o) != family(name)])
    probability = builtin.predict_proba(train["matrix"], allow_missing=True).astype(np.float64)
    labels = np.asarray(train["labels"])
    sources = np.asarray(train["pairs"].sources)
    everything = train_matcher(train["matrix"], labels, sources, name="all labels")
    row = {
        "dataset": name,
        "builtin": max(mode_f1(builtin, test)),
        "all_labels": max(mode_f1(everything, test)),
        "all_labels_count": len(labels),
        "sizes": sizes,
        "alone": [],
        "prior": [],
    }
    for n in sizes:
        alone, prior = [], []
        for draw in range(draws):
            index = chosen_labels(probability, builtin.threshold, n, draw)
            try:
                own = train_matcher(train["matrix"].rows(index), labels[index], sources[index], seed=draw)
                alone.append(max(mode_f1(own, test)))
            except ProdmatchError:  # too few matches among the labels to train on them alone
                alone.append(0.0)
            known = np.zeros(len(labels), dtype=bool)
            known[index] = True
            started = train_from_prior(train["matrix"], probability, labels, known, sources, seed=draw)
            prior.append(max(mode_f1(started, test)))
        row["alone"].append(float(np.mean(alone)))
        row["prior"].append(float(np.mean(prior)))
        print(
            f"{name:<28} {n:>5} labels: alone {row['alone'][-1]:.3f}  from the built-in {row['prior'][-1]:.3f}"
            f"   (built-in, no label {row['builtin']:.3f}; all {len(labels)} labels {row['all_labels']:.3f})",
            flush=True,
        )
    return row


def plot(rows: list[dict], path: Path, scope: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.6), sharey=True, squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        ax.plot(row["sizes"], row["alone"], "o-", label="labels alone")
        ax.plot(row["sizes"], row["prior"], "s-", label="from the built-in (--prior builtin)")
        ax.axhline(row["builtin"], color="grey", ls="--", label="built-in, no label")
        ax.axhline(row["all_labels"], color="black", ls=":", label="every train label")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(row["sizes"], [str(n) for n in row["sizes"]], fontsize=7)
        ax.set_title(row["dataset"], fontsize=9)
        ax.set_xlabel("labels")
    axes[0][0].set_ylabel(f"end-to-end F1 ({scope} sources)")
    axes[0][0].set_ylim(0, 1)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("A few labels on a new catalogue pair (built-in left out of its own set)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "cache", type=Path, help="gathered pairs: builtin_matcher.py --scope labelled --cache"
    )
    parser.add_argument("--datasets", nargs="*")
    parser.add_argument("--scope", choices=("matched", "labelled"), default="matched")
    parser.add_argument("--labels", nargs="*", type=int, default=[25, 50, 100, 200, 400])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with open(args.cache, "rb") as f:
        data = pickle.load(f)  # noqa: S301 - a file builtin_matcher.py wrote
    print(f"CPU: {_cpu()}; {args.scope} sources; {args.draws} draws of labels per count", flush=True)
    rows = [curve(data, name, args.scope, args.labels, args.draws) for name in (args.datasets or list(data))]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.plot:
        plot(rows, args.plot, args.scope)


if __name__ == "__main__":
    main()
