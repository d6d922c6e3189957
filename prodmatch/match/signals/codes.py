"""Code signals: do two offers share a product code (GTIN/EAN/UPC, MPN, model number), or name different ones.

Codes arrive already extracted and normalised (see prodmatch.embed.codes), as strings optionally prefixed by
their kind ("gtin:04718755065736", "mpn:pslx350h"); codes without a prefix are of kind "code". Agreement is a
shared code. Conflict is two offers that both carry codes of one kind and share none: two different GTINs are
nearly proof of two products, while one shop's SKU next to another's MPN proves nothing, hence "of one kind".
A coordinator may pass the embed package's own `compare(a, b) -> (agree, conflict)` instead of ours.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from prodmatch.markup import plain

_NOT_ALNUM = re.compile(r"[\W_]+")

Compare = Callable[[Sequence[str], Sequence[str]], tuple[bool, bool]]


def code_signals(
    left_codes: Sequence[Sequence[str] | None],
    right_codes: Sequence[Sequence[str] | None],
    *,
    compare: Compare | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(agree, conflict) columns, 1/0 per pair; both NaN where either offer has no code."""
    compare = compare or compare_codes
    agree = np.full(len(left_codes), np.nan, dtype=np.float32)
    conflict = np.full(len(left_codes), np.nan, dtype=np.float32)
    for i, (a, b) in enumerate(zip(left_codes, right_codes, strict=True)):
        if a and b:
            agree[i], conflict[i] = compare(a, b)
    return agree, conflict


def searched_text(product: Mapping[str, object]) -> str:
    """The text an offer's codes are looked for in (`code_in_other_text`): its title and the start of its
    description (read without markup), where shops put the model number; the rest is prose."""
    return f"{product.get('title') or ''} {plain(str(product.get('description') or ''))[:300]}"


def code_in_other_text(
    left_codes: Sequence[Sequence[str] | None],
    left_texts: Sequence[str | None],
    right_codes: Sequence[Sequence[str] | None],
    right_texts: Sequence[str | None],
) -> np.ndarray:
    """1 where a code of one offer is written somewhere in the other offer's text; NaN where neither has a code.

    Catches what exact agreement misses: one shop fills an MPN column, the other only writes the model number
    in its title ("... Turntable PS-LX350H"). Texts and codes are compared as lower-case letters and digits
    only, and codes shorter than MIN_CODE_IN_TEXT are ignored, as they occur inside unrelated words.
    """
    out = np.full(len(left_codes), np.nan, dtype=np.float32)
    for i, (lc, lt, rc, rt) in enumerate(zip(left_codes, left_texts, right_codes, right_texts, strict=True)):
        if not lc and not rc:
            continue
        out[i] = float(_written_in(lc or (), rt) or _written_in(rc or (), lt))
    return out


MIN_CODE_IN_TEXT = 5


def _written_in(codes: Sequence[str], text: str | None) -> bool:
    squashed = _squash(text or "")
    return any(form in squashed for form in written_forms(codes))


def written_forms(codes: Sequence[str]) -> list[str]:
    """How `codes` would be written in a text (squashed like `_squash`), those long enough to look for."""
    # A GTIN is stored padded to 14 digits; a title writes it as EAN-13 or UPC-A, without the leading zeros
    forms = (_squash(c.split(":")[-1]).lstrip("0") if c.startswith("gtin:") else _squash(c) for c in codes)
    return [form for form in forms if len(form) >= MIN_CODE_IN_TEXT]


@lru_cache(maxsize=200_000)  # a product's text recurs in each of its candidate pairs
def _squash(text: str) -> str:
    return _NOT_ALNUM.sub("", text.casefold())


def compare_codes(a: Sequence[str], b: Sequence[str]) -> tuple[bool, bool]:
    """(share a code, both have codes of one kind and share none)."""
    set_a, set_b = set(a), set(b)
    if set_a & set_b:
        return True, False
    return False, bool(_kinds(set_a) & _kinds(set_b))


def _kinds(codes: set[str]) -> set[str]:
    return {c.split(":", 1)[0] if ":" in c else "code" for c in codes}
