"""Colour signal: the colours two offers name, in any of the common languages, compared as one set of names.

A shop sells one model in several colours, and two shops write the same colour in different languages ("чёрный",
"black", "黑色", "schwarz"), so a colour clash is strong evidence of a different variant and a shared colour of
the same one, and neither the lexical space nor the title overlap sees that "чёрный" and "black" agree. Each
product's colours come from its title and its colour attributes (keys such as ``colour``, ``цвет``, ``颜色``,
``Farbe``, ``カラー``, ``색상``, ``สี``), mapped to a few canonical names through a fixed lexicon (English, Russian
with its adjective endings, Chinese ``X色`` forms, Japanese, Korean, Thai, German, French, Spanish, Italian,
Portuguese). Neighbours: the other signal modules; `prodmatch.match.signals.batch` computes the same columns for
many pairs at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from prodmatch.markup import plain
from prodmatch.roles import BUILTIN, normalize_key

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
# Abbreviations shops write in titles ("blk", "wht"; Russian "черн.", "оранж." with the dot kept by the regex
# below), and Russian colour words transliterated to Latin ("chernyj", "rozovaya").
_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "black": ("blk",),
    "white": ("wht",),
    "grey": ("gry", "grphite"),
    "orange": ("orng", "org"),
    "yellow": ("ylw", "yllw"),
    "green": ("grn",),
    "blue": ("blu",),
    "pink": ("pnk",),
    "brown": ("brn", "brwn"),
    "silver": ("slvr", "slv"),
    "gold": ("gld",),
}
_TRANSLITERATED_STEMS: dict[str, tuple[str, ...]] = {
    "black": ("chern", "cherny"),
    "white": ("bel",),
    "grey": ("ser",),
    "red": ("krasn",),
    "orange": ("oranzhev",),
    "yellow": ("zhelt",),
    "green": ("zelen",),
    "blue": ("sin", "golub"),
    "purple": ("fioletov",),
    "pink": ("rozov",),
    "brown": ("korichnev", "koorichnev"),
    "beige": ("bezhev",),
}
_TRANSLITERATED_ENDINGS = "yj|yi|yy|ij|iy|oj|oy|aya|aja|yaya|oe|ee|ye|ogo|ego|uyu|yh|ih"
_RUSSIAN_ABBREVIATIONS = {"черн": "black", "чёрн": "black", "бел": "white", "сер": "grey", "красн": "red",
                          "оранж": "orange", "желт": "yellow", "жёлт": "yellow", "зел": "green", "син": "blue",
                          "голуб": "blue", "фиол": "purple", "роз": "pink", "корич": "brown", "беж": "beige",
                          "зол": "gold", "сереб": "silver"}  # fmt: skip
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
# Scripts without spaces between words: Chinese (a colour character followed by 色, "黑色", or a few fixed
# compounds), Japanese (katakana loanwords and kanji with 色), Korean and Thai (สี + colour). A word of one
# character, and a Thai colour without สี, counts only in a colour attribute's value: in a title they are too
# often part of another word (网红: an influencer's pick; 赤ちゃん: a baby; ดำเนิน: to proceed).
_UNSPACED: dict[str, tuple[str, ...]] = {
    "black": ("黑色", "黑", "黒色", "黒", "ブラック", "블랙", "검정", "검정색", "검은색", "สีดำ"),
    "white": ("白色", "米白", "白", "ホワイト", "화이트", "흰색", "하얀색", "백색", "สีขาว"),
    "grey": ("灰色", "灰", "グレー", "グレイ", "그레이", "회색", "สีเทา"),
    "red": ("红色", "酒红", "大红", "紅色", "赤色", "赤", "レッド", "레드", "빨간색", "빨강", "적색", "สีแดง"),
    "orange": ("橙色", "橘色", "オレンジ", "오렌지", "주황", "주황색", "สีส้ม"),
    "yellow": ("黄色", "黃色", "イエロー", "옐로우", "노란색", "노랑", "สีเหลือง"),
    "green": ("绿色", "綠色", "军绿", "緑色", "緑", "グリーン", "그린", "초록", "초록색", "녹색", "สีเขียว"),
    "blue": ("蓝色", "藍色", "藏青", "深蓝", "浅蓝", "青色", "青", "紺", "ブルー", "ネイビー", "블루", "파란색", "파랑",
             "네이비", "남색", "สีน้ำเงิน", "สีฟ้า", "สีกรมท่า"),
    "purple": ("紫色", "パープル", "퍼플", "보라", "보라색", "สีม่วง"),
    "pink": ("粉色", "粉红", "粉紅", "ピンク", "핑크", "분홍", "분홍색", "สีชมพู"),
    "brown": ("棕色", "咖啡色", "褐色", "驼色", "茶色", "ブラウン", "브라운", "갈색", "สีน้ำตาล"),
    "beige": ("米色", "杏色", "卡其", "ベージュ", "베이지", "สีครีม"),
    "gold": ("金色", "ゴールド", "골드", "금색", "สีทอง"),
    "silver": ("银色", "銀色", "シルバー", "실버", "은색", "สีเงิน"),
}  # fmt: skip
_THAI_BARE = {"ดำ": "black", "ขาว": "white", "เทา": "grey", "แดง": "red", "ส้ม": "orange", "เหลือง": "yellow",
              "เขียว": "green", "น้ำเงิน": "blue", "ฟ้า": "blue", "กรมท่า": "blue", "ม่วง": "purple",
              "ชมพู": "pink", "น้ำตาล": "brown", "ครีม": "beige", "ทอง": "gold", "เงิน": "silver"}  # fmt: skip
# Attribute keys whose values are colours: the colour concept of `prodmatch.roles.BUILTIN`, compared as
# `prodmatch.roles.normalize_key` writes keys.
COLOUR_KEYS = frozenset(normalize_key(key) for key in BUILTIN["colour"][1].split())

_LATIN = {word: colour for colour, words in (*_WORDS.items(), *_ABBREVIATIONS.items()) for word in words}
_TRANSLITERATED_RE = re.compile(
    r"(?<![a-z])("
    + "|".join(sorted({s for stems in _TRANSLITERATED_STEMS.values() for s in stems}, key=len, reverse=True))
    + r")(?:"
    + _TRANSLITERATED_ENDINGS
    + r")(?![a-z])"
)
_TRANSLITERATED = {stem: colour for colour, stems in _TRANSLITERATED_STEMS.items() for stem in stems}
_RUSSIAN_ABBREVIATION_RE = re.compile(
    r"(?<![а-яё])(" + "|".join(sorted(_RUSSIAN_ABBREVIATIONS, key=len, reverse=True)) + r")\."
)
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
# in NFKC, as the text they are looked for in (Thai ำ is two code points there)
_UNSPACED_MAP = {
    unicodedata.normalize("NFKC", word): colour for colour, words in _UNSPACED.items() for word in words
}
_UNSPACED_RE = re.compile("|".join(sorted(map(re.escape, _UNSPACED_MAP), key=len, reverse=True)))
_BARE_MAP = {**_UNSPACED_MAP, **{unicodedata.normalize("NFKC", w): c for w, c in _THAI_BARE.items()}}
_BARE_RE = re.compile("|".join(sorted(map(re.escape, _BARE_MAP), key=len, reverse=True)))


def colours(product: Mapping[str, object]) -> frozenset[str]:
    """The canonical colours a product names in its title and its colour attributes."""
    found = set(text_colours(_text(product.get("title"))))
    attributes = product.get("attributes")
    for source in (product, attributes if isinstance(attributes, Mapping) else {}):
        for key, value in source.items():
            if isinstance(value, str) and normalize_key(str(key)) in COLOUR_KEYS:
                found |= text_colours(value, in_attribute=True)
    return frozenset(found)


@lru_cache(maxsize=1 << 16)
def text_colours(text: str, in_attribute: bool = False) -> frozenset[str]:
    """The canonical colours named in `text`. A colour that is a word only where a colour is expected, a single
    Chinese or Japanese character (`黑`, `赤`) or a Thai one without its `สี` (`ดำ`), counts only in a colour
    attribute's value (`in_attribute`)."""
    text = unicodedata.normalize("NFKC", plain(text)).casefold()
    found = {_LATIN[w] for w in _LATIN_RE.findall(text) if w in _LATIN}
    found |= {_RUSSIAN[m.group(1)] for m in _RUSSIAN_RE.finditer(text)}
    found |= {_RUSSIAN_ABBREVIATIONS[m.group(1)] for m in _RUSSIAN_ABBREVIATION_RE.finditer(text)}
    found |= {_TRANSLITERATED[m.group(1)] for m in _TRANSLITERATED_RE.finditer(text)}
    for m in (_BARE_RE if in_attribute else _UNSPACED_RE).finditer(text):
        word = m.group(0)
        if len(word) > 1 or in_attribute:
            found.add(_BARE_MAP[word])
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
