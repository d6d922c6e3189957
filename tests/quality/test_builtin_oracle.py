"""benchmarks/builtin_oracle.py: the greedy search climbs while a change helps and stops where none does; its
moves and feature filtering are what they claim."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from builtin_oracle import Recipe, greedy, moves, without  # noqa: E402

from prodmatch.match.signals.features import FeatureMatrix  # noqa: E402


def test_greedy_takes_the_best_neighbour_until_none_is_better():
    seen = []
    path = greedy(0, lambda n: [n - 1, n + 1, n + 2], lambda n: -((n - 5) ** 2), lambda c, v: seen.append(c))
    assert [c for c, _ in path] == [0, 2, 4, 5]  # +2 while it helps most, then +1; 6 and 7 score worse than 5
    assert seen == [0, 2, 4, 5]
    assert greedy(3, lambda n: [], lambda n: n, lambda c, v: None) == [(3, 3)]  # no neighbour: the start


def test_moves_change_one_choice_each():
    start = Recipe()
    neighbours = moves(start, {"codes", "brand"})
    assert Recipe(dropped=frozenset({"codes"})) in neighbours
    assert Recipe(kind="logistic") in neighbours and Recipe(balance=False) in neighbours
    assert Recipe(absent_twins=1.0) in neighbours and Recipe(signal_dropout=0.0) in neighbours
    assert start not in neighbours
    for n in neighbours:  # exactly one field differs from the start
        assert sum(getattr(n, f) != getattr(start, f) for f in start.__dataclass_fields__) == 1
    back = moves(Recipe(dropped=frozenset({"codes"})), {"codes", "brand"})
    assert Recipe() in back  # a dropped family can come back


def test_without_drops_whole_families():
    names = ("sim:lexical", "rank:codes", "codes_agree", "brand_equal", "context_margin:code_in_other_text")
    matrix = FeatureMatrix(names, np.arange(10, dtype=np.float32).reshape(2, 5))
    kept = without(matrix, frozenset({"codes"}))
    assert kept.names == ("sim:lexical", "brand_equal")
    assert np.array_equal(kept.values, matrix.values[:, [0, 3]])
