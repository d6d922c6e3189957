"""Colour signal: the colours two offers name, in any of the common languages, compared as one set of names.

A shop sells one model in several colours, and two shops write the same colour in different languages ("чёрный",
"black", "黑色", "schwarz"), so a colour clash is strong evidence of a different variant and a shared colour of
the same one, and neither the lexical space nor the title overlap sees that "чёрный" and "black" agree. Each
product's colours come from its title and its colour attributes (keys such as ``colour``, ``цвет``, ``颜色``,
``Farbe``), mapped to a few canonical names through a fixed lexicon (English, Russian with its adjective
endings, Chinese ``X色`` forms, German, French, Spanish, Italian, Portuguese). Neighbours: the other signal
modules; `prodmatch.match.signals.batch` computes the same columns for many pairs at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

__all__ = ["COLOUR_KEYS", "colour_agreement", "colours", "compare_colours"]

# canonical colour -> words that name it (compared casefolded, accents kept where the language needs them).
_WORDS: dict[str, tuple[str, ...]] = {
    "black": ("black", "schwarz", "noir", "noire", "noirs", "noires", "negro", "negra", "negros", "negras",
              "nero", "nera", "neri", "nere", "preto", "preta"),
    "white": ("white", "weiss", "weiß", "weisse", "weiße", "blanc", "blanche", "blancs", "blanches", "blanco",
              "blanca", "blancos", "blancas", "bianco", "bianca", "bianchi", "branco", "branca"),
    "grey": ("grey", "gray", "grau", "graue", "gris", "grise", "grises", "grigio", "grigia", "cinza", "graphite"),
    "red": ("red", "rot", "rote", "rouge", "rouges", "rojo", "roja", "rojos", "rojas", "rosso", "rossa",
            "vermelho", "vermelha", "burgundy", "bordeaux", "burdeos"),
    "orange": ("orange", "orangefarben", "naranja", "arancione", "laranja"),
    "yellow": ("yellow", "gelb", "gelbe", "jaune", "jaunes", "amarillo", "amarilla", "giallo", "gialla",
               "amarelo", "amarela"),
    "green": ("green", "grün", "gruen", "grüne", "vert", "verte", "verts", "vertes", "verde", "verdi", "olive",
              "khaki"),
    "blue": ("blue", "navy", "blau", "blaue", "bleu", "bleue", "bleus", "azul", "azules", "blu", "azzurro",
             "azzurra", "turquoise", "cyan"),
    "purple": ("purple", "violet", "lila", "violett", "violette", "morado", "morada", "viola", "roxo", "roxa",
               "lilac", "lavender"),
    "pink": ("pink", "rosa", "rosé", "fuchsia", "magenta"),
    "brown": ("brown", "braun", "braune", "marron", "brun", "brune", "marrón", "marrone", "castanho", "chocolate",
              "coffee"),
    "beige": ("beige", "cream", "ivory", "bege", "crème", "creme", "écru", "ecru"),
    "gold": ("gold", "golden", "doré", "dorée", "dorado", "dorada", "oro", "dourado", "dourada"),
    "silver": ("silver", "silber", "argent", "argenté", "argentée", "plateado", "plateada", "argento", "prata",
               "prateado"),
}  # fmt: skip
# Russian (and Ukrainian) colour adjectives: stem + one of the adjective endings, so "серия" is not grey.
_RUSSIAN_STEMS: dict[str, tuple[str, ...]] = {
    "black": ("чёрн", "черн"),
    "white": ("бел",),
    "grey": ("сер",),
    "red": ("красн", "бордов"),
    "orange": ("оранжев",),
    "yellow": ("жёлт", "желт"),
    "green": ("зелён", "зелен", "хаки"),
    "blue": ("син", "голуб", "темно-син", "бирюзов"),
    "purple": ("фиолетов", "сиренев", "лилов"),
    "pink": ("розов",),
    "brown": ("коричнев",),
    "beige": ("бежев", "кремов"),
    "gold": ("золотист",),
    "silver": ("серебрист", "серебрян"),
}
_RUSSIAN_ENDINGS = "ый|ий|ой|ая|яя|ое|ее|ые|ие|ого|его|ому|ему|ую|юю|ых|их|ым|им|ыми|ими"
# Chinese: a colour character followed by 色 ("黑色"), or a few fixed compounds; a bare 红 is too often another
# word ("网红": an influencer's pick).
_CHINESE: dict[str, tuple[str, ...]] = {
    "black": ("黑色", "黑"),
    "white": ("白色", "米白", "白"),
    "grey": ("灰色", "灰"),
    "red": ("红色", "酒红", "大红", "紅色"),
    "orange": ("橙色", "橘色"),
    "yellow": ("黄色", "黃色"),
    "green": ("绿色", "綠色", "军绿"),
    "blue": ("蓝色", "藍色", "藏青", "深蓝", "浅蓝"),
    "purple": ("紫色",),
    "pink": ("粉色", "粉红", "粉紅"),
    "brown": ("棕色", "咖啡色", "褐色", "驼色"),
    "beige": ("米色", "杏色", "卡其"),
    "gold": ("金色",),
    "silver": ("银色", "銀色"),
}
# Attribute keys (casefolded, without spaces and punctuation) whose values are colours.
COLOUR_KEYS = frozenset(
    {"colour", "color", "colourname", "colorname", "цвет", "颜色", "颜色分类", "顏色", "farbe", "couleur",
     "colore", "cor", "カラー", "色"}
)  # fmt: skip

_LATIN = {word: colour for colour, words in _WORDS.items() for word in words}
_LATIN_RE = re.compile(r"[^\W\d_]+")
_RUSSIAN_RE = re.compile(
    r"(?<![а-яё])("
    + "|".join(
        sorted({re.escape(s) for stems in _RUSSIAN_STEMS.values() for s in stems}, key=len, reverse=True)
    )
    + r")(?:"
    + _RUSSIAN_ENDINGS
    + r")(?![а-яё])"
)
_RUSSIAN = {stem: colour for colour, stems in _RUSSIAN_STEMS.items() for stem in stems}
_CHINESE_RE = re.compile(
    "|".join(sorted((re.escape(w) for words in _CHINESE.values() for w in words), key=len, reverse=True))
)
_CHINESE_MAP = {word: colour for colour, words in _CHINESE.items() for word in words}
_NOT_WORD = re.compile(r"[\W_]+")


def colours(product: Mapping[str, object]) -> frozenset[str]:
    """The canonical colours a product names in its title and its colour attributes."""
    found = set(text_colours(_text(product.get("title"))))
    attributes = product.get("attributes")
    for source in (product, attributes if isinstance(attributes, Mapping) else {}):
        for key, value in source.items():
            if isinstance(value, str) and _NOT_WORD.sub("", str(key).casefold()) in COLOUR_KEYS:
                found |= text_colours(value, bare_chinese=True)
    return frozenset(found)


@lru_cache(maxsize=1 << 16)
def text_colours(text: str, bare_chinese: bool = False) -> frozenset[str]:
    """The canonical colours named in `text` (a single Chinese colour character counts only in a colour
    attribute's value: `bare_chinese`)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    found = {_LATIN[w] for w in _LATIN_RE.findall(text) if w in _LATIN}
    found |= {_RUSSIAN[m.group(1)] for m in _RUSSIAN_RE.finditer(text)}
    for m in _CHINESE_RE.finditer(text):
        word = m.group(0)
        if len(word) > 1 or bare_chinese:
            found.add(_CHINESE_MAP[word])
    return frozenset(found)


def compare_colours(a: frozenset[str], b: frozenset[str]) -> tuple[float, float]:
    """(agree, conflict) of two colour sets: a shared colour / no colour in common; NaN, NaN when either is
    empty (no evidence either way)."""
    if not a or not b:
        return np.nan, np.nan
    shared = bool(a & b)
    return float(shared), float(not shared)


def colour_agreement(
    left: list[Mapping[str, object]], right: list[Mapping[str, object]]
) -> tuple[np.ndarray, np.ndarray]:
    """colour_agree and colour_conflict of the pairs (left[i], right[i]), one pair at a time."""
    out = np.array([compare_colours(colours(a), colours(b)) for a, b in zip(left, right, strict=True)])
    out = out.reshape(len(left), 2).astype(np.float32)
    return out[:, 0], out[:, 1]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
