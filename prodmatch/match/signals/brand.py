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

Names in scripts that share no letters ("ナイキ" and "Nike", "耐克" and "Adidas") cannot be compared by their
spelling: such a pair gets NaN, no evidence, rather than a brand clash that a Japanese shop would meet on
every true pair against an English one. What tells two scripts' names apart or together is a name's *aliases*
(`brand_aliases`): its names in other scripts, learned from the brand fields of the catalogues being matched
that write two scripts at once, and those of common brands prodmatch ships (`known_aliases`: Nike, 耐克, ナイキ,
나이키, Найк). Where a marketplace writes "Nike/耐克" in its offers, a shop's "耐克" agrees with another's "Nike",
and disagrees with "Adidas". An offer carries its brand's aliases as "brand_aliases" (`offer_names`), as the
reader of the catalogues attaches them.
"""

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources

import numpy as np

from prodmatch.markup import plain
from prodmatch.roles import is_no_brand, normalize_value

Normalizer = Callable[[str], str]

_PARTS = re.compile(r"[/|()\[\]]+")  # after NFKC: the full-width ／ （ ） are these
_MIN_PART = 2  # a part of a brand in two scripts shorter than this (a bracketed 鞋, "shoe") is not a name
# A name's alias in another script counts where fields write the two together at least this share as often as
# the name's most frequent alias in that script: one offer's "Nike/阿迪达斯" does not make Nike and Adidas one
ALIAS_SHARE = 0.2
# Two brand names are aliases where at least this many rare codes (`coded_aliases`) join their offers, a
# code being rare where at most RARE_CODE offers of the catalogues carry it (a model number, not a "USB3")
MIN_CODED_ALIAS = 2
RARE_CODE = 6
# What a brand field that writes two scripts at once looks like, for a reader that selects such fields (SQL)
TWO_SCRIPT_FIELD = r"[/|()\[\]／｜（）［］]"


@lru_cache(maxsize=200_000)  # one brand (or title) recurs in many candidate pairs
def normalize_brand(text: str) -> str:
    """A brand as one comparable token: NFKC, case-folded, without spaces or punctuation (as an attribute
    value is compared: `prodmatch.roles.normalize_value`)."""
    return normalize_value(text)


@lru_cache(maxsize=200_000)
def brand_names(text: str | None, normalize: Normalizer | None = None) -> tuple[str, ...]:
    """The names a brand field gives, each as `normalize` (default `normalize_brand`) makes it comparable:
    () for no brand or a placeholder, each part of a brand written in two scripts, else the whole field."""
    norm = normalize or normalize_brand
    text = unicodedata.normalize("NFKC", plain(text or ""))
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
    """1 where two brands' names meet (equal, or one the other's prefix: "hp" / "hpinc"), 0 where they do not
    and two of them share a script, NaN where either has none or no two share a script."""
    if not left or not right:
        return float("nan")
    if any(_agree(a, b) for a in left for b in right):
        return 1.0
    return 0.0 if any(comparable(a, b) for a in left for b in right) else float("nan")


def offer_names(
    brand: str | None, aliases: Sequence[str] | None = None, normalize: Normalizer | None = None
) -> tuple[str, ...]:
    """An offer's brand names (`brand_names`) and their aliases in other scripts (`brand_aliases`)."""
    names = brand_names(brand, normalize)
    return tuple(dict.fromkeys((*names, *aliases))) if names and aliases else names


def brand_aliases(
    fields: Iterable[tuple[str | None, int]], normalize: Normalizer | None = None
) -> dict[str, tuple[str, ...]]:
    """Each brand name's names in other scripts, from (brand field, offers writing it) of the catalogues being
    matched: a field that writes two scripts at once ("Nike/耐克") makes its names aliases of one another.
    Within each other script a name keeps the aliases written beside it at least ALIAS_SHARE as often as
    its most frequent one there."""
    return _aliases_of_groups((brand_names(field, normalize), offers) for field, offers in fields)


def coded_aliases(
    pairs: Iterable[tuple[str | None, str | None, int]], normalize: Normalizer | None = None
) -> dict[str, tuple[str, ...]]:
    """Brand aliases from (brand, brand, rare codes) of two catalogues' offers that carry one rare product code
    (a maker's model or article number: `TWK3A011` in both), every such pair of brands counted, the same name
    on both sides too. Two names that do not already agree are aliases where MIN_CODED_ALIAS codes or more join
    them and each is, for the other, at least ALIAS_SHARE as frequent a partner as its most frequent one:
    `双星` is `Doublestar` where their offers share model numbers; a brand whose offers mostly meet their own
    name takes no name that two codes join to it by chance, and a maker of compatible parts that writes a big
    brand's codes (`NV Print` and `HP`'s `CE285A`) is not that brand, whose offers meet `HP` far more often."""
    partners: dict[str, dict[str, int]] = {}
    for left, right, codes in pairs:
        for a in brand_names(left, normalize):
            for b in brand_names(right, normalize):
                for one, other in ((a, b), (b, a)):
                    counts = partners.setdefault(one, {})
                    counts[other] = counts.get(other, 0) + int(codes)
    top = {name: max(counts.values()) for name, counts in partners.items()}
    out: dict[str, list[str]] = {}
    for name, counts in partners.items():
        for other, n in counts.items():
            if (
                n >= MIN_CODED_ALIAS
                and n >= ALIAS_SHARE * top[name]
                and n >= ALIAS_SHARE * top[other]
                and not _agree(name, other)
            ):
                out.setdefault(name, []).append(other)
    return {name: tuple(sorted(others)) for name, others in out.items()}


def _aliases_of_groups(groups: Iterable[tuple[tuple[str, ...], int]]) -> dict[str, tuple[str, ...]]:
    together: dict[str, dict[str, int]] = {}
    for names, offers in groups:
        for a in names:
            for b in names:
                if not comparable(a, b):
                    partners = together.setdefault(a, {})
                    partners[b] = partners.get(b, 0) + int(offers)
    out = {}
    for name, partners in together.items():
        top: dict[frozenset[str], int] = {}
        for partner, n in partners.items():
            top[_scripts(partner)] = max(top.get(_scripts(partner), 0), n)
        out[name] = tuple(sorted(p for p, n in partners.items() if n >= ALIAS_SHARE * top[_scripts(p)]))
    return out


@lru_cache(maxsize=8)
def known_aliases(normalize: Normalizer | None = None) -> dict[str, tuple[str, ...]]:
    """Each name of the common brands prodmatch ships in several scripts (``prodmatch/data/brand_names.json``:
    Nike, 耐克, ナイキ, 나이키, Найк) -> the brand's other names, each as `brand_names` gives it: what tells a
    shop's ナイキ from Adidas, and joins it to Nike, before any catalogue writes the two together."""
    document = json.loads(
        resources.files("prodmatch").joinpath("data", "brand_names.json").read_text("utf-8")
    )
    out: dict[str, tuple[str, ...]] = {}
    for group in document["brands"]:
        names = list(dict.fromkeys(n for written in group for n in brand_names(written, normalize)))
        for name in names:
            out[name] = tuple(dict.fromkeys((*out.get(name, ()), *(n for n in names if n != name))))
    return out


def merged_aliases(*tables: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Several alias tables as one: each name's aliases from all of them."""
    out: dict[str, tuple[str, ...]] = {}
    for table in tables:
        for name, aliases in table.items():
            out[name] = tuple(dict.fromkeys((*out.get(name, ()), *aliases)))
    return out


def aliases_of(names: tuple[str, ...], aliases: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The aliases (`brand_aliases`) of an offer's names that are not among them."""
    found = [a for name in names for a in aliases.get(name, ())]
    return tuple(a for a in dict.fromkeys(found) if a not in names)


def _agree(a: str, b: str) -> bool:
    # Containment counts as equal: "hp" vs "hpinc", "elitescreens" vs "elite"; and a Russian shop's
    # transliterated name as its Latin spelling sounds ("Бош" bosh = Bosch, "Филипс" filips = Philips)
    if a == b or (min(len(a), len(b)) >= 2 and (a.startswith(b) or b.startswith(a))):
        return True
    if not (a.isascii() and b.isascii()):
        return False
    return _sound(a) == _sound(b)  # whole names only: "sima" is a prefix of Symantec's "simantek"


# Latin spellings that a transliteration from Cyrillic writes otherwise, in order: "sch" before "ch", "yu" (ю)
# before "y", "c" before a front vowel (Сименс / Siemens) before the other "c" (Электролюкс / Electrolux)
_SOUNDS = (
    ("sch", "sh"), ("tch", "ch"), ("ph", "f"), ("th", "t"), ("gh", "g"), ("ck", "k"), ("x", "ks"),
    ("w", "v"), ("ce", "se"), ("ci", "si"), ("cy", "si"), ("c", "k"), ("yu", "u"), ("ee", "i"),
    ("ie", "i"), ("ou", "u"), ("y", "i"), ("j", "i"),
)  # fmt: skip
_DOUBLED = re.compile(r"(.)\1+")


@lru_cache(maxsize=100_000)
def _sound(name: str) -> str:
    """A Latin brand name as it sounds, for names transliterated from Cyrillic: `philips` and `filips` are
    `filips`, `bosch` and `bosh` are `bosh`, `huawei` and `huavej` are `huavei`."""
    folded = name.replace(" ", "").replace("-", "")
    for written, sound in _SOUNDS:
        folded = folded.replace(written, sound)
    return _DOUBLED.sub(r"\1", folded)


@lru_cache(maxsize=200_000)
def _scripts(text: str) -> frozenset[str]:
    """The scripts of a text's letters (the first word of their Unicode names: LATIN, CJK, KATAKANA, ...)."""
    return frozenset(
        _SCRIPT_OF.get(w, w)
        for w in (unicodedata.name(ch, "?").split(" ", 1)[0] for ch in text if ch.isalpha())
    )


_SCRIPT_OF = {"KATAKANA-HIRAGANA": "KATAKANA"}  # ー in "ソニー" is Japanese kana


def comparable(a: str, b: str) -> bool:
    """Whether two names can be compared by spelling: they share a script, or one has no letters ("361")."""
    left, right = _scripts(a), _scripts(b)
    return not left or not right or bool(left & right)


def brand_equal(
    left_brands: Sequence[str | None],
    right_brands: Sequence[str | None],
    *,
    normalize: Normalizer | None = None,
    left_aliases: Sequence[Sequence[str] | None] | None = None,
    right_aliases: Sequence[Sequence[str] | None] | None = None,
) -> np.ndarray:
    """1 where both brands are given and a name of one is a name of the other, 0 where they differ, NaN where
    one is missing (or a placeholder) or their names share no script. `left_aliases` / `right_aliases`: each
    offer's brand aliases (`offer_names`)."""
    left = _with_aliases(left_brands, left_aliases, normalize)
    right = _with_aliases(right_brands, right_aliases, normalize)
    out = np.full(len(left_brands), np.nan, dtype=np.float32)
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        out[i] = names_agree(a, b)
    return out


def _with_aliases(
    brands: Sequence[str | None], aliases: Sequence[Sequence[str] | None] | None, normalize: Normalizer | None
) -> list[tuple[str, ...]]:
    extra = aliases if aliases is not None else [None] * len(brands)
    return [offer_names(b, a, normalize) for b, a in zip(brands, extra, strict=True)]


def brand_in_other_title(
    left_brands: Sequence[str | None],
    left_titles: Sequence[str | None],
    right_brands: Sequence[str | None],
    right_titles: Sequence[str | None],
    *,
    normalize: Normalizer | None = None,
    left_aliases: Sequence[Sequence[str] | None] | None = None,
    right_aliases: Sequence[Sequence[str] | None] | None = None,
) -> np.ndarray:
    """Whether a name of one offer's brand, or an alias of it, appears in the other offer's title (1/0); NaN
    where no brand is known.

    Catches the common case of a shop that leaves the brand column empty but writes the brand in its title.
    """
    norm = normalize or normalize_brand
    out = np.full(len(left_brands), np.nan, dtype=np.float32)
    left = _with_aliases(left_brands, left_aliases, normalize)
    right = _with_aliases(right_brands, right_aliases, normalize)
    for i, (ln, lt, rn, rt) in enumerate(zip(left, left_titles, right, right_titles, strict=True)):
        found = []
        for names, other_title in ((ln, rt), (rn, lt)):
            if names:
                title = norm(other_title or "")
                found.append(any(name in title for name in names))
        if found:
            out[i] = float(any(found))
    return out
