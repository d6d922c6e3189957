"""How far the built-in matcher's choices could take it on one left-out set, if they were made with its answers.

    python benchmarks/builtin_matcher.py --scope labelled --cache pairs.pkl     # gather once (~2 min)
    python benchmarks/builtin_oracle.py pairs.pkl --dataset ember-ali-shoes     # ~30-60 min on 2 cores

An upper bound, not a method: starting from the shipped recipe, a greedy search takes at each step the one
change that most raises the left-out set's test F1 (best decision mode) and stops when no change raises it.
The changes: leave one more signal family out of the features (or bring one back; families as
`prodmatch.quality.builtin.signal_family` groups them), the model kind, balancing, the absent-twin share and the
signal-dropout share. Every matcher is trained on the OTHER families' train splits only, as in
`builtin_matcher.py --leave-one-out`, but the choices see the left-out set's test labels, which a user never
has: a target this search cannot reach is out of reach for these signals and this pool, and one it reaches only
by many steps is reached by fitting the answers. Each step's figure is printed with the choices so far.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builtin_matcher import family, labelled, mode_f1  # noqa: E402

from prodmatch.match.signals.features import FeatureMatrix  # noqa: E402
from prodmatch.quality.builtin import (  # noqa: E402
    SIGNAL_DROPOUT,
    LabelledPairs,
    signal_family,
    train_builtin,
)


@dataclass(frozen=True)
class Recipe:
    """The built-in matcher's training choices the search may change."""

    dropped: frozenset[str] = frozenset()
    kind: str = "blend"
    balance: bool = True
    absent_twins: float = 0.0
    signal_dropout: float = SIGNAL_DROPOUT

    def __str__(self) -> str:
        dropped = ",".join(sorted(self.dropped)) or "-"
        return (
            f"without [{dropped}] kind={self.kind} balance={self.balance} absent_twins={self.absent_twins}"
            f" signal_dropout={self.signal_dropout}"
        )


def moves(recipe: Recipe, families: Iterable[str]) -> list[Recipe]:
    """Every recipe one change away from `recipe`."""
    out = [replace(recipe, dropped=recipe.dropped ^ {f}) for f in sorted(families)]
    out += [replace(recipe, kind=k) for k in ("blend", "gbdt", "logistic") if k != recipe.kind]
    out.append(replace(recipe, balance=not recipe.balance))
    out += [replace(recipe, absent_twins=a) for a in (0.0, 0.5, 1.0) if a != recipe.absent_twins]
    out += [replace(recipe, signal_dropout=d) for d in (0.0, SIGNAL_DROPOUT) if d != recipe.signal_dropout]
    return out


def greedy(start, neighbours: Callable, score: Callable, report: Callable = print) -> list[tuple]:
    """Hill climbing: [(choice, score), ...] from `start`, each step the best-scoring neighbour while it beats
    the current score."""
    current, value = start, score(start)
    path = [(current, value)]
    report(current, value)
    while True:
        scored = [(score(n), n) for n in neighbours(current)]
        if not scored:
            break
        best_value, best = max(scored, key=lambda pair: pair[0])
        if best_value <= value:
            break
        current, value = best, best_value
        path.append((current, value))
        report(current, value)
    return path


def without(matrix: FeatureMatrix, families: frozenset[str]) -> FeatureMatrix:
    """`matrix` without the features of `families`."""
    keep = [j for j, name in enumerate(matrix.names) if signal_family(name) not in families]
    return FeatureMatrix(tuple(matrix.names[j] for j in keep), matrix.values[:, keep])


def left_out_f1(data: dict, name: str, recipe: Recipe) -> tuple[float, list[float]]:
    """(best mode's F1, F1 per mode) on `name`'s test split of a built-in matcher trained on the other families."""
    parts = []
    for other in data:
        if family(other) != family(name):
            part = labelled(other, data[other]["train"])
            parts.append(
                LabelledPairs(part.name, without(part.features, recipe.dropped), part.labels, part.sources)
            )
    matcher, _ = train_builtin(
        parts,
        kinds=(recipe.kind,),
        balance=recipe.balance,
        absent_twins=recipe.absent_twins,
        signal_dropout=recipe.signal_dropout,
    )
    f1 = mode_f1(matcher, data[name]["test"], without(data[name]["test"]["matrix"], recipe.dropped))
    return max(f1), f1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cache", type=Path, help="the pairs gathered by builtin_matcher.py --cache")
    parser.add_argument("--dataset", default="ember-ali-shoes")
    args = parser.parse_args()
    with open(args.cache, "rb") as f:
        data = pickle.load(f)  # noqa: S301 - a file builtin_matcher.py wrote
    families = {signal_family(n) for n in data[args.dataset]["train"]["matrix"].names}
    started = time.perf_counter()
    per_mode: dict[Recipe, list[float]] = {}

    def score(recipe: Recipe) -> float:
        value, per_mode[recipe] = left_out_f1(data, args.dataset, recipe)
        return value

    def report(recipe: Recipe, value: float) -> None:
        modes = " / ".join(f"{x:.3f}" for x in per_mode[recipe])
        print(f"{value:.3f} ({modes}) {recipe}  [{time.perf_counter() - started:.0f} s]", flush=True)

    print(f"{args.dataset}: greedy search over the built-in matcher's choices, scored on its TEST labels")
    greedy(Recipe(), lambda r: moves(r, families), score, report)


if __name__ == "__main__":
    main()
