"""benchmarks/few_labels.py: the labels a simulated person gives (half where the built-in matcher is least sure,
half at random) and its plot."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from few_labels import chosen_labels, plot  # noqa: E402


def test_half_the_labels_are_where_the_matcher_is_least_sure():
    probability = np.linspace(0, 1, 101)  # pair i has probability i / 100
    index = chosen_labels(probability, 0.4, 10, seed=0)
    assert len(index) == 10 and len(set(index.tolist())) == 10 and np.all(np.diff(index) > 0)
    nearest = set(np.argsort(np.abs(probability - 0.4), kind="stable")[:5].tolist())
    assert nearest <= set(index.tolist())  # 0.38 - 0.42
    assert np.array_equal(index, chosen_labels(probability, 0.4, 10, seed=0))
    assert not np.array_equal(index, chosen_labels(probability, 0.4, 10, seed=1))  # the random half moves
    assert len(chosen_labels(probability, 0.4, 500, seed=0)) == 101  # no more labels than pairs


def test_plot_writes_a_png(tmp_path):
    rows = [
        {
            "dataset": name,
            "builtin": 0.7,
            "all_labels": 0.8,
            "sizes": [25, 50, 100],
            "alone": [0.2, 0.5, 0.7],
            "prior": [0.7, 0.72, 0.75],
        }
        for name in ("a", "b")
    ]
    path = tmp_path / "few.png"
    plot(rows, path, "matched")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
