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
from prodmatch.match.signals.ranks import rank_signals
from prodmatch.quality.matchers import _plain
from prodmatch.quality.training import train_matcher
from prodmatch.store.matchers import BUILTIN_FILE, BUILTIN_NAME

__all__ = [
    "BUILTIN_FILE",
    "BUILTIN_NAME",
    "SIGNAL_DROPOUT",
    "LabelledPairs",
    "builtin_record",
    "is_neural",
    "signal_family",
    "train_builtin",
    "with_signal_dropout",
]

# Signals a neural model gives: the built-in matcher must not depend on one (a user may have none, or another).
_NEURAL_SPACES = ("fused", "image", "text")

# The shipped matcher's share of pairs that lose each signal family in its training copy (`with_signal_dropout`):
# measured with leave one dataset out over five seeds (docs/benchmarks.md), not tuned to one set.
SIGNAL_DROPOUT = 0.2
_FAMILY_OF_PREFIX = {"code": "codes", "plain": "numbers"}


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


def signal_family(feature: str) -> str:
    """The family of signals `feature` belongs to: what a catalogue pair lacks together when it lacks one field.

    "sim:lexical", "rank:lexical" -> "lexical"; "codes_agree", "code_in_other_text", "rank:codes" and the
    context margins of a code signal -> "codes"; "brand_equal" -> "brand"; "title_length_ratio" -> "title";
    "plain_number_jaccard" -> "numbers"; any other name -> the word before its first "_".
    """
    for prefix in ("context_margin:", "context_reverse_margin:"):
        feature = feature.removeprefix(prefix)
    if ":" in feature:
        return feature.split(":", 1)[1]  # a space or candidate source: sim:, rank:, margin:, reverse_...
    head = feature.split("_", 1)[0]
    return _FAMILY_OF_PREFIX.get(head, head)


def train_builtin(
    parts: Sequence[LabelledPairs],
    *,
    seed: int = 0,
    balance: bool = True,
    kinds: Sequence[str] = ("blend",),
    absent_twins: float = 0.0,
    signal_dropout: float = SIGNAL_DROPOUT,
) -> tuple:
    """A matcher trained on the pooled pairs of `parts` over their model-free features; (matcher, per-part counts).

    Features are aligned by name (a feature one dataset lacks is missing, NaN, for its pairs); sources of
    different datasets are different groups, so no fold splits one source's pairs. With `balance`, no dataset
    brings more true matches than the median dataset: a larger one contributes a seeded random subset of its
    source products (all pairs of each), so one dataset's notion of "same product" (loose marketplace clusters,
    say) does not become the matcher's. With `signal_dropout` > 0 (as shipped), each dataset also brings a copy
    of its pairs where each signal family is missing for that share of them (`with_signal_dropout`): a user's
    catalogues may lack codes, brands, prices, categories or attributes that every development set has. With
    `absent_twins` > 0, each dataset also brings that share of its sources with a twin again without the twin
    (`with_absent_twins`; measured in docs/benchmarks.md, not what the shipped matcher was trained with).
    The counts are of each dataset's own pairs after balancing, before any copy.
    """
    if balance and len(parts) > 2:
        cap = int(np.median([int(np.sum(part.labels)) for part in parts]))
        parts = [_capped(part, cap, seed) for part in parts]
    counts = [
        {"dataset": part.name, "pairs": len(part.labels), "positives": int(np.sum(part.labels))}
        for part in parts
    ]  # what was trained on, after balancing
    if absent_twins > 0:
        parts = [with_absent_twins(part, absent_twins, seed) for part in parts]
    if signal_dropout > 0:
        parts = [with_signal_dropout(part, signal_dropout, (seed, n)) for n, part in enumerate(parts)]
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
    return matcher, counts


def with_signal_dropout(part: LabelledPairs, share: float, seed) -> LabelledPairs:
    """`part` plus one copy of its pairs in which, for each signal family (`signal_family`) independently, a
    seeded random `share` of the pairs have every feature of the family missing (NaN), as link computes them for
    a catalogue pair that lacks the field.

    The development sets fill most fields; a user's catalogue may have no codes, brands, prices or attributes,
    or a script whose titles carry no model tokens. Trained on the copies too, the matcher learns what the
    other signals say when one family is missing, instead of meeting that only at link time. The copies keep
    their source's group, so no fold splits them from the originals.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of pairs that lose a signal family is between 0 and 1, not {share}")
    if share == 0 or not len(part.labels):
        return part
    names = part.features.names
    values = part.features.values
    copy = values.copy()
    rng = np.random.default_rng(seed)
    families: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        families.setdefault(signal_family(name), []).append(j)
    for family in sorted(families):
        lose = rng.random(len(copy)) < share
        copy[np.ix_(lose, families[family])] = np.nan
    return LabelledPairs(
        part.name,
        FeatureMatrix(names, np.vstack([values, copy])),
        np.concatenate([part.labels, part.labels]),
        np.concatenate([np.asarray(part.sources), np.asarray(part.sources)]),
    )


def with_absent_twins(part: LabelledPairs, share: float, seed: int) -> LabelledPairs:
    """`part` plus, for a seeded `share` of its sources with a twin, a copy of the source's candidates with its
    twins taken out of the target catalogue: what the source's candidates would be had it no twin there.

    A catalogue pair where most products have no twin shows the matcher best candidates that are lookalikes;
    the development sets' sources nearly all have one, so a matcher trained on them learns that a best candidate
    is a match. The copies are labelled 0 and keep their source's group (no fold splits them from it); the
    features that rank a pair among its source's candidates (rank and margin of each candidate source, context
    margins) are computed again over the candidates left, the rest are the pair's own and stay.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of sources to copy without their twin is between 0 and 1, not {share}")
    names = part.features.names
    values = part.features.values
    sources = np.asarray(part.sources)
    labels = np.asarray(part.labels)
    with_twin = np.unique(sources[labels == 1])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(with_twin, size=int(round(share * len(with_twin))), replace=False)
    keep = np.isin(sources, chosen) & (labels == 0)
    if not keep.any():
        return part
    block = values[keep].copy()
    kept_sources = sources[keep]
    for j, name in enumerate(names):
        if name.startswith("rank:") and f"margin:{name[5:]}" in names:
            m = names.index(f"margin:{name[5:]}")
            # scores relative to the source's best: the best's margin is to the runner-up, the others' to the best
            relative = np.where(values[:, j] == 1, 0.0, values[:, m])[keep]
            proposed = ~np.isnan(block[:, j])
            ranked = _by_source(kept_sources[proposed], relative[proposed])
            block[proposed, j], block[proposed, m] = ranked.rank, ranked.margin
        elif name.startswith("context_margin:") and name[15:] in names:
            base = block[:, names.index(name[15:])]
            block[:, j] = _by_source(kept_sources, base).margin
    return LabelledPairs(
        part.name,
        FeatureMatrix(names, np.vstack([values, block])),
        np.concatenate([labels, np.zeros(len(block), dtype=labels.dtype)]),
        np.concatenate([sources, kept_sources]),
    )


def _by_source(sources: np.ndarray, scores: np.ndarray):
    """Rank and margin of each pair among its source's pairs (the target side is not needed here)."""
    return rank_signals(sources, np.zeros(len(sources), dtype=np.int64), scores)


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


def builtin_record(
    matcher, *, k: int, datasets: list[dict], script: str, training: dict | None = None
) -> dict:
    """The JSON document of ``builtin_matcher.json``: the matcher's definition and what it was trained on
    (`training`: the options of `train_builtin` it was trained with)."""
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
            "training": dict(training or {}),
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
