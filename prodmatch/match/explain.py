"""Explain one pair: every signal the matcher reads, and what each contributes to its match probability.

`prodmatch explain shop:SKU-1 competitor:C-9 --matcher NAME` gathers the source product's hybrid candidates
(plus the pair itself, if no source proposed it), computes the pair's features exactly as `link --matcher` does,
and asks the matcher for the probability and each feature's contribution (LightGBM's SHAP values, or coefficient
x standardised value for a logistic matcher). Without a matcher it shows the signals alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import psycopg

from prodmatch.errors import ConfigError
from prodmatch.match.hybrid import DEFAULT_K, features, gather
from prodmatch.match.link import load_matcher
from prodmatch.store.catalogs import find_product, parse_product_ref
from prodmatch.store.matchers import get_matcher
from prodmatch.store.models import get_model


@dataclass(frozen=True)
class PairExplanation:
    """The signals of one pair and, with a matcher, their contributions and the decision."""

    source: str
    target: str
    signals: dict[str, float | None]
    matcher: str | None = None
    probability: float | None = None
    threshold: float | None = None
    accepted: bool | None = None
    contributions: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        lines = [f"{self.source}  <->  {self.target}"]
        if self.matcher:
            verdict = "ACCEPTED" if self.accepted else "not accepted"
            lines.append(
                f"matcher {self.matcher}: match probability {self.probability:.3f} "
                f"(threshold {self.threshold:.3f}): {verdict}"
            )
        order = sorted(
            self.signals,
            key=lambda n: -abs((self.contributions or {}).get(n) or 0.0) if self.contributions else n,
        )
        lines.append(f"{'signal':<40}{'value':>10}" + (f"{'contribution':>14}" if self.contributions else ""))
        for name in order:
            value = self.signals[name]
            shown = "-" if value is None else f"{value:.4f}"
            row = f"{name:<40}{shown:>10}"
            if self.contributions is not None:
                row += f"{self.contributions.get(name, 0.0):>+14.4f}"
            lines.append(row)
        if self.contributions and "bias" in self.contributions:
            lines.append(f"{'(base rate)':<40}{'':>10}{self.contributions['bias']:>+14.4f}")
        return "\n".join(lines)


def explain_pair(
    conn: psycopg.Connection,
    source_ref: str,
    target_ref: str,
    *,
    matcher: str | None = None,
    model: str | None = None,
) -> PairExplanation:
    """Every signal of the pair SOURCE -> TARGET (CATALOG:EXTERNAL_ID each) and, with a matcher, its verdict."""
    source_catalog, source_external = parse_product_ref(source_ref)
    target_catalog, target_external = parse_product_ref(target_ref)
    source_id = find_product(conn, source_catalog, source_external)
    target_id = find_product(conn, target_catalog, target_external)
    from prodmatch.embed.lexical_refresh import refresh_lexical
    from prodmatch.store.catalogs import catalog_id

    refresh_lexical(conn)
    conn.commit()
    scorer, registered, k = None, (get_model(conn, model) if model else None), DEFAULT_K
    if matcher is not None:
        scorer, registered = load_matcher(conn, matcher)
        k = int(get_matcher(conn, matcher).trained_on.get("k") or DEFAULT_K)
    gathered = gather(
        conn,
        catalog_id(conn, source_catalog),
        catalog_id(conn, target_catalog),
        registered,
        k=k,
        source_ids=np.array([source_id], dtype=np.int64),
        extra={(source_id, target_id)},
    )
    matrix = features(gathered)
    pairs = gathered.pairs
    found = np.flatnonzero((pairs.sources == source_id) & (pairs.targets == target_id))
    if not len(found):
        raise ConfigError(f"could not build the pair {source_ref} -> {target_ref}")
    row = matrix.rows(found[:1])
    signals = {
        name: (None if np.isnan(v) else float(v)) for name, v in zip(row.names, row.values[0], strict=True)
    }
    if scorer is None:
        return PairExplanation(source_ref, target_ref, signals)
    probability = float(scorer.predict_proba(row, allow_missing=True)[0])
    contrib = scorer.contributions(row, allow_missing=True)
    contributions = {name: float(v) for name, v in zip(contrib.names, contrib.values[0], strict=True)}
    return PairExplanation(
        source_ref,
        target_ref,
        signals,
        matcher=matcher,
        probability=probability,
        threshold=float(scorer.threshold),
        accepted=probability >= scorer.threshold,
        contributions=contributions,
    )
