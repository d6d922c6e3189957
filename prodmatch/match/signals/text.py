"""Title signals: word overlap, model-like tokens, and whether the numbers with units in two titles agree.

Titles are compared as sets of tokens after Unicode NFKC and case folding. Besides plain overlap (Jaccard and
containment, the latter for a short title inside a long one), two cues carry most of the weight in product
matching and are cheap to compute here:

* model tokens, words that mix letters and digits ("lx350h", "ps-lx350h" -> "pslx350h"), compared without
  their inner punctuation;
* numbers with units, grouped by what they measure: "500GB" and "1TB" are both storage sizes that disagree,
  a strong sign of two variants of one product line, while "500GB" vs "15.6in" says nothing.

Any script: words glued at a change of script or of Cyrillic case are split first ("поверхностейBath"), and a
run of a script written without spaces (Han, Kana, Hangul, Thai) counts as its characters and its character
bigrams, the lexical space's scheme (`prodmatch.embed.lexical.unspaced_terms`), so title overlap works for
Chinese titles. Units written in Chinese after a number ("42码" a size, "30厘米", "500毫升", "1公斤") and Russian
words ("литр", "г") are measures too; one quantity in two units is one value in the dimension's base unit
("750 мл" = "0,75 л", "0,6 кг" = "600 г").

Each function takes two aligned sequences of texts and returns one float32 column; NaN means "no evidence"
(e.g. neither title has a number with a unit of a shared kind). Tokenisation is memoised per distinct text,
because a product appears in many candidate pairs.
"""

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from prodmatch.embed.lexical import (
    UNIT_WORDS,
    UNSPACED_CHARACTERS,
    UNSPACED_UNIT_PATTERN,
    UNSPACED_UNITS,
    sizes_as_units,
    split_glued,
    unspaced_terms,
)
from prodmatch.markup import plain

_UNSPACED = UNSPACED_CHARACTERS
_TERM = re.compile(f"[{_UNSPACED}]+|[^\\W{_UNSPACED}]+")
_UNSPACED_RUN = re.compile(f"[{_UNSPACED}]+")
_CHUNK = re.compile(r"[^\s,;()\[\]|\"']+")
_INNER_PUNCT = re.compile(r"[-./_+]")
_HAS_DIGIT = re.compile(r"\d")
_HAS_ALPHA = re.compile(r"[^\W\d_]")

# Unit spelling -> (dimension, factor to the dimension's base unit), from the lexical space's own table of unit
# words (`prodmatch.embed.lexical.UNIT_WORDS`: English, Russian and the words European shops write out).
_UNITS: dict[str, tuple[str, float]] = {
    spelling: (dimension, factor) for _, dimension, factor, spellings in UNIT_WORDS for spelling in spellings
}
# "g" alone is ambiguous (gram vs the "8g" some shops write for 8 GB); for electronics GB is far more common.
_UNITS["g"] = ("bytes", 1.0)
# A unit written in a script without spaces (`prodmatch.embed.lexical.UNSPACED_UNITS`: "毫升", "センチ", "리터",
# "มล.") -> the dimension and factor of its canonical unit; 克 is grams, 码 a shoe or clothing size.
_CANONICAL_DIMENSIONS = {canonical: (dimension, factor) for canonical, dimension, factor, _ in UNIT_WORDS}
_CANONICAL_DIMENSIONS["size"] = ("size", 1.0)
_UNSPACED_UNITS = {unit: _CANONICAL_DIMENSIONS[canonical] for unit, canonical in UNSPACED_UNITS.items()}
_UNIT_ALTERNATION = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
# A number starts after a non-word character or a character of an unspaced script ("男鞋42码"); a unit ends
# before one. Chinese units need no end (the next character is glued on), except words that start like one:
# 升级 (upgrade), 克拉 (carat), 米白 / 米色.. (beige).
_BEFORE = f"(?:(?<![\\w.])|(?<=[{_UNSPACED}]))"
_AFTER = f"(?:(?!\\w)|(?=[{_UNSPACED}]))"
_NUMBER_UNIT = re.compile(
    rf"{_BEFORE}(\d+(?:[.,]\d+)?)\s?(?:({_UNIT_ALTERNATION}){_AFTER}"
    f"|({UNSPACED_UNIT_PATTERN}))"
)
_NUMBER = re.compile(rf"{_BEFORE}\d+(?:[.,]\d+)?{_AFTER}")
_YEAR = re.compile(r"(?:19|20)\d\d")

Column = np.ndarray


@lru_cache(maxsize=200_000)  # each title signal starts from it
def normalize_title(text: str | None) -> str:
    """NFKC, glued words split (`split_glued`) and case folding: the form every title signal starts from."""
    return split_glued(sizes_as_units(unicodedata.normalize("NFKC", plain(text or "")))).casefold()


def token_jaccard(left: Sequence[str | None], right: Sequence[str | None]) -> Column:
    """|A ∩ B| / |A ∪ B| of the word sets; NaN where either text has no word."""
    return _pairwise(left, right, _words, _jaccard)


def token_containment(left: Sequence[str | None], right: Sequence[str | None]) -> Column:
    """|A ∩ B| / min(|A|, |B|): high when a short title is contained in a long one."""
    return _pairwise(left, right, _words, _containment)


def model_token_jaccard(left: Sequence[str | None], right: Sequence[str | None]) -> Column:
    """Jaccard of tokens mixing letters and digits (inner punctuation removed); NaN where a side has none."""
    return _pairwise(left, right, _model_tokens, _jaccard)


def model_token_containment(left: Sequence[str | None], right: Sequence[str | None]) -> Column:
    """Containment of model-like tokens; also matches a token of one side found inside a token of the other."""
    return _pairwise(left, right, _model_tokens, _model_containment)


def numbers_agreement(left: Sequence[str | None], right: Sequence[str | None]) -> tuple[Column, Column]:
    """(agree, conflict) for numbers with units, per measured dimension present in both titles.

    agree: mean over shared dimensions of the Jaccard of the values; conflict: 1 if any shared dimension has
    no value in common (500 GB vs 1 TB), else 0. Both NaN where no dimension is shared.
    """
    agree = np.full(len(left), np.nan, dtype=np.float32)
    conflict = np.full(len(left), np.nan, dtype=np.float32)
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        agree[i], conflict[i] = measures_agreement(_measures(a or ""), _measures(b or ""))
    return agree, conflict


def measures_agreement(a: dict[str, frozenset], b: dict[str, frozenset]) -> tuple[float, float]:
    """(agree, conflict) of two titles' measures (`_measures`: dimension -> values); NaN, NaN if none shared."""
    shared = a.keys() & b.keys()
    if not shared:
        return np.nan, np.nan
    return float(np.mean([_jaccard(a[d], b[d]) for d in shared])), float(
        any(not (a[d] & b[d]) for d in shared)
    )


def plain_number_jaccard(left: Sequence[str | None], right: Sequence[str | None]) -> Column:
    """Jaccard of the bare numbers in two titles; NaN where a side has none."""
    return _pairwise(left, right, _numbers, _jaccard)


def length_ratio(left: Sequence[str | None], right: Sequence[str | None]) -> Column:
    """min/max of the word counts: two listings of one product tend to be written at similar length."""
    return _pairwise(left, right, _words, lambda a, b: min(len(a), len(b)) / max(len(a), len(b)))


def _pairwise(
    left: Sequence[str | None],
    right: Sequence[str | None],
    tokens: Callable[[str], frozenset],
    compare: Callable[[frozenset, frozenset], float],
) -> Column:
    out = np.full(len(left), np.nan, dtype=np.float32)
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        ta, tb = tokens(a or ""), tokens(b or "")
        if ta and tb:
            out[i] = compare(ta, tb)
    return out


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b)


def _containment(a: frozenset, b: frozenset) -> float:
    return len(a & b) / min(len(a), len(b))


def _model_containment(a: frozenset, b: frozenset) -> float:
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    joined = " ".join(large)
    # "lx350h" inside "pslx350hb" counts: shops add prefixes and colour suffixes to one model number
    return sum(1 for t in small if t in large or (len(t) >= 4 and t in joined)) / len(small)


@lru_cache(maxsize=200_000)
def _words(text: str) -> frozenset:
    words = _TERM.findall(normalize_title(text))
    if text.isascii():
        return frozenset(words)
    out = set()
    for word in words:
        if _UNSPACED_RUN.fullmatch(word):
            characters, bigrams = unspaced_terms(word)
            out.update(characters, bigrams)
        else:
            out.add(word)
    return frozenset(out)


@lru_cache(maxsize=200_000)
def _model_tokens(text: str) -> frozenset:
    out = set()
    # a code glued to Chinese text ("篮球鞋F36283") is a chunk of its own
    for chunk in _CHUNK.findall(_UNSPACED_RUN.sub(" ", normalize_title(text))):
        token = _INNER_PUNCT.sub("", chunk.strip(".-/_+:"))
        looks_like_code = _HAS_DIGIT.search(token) and (_HAS_ALPHA.search(token) or len(token) >= 6)
        # "500gb" is a size, which numbers_agreement compares
        if len(token) >= 4 and looks_like_code and not _NUMBER_UNIT.fullmatch(chunk):
            out.add(token)
    return frozenset(out)


@lru_cache(maxsize=200_000)
def _numbers(text: str) -> frozenset:
    return frozenset(float(n.replace(",", ".")) for n in _NUMBER.findall(normalize_title(text)))


def quantity(text: str) -> tuple[str, float] | None:
    """(dimension, value in its base unit) when `text` is one number with a unit and nothing else ("0,5 л" ->
    ("volume", 500.0)); None for anything more ("低跟(1-3cm)", a heel-height class, is not 3 cm)."""
    found = _measures(text)
    normalised = normalize_title(text).strip()
    if len(found) != 1 or not _NUMBER_UNIT.fullmatch(normalised):
        return None
    ((dimension, values),) = found.items()
    return (dimension, next(iter(values))) if len(values) == 1 else None


@lru_cache(maxsize=200_000)
def _measures(text: str) -> dict[str, frozenset]:
    found: dict[str, set] = {}
    for number, unit, unspaced_unit in _NUMBER_UNIT.findall(normalize_title(text)):
        if unit == "г" and _YEAR.fullmatch(number):
            continue  # "2019 г.": a year (Russian "год"), not grams
        dimension, factor = _UNITS[unit] if unit else _UNSPACED_UNITS[unspaced_unit]
        value = round(float(number.replace(",", ".")) * factor, 6)
        found.setdefault(dimension, set()).add(value)
    return {d: frozenset(v) for d, v in found.items()}
