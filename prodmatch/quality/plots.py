"""Charts of an evaluation: the precision / recall curve of each space and the score histograms of matches and
non-matches, written as PNG files with matplotlib.

`quality.evaluate` calls `draw_plots` with the `SpaceReport`s that `quality.metrics` filled; this module only
draws what it is given (no database, no scoring), so the numbers in a report and on its charts are the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prodmatch.quality.metrics import SpaceReport


def draw_plots(
    folder: Path, spaces: list[SpaceReport], grid: list[SpaceReport], recommendation: dict
) -> dict[str, str]:
    """precision_recall.png (the three spaces on one chart) and score_histogram.png (recommended space)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    best_fused = max(grid, key=lambda s: (s.best_f1, s.recall_at_1)) if grid else spaces[2]
    chosen = _find(spaces, grid, recommendation)

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for report, colour in ((spaces[0], "tab:blue"), (spaces[1], "tab:orange"), (best_fused, "tab:green")):
        if report.curve:
            label = report.space if report.space != "fused" else f"fused (w={report.image_weight})"
            ax.plot(
                [p["recall"] for p in report.curve],
                [p["precision"] for p in report.curve],
                label=f"{label}: F1 {report.best_f1:.3f}, R@1 {report.recall_at_1:.3f}",
                color=colour,
            )
    ax.scatter(
        [recommendation["recall"]],
        [recommendation["precision"]],
        color="black",
        zorder=5,
        label=f"chosen: {recommendation['space']}, threshold {recommendation['threshold']:.3f}"
        if recommendation["threshold"] is not None
        else "chosen",
    )
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title="Precision-recall of accepting each product's best candidate",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)  # a weak space's curves stay in the lower left
    pr_path = folder / "precision_recall.png"
    fig.tight_layout()
    fig.savefig(pr_path)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    scores = chosen.match_scores + chosen.non_match_scores
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    if recommendation["threshold"] is not None:
        low, high = min(low, recommendation["threshold"]), max(high, recommendation["threshold"])
    pad = max((high - low) * 0.05, 1e-4)
    bins = np.linspace(low - pad, high + pad, 41)  # follow the data: random models crowd scores near 1
    ax.hist(
        chosen.non_match_scores,
        bins=bins,
        alpha=0.6,
        color="tab:red",
        label=f"non-matches ({len(chosen.non_match_scores)})",
    )
    ax.hist(
        chosen.match_scores,
        bins=bins,
        alpha=0.6,
        color="tab:green",
        label=f"matches ({len(chosen.match_scores)})",
    )
    if recommendation["threshold"] is not None:
        ax.axvline(
            recommendation["threshold"],
            color="black",
            linestyle="--",
            label=f"threshold {recommendation['threshold']:.3f}",
        )
    label = chosen.space if chosen.space != "fused" else f"fused (w={chosen.image_weight})"
    ax.set(xlabel=f"cosine similarity ({label})", ylabel="pairs", title="Scores of matches and non-matches")
    ax.legend(fontsize=8)
    hist_path = folder / "score_histogram.png"
    fig.tight_layout()
    fig.savefig(hist_path)
    plt.close(fig)
    return {"precision_recall": str(pr_path), "score_histogram": str(hist_path)}


def _find(spaces: list[SpaceReport], grid: list[SpaceReport], recommendation: dict) -> SpaceReport:
    for report in grid + spaces:
        if report.space == recommendation["space"] and (
            report.space != "fused" or report.image_weight == recommendation["image_weight"]
        ):
            return report
    return spaces[-1]
