"""Brand signals: do two offers name the same brand, and does one offer's brand appear in the other's title.

Brands are compared after `normalize_brand` (Unicode NFKC, case folding, punctuation and spaces removed), so
"Hewlett-Packard" and "hewlett packard" agree. A coordinator may pass a stronger `normalize` (e.g. one that
transliterates Cyrillic) to every function here. Missing brands give NaN, not 0: many shops leave the column
empty, and the matcher must learn that absence is not disagreement.

A brand field holds the names `brand_names` reads from it. Marketplaces write a brand in two scripts at once
("Nike/耐克", "SHARP (シャープ)", "Samsung/삼성"): each part is a name of the brand, so "Nike/耐克" agrees with a
shop's "耐克" as with "Nike", and either name in the other offer's title counts. Parts in one script stay one
name ("AC/DC", "Dolce&Gabbana"). A placeholder that says there is no brand ("other/其他", "No brand",
"Generic", "Без бренда", "ノーブランド": `prodmatch.roles.is_no_brand`, which ingest also reads) is no brand at
all: two no-name products do not agree on a brand.
"""

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from prodmatch.roles import is_no_brand

Normalizer = Callable[[str], str]

_NOT_WORD = re.compile(r"[\W_]+")
_PARTS = re.compile(r"[/|()\[\]]+")  # after NFKC: the full-width ／ （ ） are these
_MIN_PART = 2  # a part of a brand in two scripts shorter than this (a bracketed 鞋, "shoe") is not a name


@lru_cache(maxsize=200_000)  # one brand recurs in many candidate pairs
def normalize_brand(text: str) -> str:
    """A brand as one comparable token: NFKC, case-folded, without spaces or punctuation."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=200_000)
def brand_names(text: str | None, normalize: Normalizer | None = None) -> tuple[str, ...]:
    """The names a brand field gives, each as `normalize` (default `normalize_brand`) makes it comparable:
    () for no brand or a placeholder, each part of a brand written in two scripts, else the whole field."""
    norm = normalize or normalize_brand
    text = unicodedata.normalize("NFKC", text or "")
    if is_no_brand(text):
        return ()
    parts = [p for p in (part.strip() for part in _PARTS.split(text)) if normalize_brand(p)]
    if len(parts) > 1 and len({_scripts(p) for p in parts}) > 1:
        names = [norm(p) for p in parts if len(normalize_brand(p)) >= _MIN_PART and not is_no_brand(p)]
        names = [n for n in names if n]
        if names:
            return tuple(dict.fromkeys(names))
    whole = norm(text)
    return (whole,) if whole else ()


def names_agree(left: tuple[str, ...], right: tuple[str, ...]) -> float:
    """1 where two brands' names meet (equal, or one the other's prefix: "hp" / "hpinc"), 0 where they do not,
    NaN where either has none."""
    if not left or not right:
        return float("nan")
    return float(any(_agree(a, b) for a in left for b in right))


def _agree(a: str, b: str) -> bool:
    # Containment counts as equal: "hp" vs "hpinc", "elitescreens" vs "elite"
    return a == b or (min(len(a), len(b)) >= 2 and (a.startswith(b) or b.startswith(a)))


def _scripts(text: str) -> frozenset[str]:
    """The scripts of a text's letters (the first word of their Unicode names: LATIN, CJK, KATAKANA, ...)."""
    return frozenset(unicodedata.name(ch, "?").split(" ", 1)[0] for ch in text if ch.isalpha())


def brand_equal(
    left_brands: Sequence[str | None],
    right_brands: Sequence[str | None],
    *,
    normalize: Normalizer | None = None,
) -> np.ndarray:
    """1 where both brands are given and a name of one is a name of the other, 0 where they differ, NaN where
    one is missing (or a placeholder)."""
    out = np.full(len(left_brands), np.nan, dtype=np.float32)
    for i, (a, b) in enumerate(zip(left_brands, right_brands, strict=True)):
        out[i] = names_agree(brand_names(a, normalize), brand_names(b, normalize))
    return out


def brand_in_other_title(
    left_brands: Sequence[str | None],
    left_titles: Sequence[str | None],
    right_brands: Sequence[str | None],
    right_titles: Sequence[str | None],
    *,
    normalize: Normalizer | None = None,
) -> np.ndarray:
    """Whether a name of one offer's brand appears in the other offer's title (1/0); NaN where no brand is known.

    Catches the common case of a shop that leaves the brand column empty but writes the brand in its title.
    """
    norm = normalize or normalize_brand
    out = np.full(len(left_brands), np.nan, dtype=np.float32)
    for i, (lb, lt, rb, rt) in enumerate(
        zip(left_brands, left_titles, right_brands, right_titles, strict=True)
    ):
        found = []
        for brand, other_title in ((lb, rt), (rb, lt)):
            names = brand_names(brand, normalize)
            if names:
                title = norm(other_title or "")
                found.append(any(name in title for name in names))
        if found:
            out[i] = float(any(found))
    return out
