"""The built-in matcher: one matcher trained on public product-matching data, shipped in the package as data.

A new user has no labels, so prodmatch ships a matcher that needs none: trained by
``benchmarks/builtin_matcher.py`` on the development sets (their provenance is in docs/builtin_matcher.md and in
the file's ``trained_on``), over the signals every catalogue has without a neural model — lexical similarity,
ranks and margins, product codes, brand, price, numbers and quantities, title overlap, attributes — so it works
with no model, with any model and for any language. It is stored as plain JSON (the same definition
`prodmatch.match.scoring.Matcher.to_json` writes, never a pickle) in ``prodmatch/data/builtin_matcher.json``;
`prodmatch.store.matchers` puts it into ``prodmatch.matchers`` under the name ``builtin`` the first time it is
asked for, so `link`, `eval`, `explain`, `review` and `--watch` read it like any stored matcher.

This module turns labelled candidate pairs of several datasets into that file; gathering the pairs from a
database is the caller's (the benchmark script's) job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prodmatch.match.signals.features import FeatureMatrix
from prodmatch.quality.matchers import _plain
from prodmatch.quality.training import train_matcher
from prodmatch.store.matchers import BUILTIN_FILE, BUILTIN_NAME

__all__ = ["BUILTIN_FILE", "BUILTIN_NAME", "LabelledPairs", "builtin_record", "is_neural", "train_builtin"]

# Signals a neural model gives: the built-in matcher must not depend on one (a user may have none, or another).
_NEURAL_SPACES = ("fused", "image", "text")


@dataclass(frozen=True)
class LabelledPairs:
    """One dataset's labelled candidate pairs: features, labels (1 = same product), and each pair's source."""

    name: str
    features: FeatureMatrix
    labels: np.ndarray
    sources: np.ndarray


def is_neural(feature: str) -> bool:
    """Whether `feature` comes from a neural model's vectors ("sim:fused", "rank:image", ...)."""
    return any(feature.split(":")[-1] == space for space in _NEURAL_SPACES)


def train_builtin(
    parts: Sequence[LabelledPairs], *, seed: int = 0, balance: bool = True, kinds: Sequence[str] = ("blend",)
) -> tuple:
    """A matcher trained on the pooled pairs of `parts` over their model-free features; (matcher, per-part counts).

    Features are aligned by name (a feature one dataset lacks is missing, NaN, for its pairs); sources of
    different datasets are different groups, so no fold splits one source's pairs. With `balance`, no dataset
    brings more true matches than the median dataset: a larger one contributes a seeded random subset of its
    source products (all pairs of each), so one dataset's notion of "same product" (loose marketplace clusters,
    say) does not become the matcher's.
    """
    if balance and len(parts) > 2:
        cap = int(np.median([int(np.sum(part.labels)) for part in parts]))
        parts = [_capped(part, cap, seed) for part in parts]
    names = sorted({n for part in parts for n in part.features.names if not is_neural(n)})
    blocks, labels, groups = [], [], []
    for number, part in enumerate(parts):
        block = np.full((len(part.features), len(names)), np.nan, dtype=np.float32)
        for j, name in enumerate(names):
            if name in part.features.names:
                block[:, j] = part.features.column(name)
        blocks.append(block)
        labels.append(np.asarray(part.labels, dtype=np.int64))
        groups.append(np.char.add(f"{number}:", np.asarray(part.sources).astype(str)))
    features = FeatureMatrix(tuple(names), np.vstack(blocks))
    matcher = train_matcher(
        features, np.concatenate(labels), np.concatenate(groups), seed=seed, name=BUILTIN_NAME, kinds=kinds
    )
    counts = [
        {"dataset": part.name, "pairs": len(part.labels), "positives": int(np.sum(part.labels))}
        for part in parts
    ]  # what was trained on, after balancing
    return matcher, counts


def _capped(part: LabelledPairs, positives: int, seed: int) -> LabelledPairs:
    """`part` with only as many of its source products (seeded order) as bring about `positives` matches."""
    if int(np.sum(part.labels)) <= positives:
        return part
    sources = np.asarray(part.sources)
    unique = np.unique(sources)
    order = np.random.default_rng(seed).permutation(len(unique))
    per_source = {s: 0 for s in unique.tolist()}
    for s, label in zip(sources.tolist(), np.asarray(part.labels).tolist(), strict=True):
        per_source[s] += label
    kept, total = [], 0
    for i in order.tolist():
        if total >= positives:
            break
        kept.append(unique[i])
        total += per_source[unique[i].item()]
    keep = np.isin(sources, np.array(kept))
    return LabelledPairs(part.name, part.features.rows(keep), np.asarray(part.labels)[keep], sources[keep])


def builtin_record(matcher, *, k: int, datasets: list[dict], script: str) -> dict:
    """The JSON document of ``builtin_matcher.json``: the matcher's definition and what it was trained on."""
    definition = matcher.to_json()
    metrics = _plain(matcher.metrics)
    return {
        "name": BUILTIN_NAME,
        "definition": definition,
        "features": list(matcher.feature_names),
        "threshold": float(matcher.threshold),
        "metrics": metrics,
        "trained_on": {
            "what": "prodmatch's built-in matcher: public product-matching benchmarks, no neural model",
            "script": script,
            "k": k,
            "datasets": datasets,
            "definition_sha256": hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest(),
        },
    }


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the provenance of each development file the matcher learned from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
