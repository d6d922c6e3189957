"""Brand signals: do two offers name the same brand, and does one offer's brand appear in the other's title.

Brands are compared after `normalize_brand` (Unicode NFKC, case folding, punctuation and spaces removed), so
"Hewlett-Packard" and "hewlett packard" agree. A coordinator may pass a stronger `normalize` (e.g. one that
transliterates Cyrillic) to every function here. Missing brands give NaN, not 0: many shops leave the column
empty, and the matcher must learn that absence is not disagreement.
"""

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

Normalizer = Callable[[str], str]

_NOT_WORD = re.compile(r"[\W_]+")


@lru_cache(maxsize=200_000)  # one brand or title recurs in many candidate pairs
def normalize_brand(text: str) -> str:
    """A brand as one comparable token: NFKC, case-folded, without spaces or punctuation."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def brand_equal(
    left_brands: Sequence[str | None],
    right_brands: Sequence[str | None],
    *,
    normalize: Normalizer | None = None,
) -> np.ndarray:
    """1 where both brands are given and equal after normalisation, 0 where they differ, NaN where one is missing."""
    norm = normalize or normalize_brand
    out = np.full(len(left_brands), np.nan, dtype=np.float32)
    for i, (a, b) in enumerate(zip(left_brands, right_brands, strict=True)):
        a, b = norm(a or ""), norm(b or "")
        if a and b:
            # Containment counts as equal: "hp" vs "hpinc", "elitescreens" vs "elite"
            out[i] = float(a == b or (min(len(a), len(b)) >= 2 and (a.startswith(b) or b.startswith(a))))
    return out


def brand_in_other_title(
    left_brands: Sequence[str | None],
    left_titles: Sequence[str | None],
    right_brands: Sequence[str | None],
    right_titles: Sequence[str | None],
    *,
    normalize: Normalizer | None = None,
) -> np.ndarray:
    """Whether a known brand of one offer appears in the other offer's title (1/0); NaN where no brand is known.

    Catches the common case of a shop that leaves the brand column empty but writes the brand in its title.
    """
    norm = normalize or normalize_brand
    out = np.full(len(left_brands), np.nan, dtype=np.float32)
    for i, (lb, lt, rb, rt) in enumerate(
        zip(left_brands, left_titles, right_brands, right_titles, strict=True)
    ):
        found = []
        for brand, other_title in ((lb, rt), (rb, lt)):
            key = norm(brand or "")
            if key:
                found.append(key in norm(other_title or ""))
        if found:
            out[i] = float(any(found))
    return out
