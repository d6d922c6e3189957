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

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg

from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.errors import ConfigError
from prodmatch.match.hybrid import DEFAULT_K, Gathered, features, gather
from prodmatch.quality.evaluate import _resolve
from prodmatch.quality.gold import read_gold
from prodmatch.quality.training import train_matcher
from prodmatch.store.catalogs import catalog_id
from prodmatch.store.matchers import save_matcher
from prodmatch.store.models import get_model


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
) -> MatcherReport:
    """Train a matcher on `gold_file`'s pairs between `source` and `target` and store it as `name`."""
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
    gathered = gather(conn, source_id, target_id, registered, k=k, source_ids=sources, extra=negatives)
    matrix = features(gathered)
    labels = _labels(gathered, positives)
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
