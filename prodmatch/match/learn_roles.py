"""Learn attribute roles from data: keys of two catalogues whose values agree on likely matches, not on random pairs.

No labels are needed. The likely matches are the pairs that the lexical space alone makes obvious: each source
product's best lexical candidate when the two are each other's best (mutual) and the best beats the second best
by `MARGIN`. For every pair of attribute keys (one per catalogue) this counts how often their values are equal on
those pairs, against how often they would be equal on random pairs (the collision probability of the two value
distributions over all products). Keys that agree far more often than chance (`MIN_LIFT`) and often enough
(`MIN_AGREEMENT`), on keys with many distinct values (`MIN_DISTINCT`), are suggested. A key that already has
a role (built in or the catalogue's) on one side keeps it; otherwise the suggestion is ``brand`` when the values
equal the other side's brand field, ``gtin`` when they are GTINs, ``code`` when nearly every product has its own
value, ``identifying`` otherwise. `apply` stores the suggestions that change a role with the catalogue(s) whose
key lacks it (`prodmatch.store.catalogs.set_attribute_roles`). Neighbours: `prodmatch.roles` (the roles),
`prodmatch.match.hybrid.lexical_candidates` (the candidates).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import psycopg

from prodmatch import roles
from prodmatch.embed.codes import normalize_gtin
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.match.hybrid import lexical_candidates
from prodmatch.store.catalogs import attribute_roles, catalog_id, set_attribute_roles

MARGIN = 0.05  # the best lexical candidate beats the second by this much cosine
MAX_PAIRS = 5000  # likely matches examined (a sample when there are more)
MIN_PAIRS = 5  # likely matches where both keys are filled in
MIN_AGREEMENT = 0.4  # share of those pairs with equal values
MIN_LIFT = 5.0  # agreement on likely matches / agreement on random pairs
MIN_DISTINCT = 10  # distinct values of the key in each catalogue
CODE_DISTINCT_SHARE = 0.3  # distinct values / products that fill the key, from which a key is a code
BRAND_SHARE = 0.5  # share of likely matches where the value equals the other side's brand field


@dataclass(frozen=True)
class KeyEvidence:
    """One pair of keys (source's, target's) and why they look like the same role."""

    source_key: str
    target_key: str
    role: str
    pairs: int  # likely matches where both keys are filled in
    agreement: float  # share of those with equal values
    random_agreement: float  # the same on random pairs (collision probability)
    source_distinct: int
    target_distinct: int
    source_role: str | None  # the role it has now
    target_role: str | None
    suggested: bool  # meets the thresholds

    @property
    def lift(self) -> float:
        return self.agreement / max(self.random_agreement, 1e-6)

    @property
    def changes(self) -> bool:
        return self.suggested and (self.source_role != self.role or self.target_role != self.role)


@dataclass(frozen=True)
class LearnedRoles:
    """Suggested attribute roles of two catalogues, with the evidence, and what was stored (`applied`)."""

    source: str
    target: str
    likely_matches: int
    evidence: list[KeyEvidence]
    applied: bool

    @property
    def suggestions(self) -> list[KeyEvidence]:
        return [e for e in self.evidence if e.suggested]

    def to_dict(self) -> dict:
        out = asdict(self)
        for item, evidence in zip(out["evidence"], self.evidence, strict=True):
            item["lift"] = round(evidence.lift, 2)
        return out

    def to_text(self) -> str:
        lines = [
            f"{self.source} vs {self.target}: {self.likely_matches:,} likely matches (mutual best lexical "
            f"candidates, margin >= {MARGIN})"
        ]
        if not self.evidence:
            lines.append("  no attribute keys agree on them more often than on random pairs")
            return "\n".join(lines)
        lines.append(
            f"  {'source key':<20} {'target key':<20} {'role':<12} {'pairs':>6} {'agree':>6} {'random':>7}"
            f" {'lift':>6} {'distinct':>13}  now"
        )
        for e in self.evidence:
            now = f"{e.source_role or '-'}/{e.target_role or '-'}"
            mark = "" if e.suggested else "  (below thresholds)"
            lines.append(
                f"  {e.source_key:<20} {e.target_key:<20} {e.role:<12} {e.pairs:>6} {e.agreement:>6.2f}"
                f" {e.random_agreement:>7.3f} {min(e.lift, 9999):>6.1f} {e.source_distinct:>6}/{e.target_distinct:<6}"
                f"  {now}{mark}"
            )
        changes = [e for e in self.evidence if e.changes]
        if self.applied:
            lines.append(f"  stored {len(changes)} role(s) with the catalogue(s) whose key lacked it")
        elif changes:
            lines.append(
                f"  {len(changes)} suggestion(s) change a role: --apply stores them with both catalogues"
            )
        return "\n".join(lines)


def learn_roles(
    conn: psycopg.Connection, source: str, target: str, *, apply: bool = False, seed: int = 0
) -> LearnedRoles:
    """Suggest attribute roles of `source` and `target` from their likely matches (see the module docstring)."""
    source_id, target_id = catalog_id(conn, source), catalog_id(conn, target)
    refresh_lexical(conn)
    pairs = _likely_matches(conn, source_id, target_id)
    if len(pairs) > MAX_PAIRS:
        pairs = random.Random(seed).sample(pairs, MAX_PAIRS)
    source_products = _products(conn, source_id)
    target_products = _products(conn, target_id)
    source_roles = roles.normalize_roles(attribute_roles(conn, source_id))
    target_roles = roles.normalize_roles(attribute_roles(conn, target_id))
    evidence = _evidence(pairs, source_products, target_products, source_roles, target_roles)
    if apply:
        changes = [e for e in evidence if e.changes]
        source_changes = {e.source_key: e.role for e in changes if e.source_role != e.role}
        target_changes = {e.target_key: e.role for e in changes if e.target_role != e.role}
        if source_changes:
            set_attribute_roles(conn, source_id, source_changes)
        if target_changes:
            set_attribute_roles(conn, target_id, target_changes)
    return LearnedRoles(source, target, len(pairs), evidence, apply)


# --- helpers ----------------------------------------------------------------------------------------------


def _likely_matches(conn: psycopg.Connection, source_id: int, target_id: int) -> list[tuple[int, int]]:
    forward = lexical_candidates(conn, source_id, target_id, 2)
    backward = lexical_candidates(conn, target_id, source_id, 1)
    # backward's sources are target products, its targets source products
    best_source_of = dict(zip(backward.sources.tolist(), backward.targets.tolist(), strict=True))
    by_source: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for s, t, score in zip(
        forward.sources.tolist(), forward.targets.tolist(), forward.score.tolist(), strict=True
    ):
        by_source[s].append((score, t))
    out = []
    for s, candidates in by_source.items():
        candidates.sort(reverse=True)
        best, t = candidates[0]
        second = candidates[1][0] if len(candidates) > 1 else 0.0
        if best - second >= MARGIN and best_source_of.get(t) == s:
            out.append((s, t))
    return sorted(out)


def _products(conn: psycopg.Connection, catalog: int) -> dict[int, tuple[str, dict[str, str]]]:
    """(normalised brand, {attribute key: normalised value}) by product id."""
    rows = conn.execute(
        "SELECT id, brand, attributes FROM prodmatch.products WHERE catalog_id = %s", (catalog,)
    ).fetchall()
    return {pid: (_value(brand or ""), _values(attributes or {})) for pid, brand, attributes in rows}


def _values(attributes: dict) -> dict[str, str]:
    out = {}
    for key, value in attributes.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = _value(str(value))
            if text:
                out[key] = text
    return out


def _value(text: str) -> str:
    return roles.normalize_value(text)


def _evidence(
    pairs: list[tuple[int, int]],
    source_products: dict[int, tuple[str, dict[str, str]]],
    target_products: dict[int, tuple[str, dict[str, str]]],
    source_roles: dict[str, str],
    target_roles: dict[str, str],
) -> list[KeyEvidence]:
    both: Counter = Counter()
    equal: Counter = Counter()
    brand_equal: Counter = Counter()  # (side, key): value equals the other side's brand
    brand_seen: Counter = Counter()
    for s, t in pairs:
        s_brand, s_values = source_products[s]
        t_brand, t_values = target_products[t]
        by_value: dict[str, list[str]] = defaultdict(list)
        for key, value in t_values.items():
            by_value[value].append(key)
        for ks, value in s_values.items():
            for kt in t_values:
                both[ks, kt] += 1
            for kt in by_value.get(value, ()):
                equal[ks, kt] += 1
        for side, values, other_brand in (("s", s_values, t_brand), ("t", t_values, s_brand)):
            if other_brand:
                for key, value in values.items():
                    brand_seen[side, key] += 1
                    brand_equal[side, key] += value == other_brand
    s_counts = _value_counts(source_products)
    t_counts = _value_counts(target_products)
    found = []
    for (ks, kt), n in both.items():
        if n < MIN_PAIRS or not equal[ks, kt]:
            continue
        agreement = equal[ks, kt] / n
        chance = _collision(s_counts[ks], t_counts[kt])
        s_role, t_role = roles.role_of(ks, source_roles), roles.role_of(kt, target_roles)
        if _switched_off(ks, source_roles) or _switched_off(kt, target_roles):
            continue
        # a key that has a role keeps it; the data decides for keys that have none
        role = s_role or t_role or _role(ks, kt, s_counts, t_counts, brand_equal, brand_seen)
        s_distinct, t_distinct = len(s_counts[ks]), len(t_counts[kt])
        suggested = (
            agreement >= MIN_AGREEMENT
            and agreement >= MIN_LIFT * chance
            and min(s_distinct, t_distinct) >= MIN_DISTINCT
        )
        if agreement >= 2 * chance:  # the rest is not even weak evidence
            found.append(
                KeyEvidence(
                    ks, kt, role, n, round(agreement, 4), round(chance, 4), s_distinct, t_distinct, s_role, t_role,
                    suggested,
                )
            )  # fmt: skip
    found.sort(key=lambda e: (not e.suggested, -e.agreement, -e.lift, e.source_key, e.target_key))
    # one partner per key: the best-agreeing one
    seen_s, seen_t, out = set(), set(), []
    for e in found:
        if e.source_key in seen_s or e.target_key in seen_t:
            continue
        seen_s.add(e.source_key)
        seen_t.add(e.target_key)
        out.append(e)
    return out


def _value_counts(products: dict[int, tuple[str, dict[str, str]]]) -> dict[str, Counter]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for _, values in products.values():
        for key, value in values.items():
            counts[key][value] += 1
    return counts


def _collision(a: Counter, b: Counter) -> float:
    """Probability that a random value of `a` equals a random value of `b` (each drawn by frequency)."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return float(sum(count * large.get(value, 0) for value, count in small.items())) / (na * nb)


def _switched_off(key: str, overrides: dict[str, str]) -> bool:
    normalised = roles.normalize_key(key)
    return overrides.get(normalised) == roles.NONE or (
        normalised not in overrides and roles.builtin_role(key) == roles.NONE
    )


def _role(
    ks: str,
    kt: str,
    s_counts: dict[str, Counter],
    t_counts: dict[str, Counter],
    brand_equal: Counter,
    brand_seen: Counter,
) -> str:
    for side, key in (("s", ks), ("t", kt)):
        if brand_seen[side, key] and brand_equal[side, key] / brand_seen[side, key] >= BRAND_SHARE:
            return "brand"
    values = list(s_counts[ks]) + list(t_counts[kt])
    if values and np.mean([normalize_gtin(v) is not None for v in values]) >= 0.8:
        return "gtin"
    filled = sum(s_counts[ks].values()) + sum(t_counts[kt].values())
    distinct = len(s_counts[ks]) + len(t_counts[kt])
    return "code" if distinct >= CODE_DISTINCT_SHARE * filled else "identifying"
