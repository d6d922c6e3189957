"""Attribute signal: of the attributes both offers fill in (colour, size, model...), how many have equal values.

Attributes are the catalogue columns beyond the canonical ones (prodmatch keeps them as a JSON object per
product). Keys are compared case-folded and values after NFKC, case folding and removal of spaces and
punctuation, so "Space Grey" equals "space-grey". Offers of two shops rarely share keys, hence NaN (no
evidence) where no key is shared, and a minimum length of values is not imposed: "M" vs "L" is a real clash.
"""

import re
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

_NOT_WORD = re.compile(r"[\W_]+")


def attribute_agreement(
    left_attributes: Sequence[Mapping[str, object] | None],
    right_attributes: Sequence[Mapping[str, object] | None],
) -> np.ndarray:
    """Share of the attribute keys filled in on both sides whose values are equal; NaN where none is shared."""
    out = np.full(len(left_attributes), np.nan, dtype=np.float32)
    for i, (a, b) in enumerate(zip(left_attributes, right_attributes, strict=True)):
        out[i] = agreement(_normalised(a), _normalised(b))
    return out


def agreement(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    """Share of the keys of two normalised attribute mappings with equal values; NaN where none is shared."""
    shared = a.keys() & b.keys()
    if not shared:
        return np.nan
    return sum(a[k] == b[k] for k in shared) / len(shared)


def _normalised(attributes: Mapping[str, object] | None) -> dict[str, str]:
    out = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = _NOT_WORD.sub("", unicodedata.normalize("NFKC", str(value)).casefold())
            if text:
                out[key.strip().casefold()] = text
    return out
