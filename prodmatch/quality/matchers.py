"""Train a learned matcher on gold pairs and store it: `prodmatch matcher train`.

The training pairs are the hybrid candidates (`prodmatch.match.hybrid.gather`) of every source product the gold
file names, so the matcher learns on exactly the pairs `link --matcher` will show it. Labels: a candidate that is
a gold target of its source is a match; every other candidate of a gold source is a non-match, because the gold
file lists EVERY true target of the sources it names (say so when you write one); label-0 rows are non-matches
too, added to the candidates if no source proposed them. Training itself (cross-validated model choice,
calibration, threshold) is `prodmatch.quality.training.train_matcher`; the result is stored as JSON in
`prodmatch.matchers` (`prodmatch.store.matchers`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psycopg

from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.errors import ConfigError, ProdmatchError
from prodmatch.match.assign import cluster_view
from prodmatch.match.hybrid import DEFAULT_K, Gathered, features, gather
from prodmatch.quality.evaluate import _resolve
from prodmatch.quality.gold import read_gold
from prodmatch.quality.metrics import ClusterQuality, cluster_quality
from prodmatch.quality.training import train_from_prior, train_matcher
from prodmatch.store.catalogs import catalog_id
from prodmatch.store.matchers import save_matcher
from prodmatch.store.models import get_model

if TYPE_CHECKING:
    from prodmatch.match.scoring import Matcher

# train_and_store(prior=...): the most source products whose candidates carry the prior's beliefs
PRIOR_MAX_SOURCES = 20_000


@dataclass(frozen=True)
class MatcherReport:
    """A trained and stored matcher, with what it was trained on and how well it did on held-out folds."""

    name: str
    model: str | None
    kind: str
    threshold: float
    pairs: int
    positives: int
    gold_pairs: int
    candidate_recall: dict[str, float]
    metrics: dict
    features: list[str]
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        m = self.metrics
        recall = ", ".join(f"{name} {value:.3f}" for name, value in self.candidate_recall.items())
        lines = [
            f"matcher {self.name!r}: {self.kind} over {len(self.features)} features"
            f" ({'model ' + self.model if self.model else 'no neural model: lexical, codes, brand, price, ...'})",
            f"trained on {self.pairs} candidate pairs of {self.gold_pairs} gold pairs ({self.positives} matches)",
            f"candidate recall of the gold pairs: {recall}",
            f"held-out folds: precision {m.get('out_of_fold_precision', float('nan')):.3f}"
            f"  recall {m.get('out_of_fold_recall', float('nan')):.3f}"
            f"  F1 {m.get('out_of_fold_f1', float('nan')):.3f}  AUC {m.get('out_of_fold_auc', float('nan')):.3f}",
            f"threshold {self.threshold:.3f} (match probability; chosen on held-out folds)",
        ]
        notes = m.get("notes") or []
        lines += [f"note: {note}" for note in notes]
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)


def train_and_store(
    conn: psycopg.Connection,
    gold_file: Path,
    source: str,
    target: str,
    *,
    model: str | None = None,
    name: str | None = None,
    k: int = DEFAULT_K,
    min_precision: float | None = None,
    seed: int = 0,
    progress: bool = False,
    labelled_only: bool = False,
    prior: str | None = None,
) -> MatcherReport:
    """Train a matcher on `gold_file`'s pairs between `source` and `target` and store it as `name`.

    By default a gold source's candidates that are not its gold targets are non-matches (a gold file lists every
    true target of the sources it names). `labelled_only` trains on the listed pairs alone, for labels people
    gave one pair at a time (`prodmatch review`), where an unlabelled candidate may still be a match.

    With `prior` (a stored matcher's name, such as "builtin"), the matcher starts from that matcher's beliefs
    about every candidate pair of the two catalogues (up to PRIOR_MAX_SOURCES source products, the labelled
    ones always among them) and takes the labels as corrections (`training.train_from_prior`): with a few
    dozen labels it stays near the prior where a matcher trained on those labels alone is far worse.
    """
    started = time.perf_counter()
    name = name or f"{source}-{target}"
    refresh_lexical(conn, progress=progress)
    conn.commit()
    registered = get_model(conn, model) if model else None
    source_id, target_id = catalog_id(conn, source), catalog_id(conn, target)
    positives, negatives = gold_pairs_between(conn, gold_file, source, target)
    if not positives:
        raise ConfigError(f"{gold_file}: no label-1 pairs between {source!r} and {target!r}")
    sources = np.array(sorted({s for s, _ in positives} | {s for s, _ in negatives}), dtype=np.int64)
    opened = _open_prior(conn, prior, registered) if prior else None
    gathered = gather(
        conn,
        source_id,
        target_id,
        registered,
        k=k,
        source_ids=_population(conn, source_id, sources, seed) if opened else sources,
        extra=negatives | (positives if labelled_only else set()),
    )
    matrix = features(gathered)
    labels = _labels(gathered, positives)
    population = len(labels)
    if opened:
        known = _known(gathered, positives, negatives, None if labelled_only else sources)
        matcher = train_from_prior(
            matrix,
            opened.predict_proba(matrix, allow_missing=True),
            labels,
            known,
            gathered.pairs.sources,
            min_precision=min_precision,
            seed=seed,
            name=name,
            prior_name=prior,
        )
        labels = labels[known]
    elif labelled_only:
        keep = _known(gathered, positives, negatives, None)
        matrix, labels = matrix.rows(keep), labels[keep]
        gathered.pairs = gathered.pairs.take(keep)
    if not opened:
        matcher = train_matcher(
            matrix, labels, gathered.pairs.sources, min_precision=min_precision, seed=seed, name=name
        )
    recall = {key: round(value, 4) for key, value in gathered.source_recall(positives).items()}
    metrics = {**_plain(matcher.metrics), "candidate_recall": recall}
    trained_on = {
        "gold_file": str(gold_file),
        "source": source,
        "target": target,
        "k": k,
        "pairs": len(labels),
        "positives": int(labels.sum()),
        "min_precision": min_precision,
        **({"prior": prior, "population_pairs": population} if opened else {}),
    }
    save_matcher(
        conn,
        name,
        registered.id if registered else None,
        matcher.to_json(),
        features=list(matcher.feature_names),
        threshold=float(matcher.threshold),
        metrics=metrics,
        trained_on=trained_on,
    )
    conn.commit()
    return MatcherReport(
        name=name,
        model=registered.name if registered else None,
        kind=matcher.kind,
        threshold=float(matcher.threshold),
        pairs=len(labels),
        positives=int(labels.sum()),
        gold_pairs=len(positives),
        candidate_recall=recall,
        metrics=metrics,
        features=list(matcher.feature_names),
        seconds=round(time.perf_counter() - started, 3),
    )


def gold_pairs_between(
    conn: psycopg.Connection, gold_file: Path, source: str, target: str
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(match pairs, non-match pairs) of a gold file as (source product id, target product id), either way round."""
    resolved, _unknown = _resolve(conn, read_gold(gold_file), gold_file)
    positives: set[tuple[int, int]] = set()
    negatives: set[tuple[int, int]] = set()
    for pair, s, t in resolved:
        if (pair.source_catalog, pair.target_catalog) == (source, target):
            key = (s, t)
        elif (pair.source_catalog, pair.target_catalog) == (target, source):
            key = (t, s)
        else:
            continue
        (positives if pair.label == 1 else negatives).add(key)
    return positives, negatives - positives


def default_prior(labelled_only: bool) -> str | None:
    """The prior `matcher train` starts from unless told: the built-in matcher for labels people gave (a few
    dozen of them alone train a matcher far worse than it: docs/benchmarks.md), none for a gold file."""
    from prodmatch.store.matchers import BUILTIN_NAME, builtin_available

    return BUILTIN_NAME if labelled_only and builtin_available() else None


def _open_prior(conn: psycopg.Connection, prior: str, registered) -> Matcher:
    """The stored matcher `prior`; one that reads a model's vectors needs that model for the new one too."""
    from prodmatch.match.link import open_matcher

    opened = open_matcher(conn, prior)
    wanted = opened.model.name if opened.model else None
    if wanted and (registered is None or registered.name != wanted):
        raise ConfigError(
            f"the prior matcher {prior!r} reads model {wanted!r}'s vectors: train with --model {wanted}"
        )
    return opened.scorer


def _population(conn: psycopg.Connection, catalog: int, labelled: np.ndarray, seed: int) -> np.ndarray | None:
    """The source products whose candidates a matcher trained from a prior learns the prior on: all of the
    catalogue (None), or past PRIOR_MAX_SOURCES a seeded sample of them with every labelled source."""
    count = conn.execute(
        "SELECT count(*) FROM prodmatch.products WHERE catalog_id = %s", (catalog,)
    ).fetchone()[0]
    if count <= PRIOR_MAX_SOURCES:
        return None
    ids = np.array(
        [
            r[0]
            for r in conn.execute(
                "SELECT id FROM prodmatch.products WHERE catalog_id = %s ORDER BY id", (catalog,)
            )
        ],
        dtype=np.int64,
    )
    sample = np.random.default_rng(seed).choice(ids, size=PRIOR_MAX_SOURCES, replace=False)
    return np.union1d(sample, labelled)


def _known(
    gathered: Gathered,
    positives: set[tuple[int, int]],
    negatives: set[tuple[int, int]],
    whole_sources: np.ndarray | None,
) -> np.ndarray:
    """Which gathered pairs carry a label: those the gold file lists, and with `whole_sources` (a gold file that
    names every true target of its sources) every candidate of those sources."""
    pairs = gathered.pairs
    listed = positives | negatives
    known = np.array(
        [(s, t) in listed for s, t in zip(pairs.sources.tolist(), pairs.targets.tolist(), strict=True)],
        dtype=bool,
    )
    if whole_sources is not None:
        known |= np.isin(pairs.sources, whole_sources)
    return known


def _labels(gathered: Gathered, positives: set[tuple[int, int]]) -> np.ndarray:
    pairs = gathered.pairs
    return np.array(
        [(s, t) in positives for s, t in zip(pairs.sources.tolist(), pairs.targets.tolist(), strict=True)],
        dtype=np.int64,
    )


def _plain(value):
    """Numpy scalars and containers to plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- evaluation of a matcher against single signals -------------------------------------------------------

SINGLE_SIGNALS = ("sim:fused", "sim:image", "sim:text", "sim:lexical")
MODES = ("all", "top1", "1:1")


@dataclass(frozen=True)
class SignalScore:
    """End-to-end precision / recall / F1 of one way of deciding, on the gold pairs."""

    name: str
    mode: str  # all: every pair over the threshold; top1: a source's best pair; 1:1: greedy one-to-one
    threshold: float | None
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class MatcherEvaluation:
    """A matcher's decisions next to each single signal, on one gold file."""

    matcher: str
    gold: str
    gold_pairs: int
    sources: int
    candidate_recall: dict[str, float]
    rows: list[SignalScore]
    plot: str | None
    seconds: float
    # Per mode (all, 1:1): the clusters the matcher's accepted pairs form, against the gold's clusters.
    clusters: dict[str, ClusterQuality] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        recall = ", ".join(f"{name} {value:.3f}" for name, value in self.candidate_recall.items())
        lines = [
            f"matcher {self.matcher!r} on {self.gold_pairs} gold pairs of {self.sources} source products",
            f"candidate recall: {recall}",
            f"{'decision':<16}{'mode':<9}{'threshold':>10}{'precision':>11}{'recall':>8}{'F1':>7}",
        ]
        for r in self.rows:
            threshold = f"{r.threshold:.4f}" if r.threshold is not None and np.isfinite(r.threshold) else "-"
            lines.append(
                f"{r.name:<16}{r.mode:<9}{threshold:>10}{r.precision:>11.3f}{r.recall:>8.3f}{r.f1:>7.3f}"
            )
        lines.append(
            "single signals use their best threshold on this gold file (optimistic); the matcher uses its own;"
            " 'clusters': the pairs of 'all' whose two products `clusters build` keeps in one cluster"
        )
        for mode, quality in self.clusters.items():
            lines.append(f"matcher {mode:<4} {quality.to_text()}")
        if self.plot:
            lines.append(f"plot: {self.plot}")
        return "\n".join(lines)


def evaluate_matcher(
    conn: psycopg.Connection,
    gold_file: Path,
    matcher_name: str,
    source: str,
    target: str,
    *,
    plots_dir: Path | None = None,
) -> MatcherEvaluation:
    """End-to-end quality of a stored matcher's decisions and of each single signal on `gold_file`."""
    from prodmatch.match.link import open_matcher

    started = time.perf_counter()
    refresh_lexical(conn)
    conn.commit()
    opened = open_matcher(conn, matcher_name)
    scorer, registered, k = opened.scorer, opened.model, opened.depth
    source_id, target_id = catalog_id(conn, source), catalog_id(conn, target)
    positives, negatives = gold_pairs_between(conn, gold_file, source, target)
    if not positives:
        raise ConfigError(f"{gold_file}: no label-1 pairs between {source!r} and {target!r}")
    # Every labelled source is judged: one known only by label-0 pairs (no twin in the target) counts each pair
    # the matcher accepts for it as a false positive, as `eval` of a link run counts it.
    sources = np.array(sorted({s for s, _ in positives} | {s for s, _ in negatives}), dtype=np.int64)
    gathered = gather(conn, source_id, target_id, registered, k=k, source_ids=sources)
    matrix = features(gathered)
    labels = _labels(gathered, positives)
    pairs = gathered.pairs
    rows: list[SignalScore] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in SINGLE_SIGNALS:
        if name not in matrix.names:
            continue
        score = matrix.column(name).astype(np.float64)
        if np.isnan(score).all():
            continue
        score = np.where(np.isnan(score), -np.inf, score)
        threshold = best_threshold(pairs.sources, pairs.targets, labels, score, len(positives), "top1")
        rows.append(_score(name, "top1", pairs, labels, score, threshold, len(positives)))
        curves[name] = pr_curve(pairs.sources, pairs.targets, labels, score, len(positives), "top1")
    probability = scorer.predict_proba(matrix, allow_missing=True).astype(np.float64)
    for mode in MODES:
        rows.append(_score("matcher", mode, pairs, labels, probability, scorer.threshold, len(positives)))
    curves["matcher"] = pr_curve(pairs.sources, pairs.targets, labels, probability, len(positives), "all")
    gold = np.array(sorted(positives), dtype=np.int64)
    clusters = {}
    for mode in ("all", "1:1"):
        kept = decisions(pairs.sources, pairs.targets, probability, mode)
        kept = kept[probability[kept] >= scorer.threshold]
        found, together = cluster_view(pairs, probability, kept, source_id, target_id)
        clusters[mode] = cluster_quality(*found, gold)
        if mode == "all":
            scored = _score("matcher", "all", pairs, labels, np.where(together, probability, -np.inf),
                            scorer.threshold, len(positives))  # fmt: skip
            rows.append(replace(scored, mode="clusters"))
    plot = None
    if plots_dir is not None:
        plot = str(_plot_curves(curves, rows, Path(plots_dir) / f"matcher_{matcher_name}_pr.png"))
    return MatcherEvaluation(
        matcher=matcher_name,
        gold=str(gold_file),
        gold_pairs=len(positives),
        sources=len(sources),
        candidate_recall={key: round(v, 4) for key, v in gathered.source_recall(positives).items()},
        rows=rows,
        plot=plot,
        seconds=round(time.perf_counter() - started, 3),
        clusters=clusters,
    )


def decisions(sources: np.ndarray, targets: np.ndarray, score: np.ndarray, mode: str) -> np.ndarray:
    """Indexes of the pairs a mode may accept, best first (a threshold then keeps a prefix)."""
    order = np.argsort(-score, kind="stable")
    if mode == "all":
        return order
    used_sources: set = set()
    used_targets: set = set()
    kept = []
    for i in order.tolist():
        s, t = sources[i], targets[i]
        if s in used_sources or (mode == "1:1" and t in used_targets):
            continue
        used_sources.add(s)
        used_targets.add(t)
        kept.append(i)
    return np.array(kept, dtype=np.int64)


def pr_curve(
    sources: np.ndarray, targets: np.ndarray, labels: np.ndarray, score: np.ndarray, gold: int, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) as the threshold sweeps down through the pairs `mode` may accept."""
    kept = decisions(sources, targets, score, mode)
    kept = kept[np.isfinite(score[kept])]
    tp = np.cumsum(labels[kept])
    n = np.arange(1, len(kept) + 1)
    return tp / np.maximum(n, 1), tp / max(gold, 1)


def best_threshold(
    sources: np.ndarray, targets: np.ndarray, labels: np.ndarray, score: np.ndarray, gold: int, mode: str
) -> float:
    """The threshold with the best end-to-end F1 of `mode` (recall over all `gold` pairs)."""
    kept = decisions(sources, targets, score, mode)
    kept = kept[np.isfinite(score[kept])]
    if not len(kept):
        return float("inf")
    s = score[kept]
    tp = np.cumsum(labels[kept])
    f1 = 2 * tp / (np.arange(1, len(kept) + 1) + gold)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    best = np.flatnonzero(last_of_tie)[np.argmax(f1[last_of_tie])]
    return float(s[best])


def _score(name, mode, pairs, labels, score, threshold, gold) -> SignalScore:
    kept = decisions(pairs.sources, pairs.targets, score, mode)
    kept = kept[score[kept] >= threshold]
    tp = int(labels[kept].sum())
    precision = tp / len(kept) if len(kept) else 0.0
    recall = tp / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return SignalScore(name, mode, float(threshold), round(precision, 4), round(recall, 4), round(f1, 4))


def _plot_curves(curves: dict, rows: list[SignalScore], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    for name, (precision, recall) in curves.items():
        best = max((r.f1 for r in rows if r.name == name), default=0.0)
        ax.plot(
            recall, precision, label=f"{name} (F1 {best:.3f})", linewidth=2.4 if name == "matcher" else 1.4
        )
    ax.set_xlabel("recall (of all gold pairs)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("End to end: learned matcher vs single signals")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --- labels from the review app as training data ------------------------------------------------------------


def labels_gold_file(conn: psycopg.Connection, path: Path) -> Path:
    """Write the current same / different labels of `prodmatch.labels` as a gold CSV (what `--labels` reads)."""
    from prodmatch.review.labels import export_labels  # the one writer of labels as gold pairs

    if not export_labels(conn, path):
        raise ConfigError(
            "no labels yet: label pairs with `prodmatch review` or load them with `prodmatch labels import`"
        )
    return path


def score_pairs(conn: psycopg.Connection, matcher_name: str, pairs: list[tuple[int, int]]) -> np.ndarray:
    """A stored matcher's probability for given (source product, target product) pairs of one catalogue pair."""
    from prodmatch.match.link import open_matcher

    if not pairs:
        return np.empty(0, dtype=np.float64)
    opened = open_matcher(conn, matcher_name)
    scorer, registered, k = opened.scorer, opened.model, opened.depth
    source_ids = sorted({s for s, _ in pairs})
    catalogs = dict(
        conn.execute(
            "SELECT id, catalog_id FROM prodmatch.products WHERE id = ANY(%s)",
            ([*source_ids, *{t for _, t in pairs}],),
        ).fetchall()
    )
    source_catalog, target_catalog = catalogs[pairs[0][0]], catalogs[pairs[0][1]]
    gathered = gather(
        conn,
        source_catalog,
        target_catalog,
        registered,
        k=k,
        source_ids=np.array(source_ids, dtype=np.int64),
        extra=set(pairs),
    )
    probability = scorer.predict_proba(features(gathered), allow_missing=True)
    index = {
        (s, t): i
        for i, (s, t) in enumerate(
            zip(gathered.pairs.sources.tolist(), gathered.pairs.targets.tolist(), strict=True)
        )
    }
    return np.array([probability[index[pair]] for pair in pairs], dtype=np.float64)


def review_retrainer(
    settings, *, run_id: int | None = None, source: str | None = None, target: str | None = None
):
    """The review app's retrain hook: train a matcher on the labels so far (from the built-in matcher, as
    `matcher train --labels` does); its probabilities steer the queue.

    Returns `retrain(conn) -> {"f1", "threshold", "score"}` (the app's hook contract); with too few labels it
    says so instead of a score.
    """
    from prodmatch import store

    def retrain(conn: psycopg.Connection) -> dict:
        a, b = _run_catalogs(conn, run_id, source, target)
        name = f"review-{a}-{b}"
        with tempfile.TemporaryDirectory() as folder:
            try:
                gold = labels_gold_file(conn, Path(folder) / "labels.csv")
                report = train_and_store(
                    conn, gold, a, b, name=name, labelled_only=True, prior=default_prior(True)
                )
            except ProdmatchError as error:  # no labels, or too few matches or non-matches yet
                return {"note": str(error)}

        def score(pairs) -> list[float]:
            with store.connection(settings) as scoring:
                keys = [(p.source_product_id, p.target_product_id) for p in pairs]
                return score_pairs(scoring, name, keys).tolist()

        return {
            "f1": round(float(report.metrics.get("out_of_fold_f1", 0.0)), 4),
            "threshold": report.threshold,
            "matcher": name,
            "score": score,
        }

    return retrain


def _run_catalogs(conn, run_id: int | None, source: str | None, target: str | None) -> tuple[str, str]:
    if source and target:
        return source, target
    row = conn.execute(
        "SELECT sc.name, tc.name FROM prodmatch.match_runs r JOIN prodmatch.catalogs sc ON sc.id = r.source_catalog_id"
        " JOIN prodmatch.catalogs tc ON tc.id = r.target_catalog_id"
        " WHERE r.kind = 'link' AND (%s::bigint IS NULL OR r.id = %s) ORDER BY r.id DESC LIMIT 1",
        (run_id, run_id),
    ).fetchone()
    if row is None:
        raise ConfigError("no link run to learn from; run prodmatch link first")
    return row[0], row[1]
