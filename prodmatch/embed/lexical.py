"""The lexical space: a product's text as a sparse vector of hashed terms, weighted by IDF, no neural model.

A product's text (brand, title, code-like attributes, category, the start of its description) is normalised
(`normalize`: NFKC, casefold, Cyrillic transliterated to Latin, units written one way in any script, combining
marks and punctuation dropped) and turned into a bag of hashed terms in four namespaces:

* ``g``: character 3..5-grams of each word with boundary marks (``<ps``, ``x350h>``), computed on a
  phonetically folded spelling (``ph``->``f``, ``c``/``q``->``k``, ``y``/``j``->``i``, doubled letters once), so
  ``samsung``/``самсунг`` and ``philips``/``филипс`` share most n-grams; the fuzzy, typo-tolerant part;
* ``w``: whole words as written (after normalisation), exact and so more telling than any one n-gram;
* ``c``: code tokens: runs of up to four adjacent words glued without separators when the result mixes letters
  and digits (``ps lx 350 h`` -> ``pslx350h``), so every spelling of a model number yields the same term;
* ``a``: each attribute value whole, under the slot it is compared in (`attribute_value_terms`:
  ``identifying:material=牛皮头层革``), so two shops' listings of one product whose titles share few words still
  meet on their descriptive attributes (on the Chinese development set: lexical recall at k=10 0.771 -> 0.829).

Any script: Latin and Cyrillic words get all three; other alphabets (Greek, Arabic, Hebrew, Devanagari...) are
words like any other (their n-grams unfolded). A run of a script written without spaces (Han, Hiragana /
Katakana, Hangul, Thai, Lao, Khmer, Myanmar) has no words to cut, so it gives its characters as ``g`` terms and
its character bigrams as ``w`` terms (`unspaced_terms`): on the Chinese development set (EMBer Taobao shoes)
that beat bigrams alone, unigrams as words and added trigrams. Latin codes inside such a run stay codes
("耐克AirMax270男鞋" -> 耐克 / airmax270 / 男鞋), Chinese units after a number are the canonical unit tokens
("30厘米" = "30cm", "42码" -> "42size"), and words glued at a change of script or of Cyrillic case are split
(`split_glued`: "поверхностейBath" -> поверхностей / bath). ASCII text takes the old path unchanged.

Bags are word-order free. Whole words count twice and code terms three times as much as one n-gram (an exact
word or code is stronger evidence than a shared fragment). Fields are weighted as if repeated (title and brand
count twice, code attributes once, category and description half) rather than kept in separate namespaces, so
a code in one shop's title still meets the same code in the other shop's ``mpn`` attribute or description.
Term frequencies are sublinear (1 + ln tf). Terms are hashed into
``dimensions`` (2**20) buckets with CRC-32 of ``namespace + "\\x1f" + term`` in UTF-8: CRC-32 is fixed by a
standard (zlib), so every process, machine and Python version gets the same index, unlike the salted `hash()`.

`LexicalEncoder.terms` / `encode_many` give raw (unweighted) term frequencies; `idf_weights` turns per-term
document frequencies over the catalogues into an `IdfTable`; `weigh` applies it, keeps at most ``max_terms``
terms (pgvector's HNSW index on ``sparsevec`` accepts at most 1,000 non-zeros) and L2-normalises, so cosine is
a plain dot product (pgvector's ``<#>``); indices are 0-based, as pgvector-python's ``SparseVector(dict, dim)``
takes them. Neighbours: `prodmatch.embed.codes` extracts exact product codes;
the database layer stores the raw terms, the document frequencies and the weighted vectors (see `IdfTable`).
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from prodmatch.markup import plain
from prodmatch.roles import comparison_slot, is_no_brand, normalize_value, product_roles, reads_lexically

__all__ = [
    "IdfTable",
    "LexicalEncoder",
    "SparseVector",
    "document_frequencies",
    "idf_weights",
    "is_unspaced",
    "lexical_text",
    "normalize",
    "similarity",
    "split_glued",
    "unspaced_terms",
    "weigh",
    "weigh_many",
]

SparseVector = tuple[np.ndarray, np.ndarray]
"""(indices: int32, sorted ascending, unique; values: float32), the shape pgvector's SparseVector takes."""

PGVECTOR_HNSW_MAX_NONZEROS = 1000
PGVECTOR_SPARSEVEC_MAX_NONZEROS = 16000

# Field weights. Title and brand name the product; code attributes are short and decisive but already appear
# in the title of many shops, so they count once; category and description describe the kind of product more
# than the product and are long, so they count half and the description only by its start.
TITLE_WEIGHT = 2.0
BRAND_WEIGHT = 2.0
ATTRIBUTE_WEIGHT = 1.0
CATEGORY_WEIGHT = 0.5
DESCRIPTION_WEIGHT = 0.5
DESCRIPTION_CHARS = 300
# one ``a`` term (an attribute's whole value under its slot) counts as a title word
ATTRIBUTE_VALUE_WEIGHT = 4.0
ATTRIBUTE_VALUE_CHARS = 64  # longer values are free text (read as words if identifying), not one value
MAX_ATTRIBUTE_VALUES = 64  # ``a`` terms per product at most
FIELD_CHARS = 500

# Attributes whose values identify or distinguish a product (keys compared casefolded, without separators).
# Other attributes (URLs, stock, shop ids) would only add noise.
LEXICAL_ATTRIBUTE_KEYS = frozenset(
    {
        "model",
        "modelno",
        "modelnumber",
        "modelname",
        "mpn",
        "partnumber",
        "partno",
        "manufacturerpartnumber",
        "sku",
        "gtin",
        "ean",
        "upc",
        "isbn",
        "colour",
        "color",
        "size",
        "capacity",
        "material",
        "артикул",
        "модель",
        "цвет",
        "размер",
        "объем",
        "объём",
    }
)

# One fixed Cyrillic -> Latin table (ISO 9 / GOST 7.79 system B flavour, simplified to ASCII). Russian,
# Ukrainian and Belarusian letters; soft and hard signs vanish because Latin spellings of brands never show them.
_CYRILLIC = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "д": "d",
    "е": "e",
    "ё": "e",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "й": "j",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ф": "f",
    "х": "h",
    "ц": "c",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ъ": "",
    "ы": "y",
    "ь": "",
    "э": "e",
    "ю": "yu",
    "я": "ya",
    "і": "i",
    "ї": "yi",
    "є": "ye",
    "ґ": "g",
    "ў": "u",
}
_TRANSLITERATE = str.maketrans(_CYRILLIC)

# Unit words after a number, one table for the lexical space and the title signals: (canonical unit, its
# dimension, the factor to the dimension's base unit, the spellings shops write: English, Russian, German,
# French, Spanish, Portuguese, Italian). The lexical space writes each spelling as its canonical unit token
# ("500 millilitres" -> "500ml", "10 Stück" -> "10pcs"); `prodmatch.match.signals.text` compares the quantities
# in the base unit ("0,75 л" = "750 мл"). Matched after casefolding and before transliteration, only right
# after a number, so "в" (Russian "in") or "m" inside words never count; "2 в 1" (2-in-1) is excluded explicitly.
UNIT_WORDS: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("kb", "bytes", 1e-6, ("kb", "кб", "kilobytes", "kilobyte")),
    ("mb", "bytes", 1e-3, ("mb", "мб", "megabytes", "megabyte")),
    ("gb", "bytes", 1.0, ("gb", "гб", "gigabytes", "gigabyte")),
    ("tb", "bytes", 1e3, ("tb", "тб", "terabytes", "terabyte")),
    ("hz", "frequency", 1e-6, ("hz", "гц")),
    ("khz", "frequency", 1e-3, ("khz", "кгц")),
    ("mhz", "frequency", 1.0, ("mhz", "мгц")),
    ("ghz", "frequency", 1e3, ("ghz", "ггц")),
    ("w", "power", 1.0, ("watts", "watt", "w", "вт")),
    ("kw", "power", 1e3, ("kw", "квт")),
    ("kwh", "energy", 1.0, ("kwh", "квт·ч", "квтч")),
    ("v", "voltage", 1.0, ("volts", "volt", "v", "в")),
    ("a", "current", 1.0, ("amps", "amp", "а")),
    ("mah", "charge", 1.0, ("mah", "мач", "ма·ч", "мa·ч")),
    ("mm", "length", 1.0, ("mm", "мм")),
    (
        "cm",
        "length",
        10.0,
        ("centimetres", "centimeters", "zentimeter", "centimetros", "centímetros", "cm", "см"),
    ),
    ("m", "length", 1e3, ("metres", "meters", "metre", "meter", "metros", "mètres", "mètre", "m", "м")),
    (
        "in",
        "length",
        25.4,
        ("inches", "inch", "in", '"', "”", "″", "''", "дюймов", "дюйма", "дюйм", "zoll", "pouces", "pouce")
        + ("pulgadas", "pulgada", "polegadas", "polegada", "pollici"),
    ),
    ("ft", "length", 304.8, ("feet", "ft")),
    ("mg", "mass", 1e-3, ("mg", "мг")),
    (
        "g",
        "mass",
        1.0,
        ("grams", "gramm", "grammes", "gramme", "gramos", "gramas", "grammi", "gram", "gr", "g")
        + ("граммов", "грамм", "гр", "г"),
    ),
    (
        "kg",
        "mass",
        1e3,
        ("kilogrammes", "kilogramme", "kilogramm", "kilogramos", "kilograms", "kilogram", "kgs", "kg", "кг"),
    ),
    ("lb", "mass", 453.6, ("lbs", "lb")),
    ("oz", "mass", 28.35, ("oz",)),
    (
        "ml",
        "volume",
        1.0,
        ("millilitres", "milliliters", "millilitre", "milliliter", "mililitros", "ml", "мл"),
    ),
    (
        "l",
        "volume",
        1e3,
        ("litres", "liters", "litre", "liter", "litros", "litro", "litri", "ltr", "l")
        + ("литров", "литра", "литр", "л"),
    ),
    ("mp", "pixels", 1.0, ("mp", "мп")),
    ("rpm", "rpm", 1.0, ("rpm",)),
    (
        "pcs",
        "count",
        1.0,
        ("pcs", "pieces", "pk", "pack", "шт", "stück", "stk", "pièces", "piezas", "unidades"),
    ),
    ("port", "ports", 1.0, ("ports", "port")),
)
_UNIT_CANONICAL = {alt: canonical for canonical, _, _, alts in UNIT_WORDS for alt in alts}
_UNIT_ALTERNATIVES = sorted(_UNIT_CANONICAL, key=len, reverse=True)
_UNIT_RE = re.compile(
    r"(?<![\w.,])(\d+(?:[.,]\d+)?)\s?-?\s?(" + "|".join(re.escape(a) for a in _UNIT_ALTERNATIVES) + r")(?!\w)"
)
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:\.[0-9][a-z0-9]*)*")

# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Hangul, Kana, Han (with the CJK
# compatibility and extension blocks). Their marks are part of the spelling and stay.
UNSPACED_CHARACTERS = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u1100-\u11ff\u3040-\u30ff\u3100-\u312f\u3130-\u318f"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\U00020000-\U0003134f"
)
_UNSPACED_RUN_RE = re.compile(f"[{UNSPACED_CHARACTERS}]+")
# Indic scripts (Devanagari .. Sinhala) spell vowels with marks: they stay, as in the unspaced scripts.
_MARKED_SCRIPTS = "\u0900-\u0dff"
_WORD_RE = re.compile(
    f"[{UNSPACED_CHARACTERS}]+|(?:[^\\W_]|[{_MARKED_SCRIPTS}])+(?:\\.[0-9](?:[^\\W_]|[{_MARKED_SCRIPTS}])*)*"
)
_CYRILLIC_LETTER = "\u0400-\u04ff"
_LATIN_LETTER = "A-Za-z\u00c0-\u024f"
# Three letters of one script before the change, so units and codes typed in mixed scripts ("5000 mAч",
# "мАч", "KМ-500") stay whole; a Cyrillic capital starts a new word only when a lower-case letter follows.
_GLUED_RE = re.compile(
    f"(?<=[{_CYRILLIC_LETTER}]{{3}})(?=[{_LATIN_LETTER}])|(?<=[{_LATIN_LETTER}]{{3}})(?=[{_CYRILLIC_LETTER}])"
    "|(?<=[\u0430-\u045f]{3})(?=[\u0400-\u042f][\u0430-\u045f])"
)
# Units written in a script without spaces, right after a number: Chinese, Japanese (katakana), Korean and Thai
# spellings of the metric units, inches, watts and volts, and the Chinese shoe and clothing size (码: "42码" ->
# "42size"). The longest spelling wins ("毫升" before "升", "센티미터" before "미터"). No word boundary follows in
# these scripts, so a few words that start with a unit are excluded: 升级 (upgrade), 克拉 (carat), 米白/米色..
# (beige). `prodmatch.match.signals.text` compares the quantities in a base unit from the same table.
UNSPACED_UNITS = {
    # Chinese (simplified and traditional where they differ)
    "千克": "kg",
    "公斤": "kg",
    "毫克": "mg",
    "克": "g",
    "厘米": "cm",
    "公分": "cm",
    "毫米": "mm",
    "米": "m",
    "毫升": "ml",
    "公升": "l",
    "升": "l",
    "英寸": "in",
    "寸": "in",
    "毫安时": "mah",
    "毫安時": "mah",
    "毫安": "mah",
    "千瓦": "kw",
    "瓦": "w",
    "伏": "v",
    "赫兹": "hz",
    "赫茲": "hz",
    "码": "size",
    "碼": "size",
    # Japanese (katakana; NFKC spells out the squared forms ㍉ ㌢ ㍍ ㌘ ㍑ first)
    "キログラム": "kg",
    "グラム": "g",
    "センチメートル": "cm",
    "センチ": "cm",
    "ミリメートル": "mm",
    "ミリリットル": "ml",
    "ミリ": "mm",
    "メートル": "m",
    "リットル": "l",
    "インチ": "in",
    "ワット": "w",
    "ボルト": "v",
    # Korean
    "킬로그램": "kg",
    "그램": "g",
    "센티미터": "cm",
    "센티": "cm",
    "밀리미터": "mm",
    "밀리리터": "ml",
    "미터": "m",
    "리터": "l",
    "인치": "in",
    "와트": "w",
    "볼트": "v",
    # Thai, written out and abbreviated
    "กิโลกรัม": "kg",
    "กก.": "kg",
    "กก": "kg",
    "กรัม": "g",
    "เซนติเมตร": "cm",
    "ซม.": "cm",
    "ซม": "cm",
    "มิลลิเมตร": "mm",
    "มม.": "mm",
    "มม": "mm",
    "เมตร": "m",
    "มิลลิลิตร": "ml",
    "มล.": "ml",
    "มล": "ml",
    "ลิตร": "l",
    "นิ้ว": "in",
    "วัตต์": "w",
    "โวลต์": "v",
}
# A size written before its number, as shops write it in most languages ("Size 42", "Größe 42", "Taille 42",
# "Размер 42", "尺码42", "サイズ 42"): the same size as the Chinese "42码", and rewritten so (`sizes_as_units`), so
# both readers of units (this encoder and `prodmatch.match.signals.text`) read it as one. Only a number of
# MIN_PREFIXED_SIZE or more: European and Chinese shoe and clothing sizes (34-60), which "42码" is; US and UK
# shoe sizes (4-15) and Japanese ones in centimetres (22-30) are other systems, and stay plain numbers.
SIZE_WORDS = (
    "size sz größe groesse gr. taille pointure talla tamanho taglia misura maat rozmiar размер разм. розмір"
    " 尺码 尺碼 码数 碼數 鞋码 サイズ 사이즈 ไซส์"
).split()
MIN_PREFIXED_SIZE = 30
_SIZE_FIRST_RE = re.compile(
    r"(?<![^\W\d_])(?:" + "|".join(re.escape(w) for w in sorted(SIZE_WORDS, key=len, reverse=True)) + r")"
    r"\s*[:：]?\s*(\d{2}(?:[.,]5)?)(?![.,]?\d)(?![^\W_])",
    re.IGNORECASE,
)


def sizes_as_units(text: str) -> str:
    """`text` with each size written before its number ("Size 42", "Размер: 44") written as a Chinese title
    writes it ("42码"), which both readers of units read as a size; sizes under MIN_PREFIXED_SIZE stay."""
    if not _SIZE_FIRST_RE.search(text):
        return text
    return _SIZE_FIRST_RE.sub(
        lambda m: (
            f" {m.group(1)}码 " if float(m.group(1).replace(",", ".")) >= MIN_PREFIXED_SIZE else m.group(0)
        ),
        text,
    )


_UNSPACED_UNIT_EXCLUDED = {"升": "级", "克": "拉", "米": "白色黄灰咖杏"}
UNSPACED_UNIT_PATTERN = "|".join(
    re.escape(unit) + (f"(?![{_UNSPACED_UNIT_EXCLUDED[unit]}])" if unit in _UNSPACED_UNIT_EXCLUDED else "")
    for unit in sorted(UNSPACED_UNITS, key=len, reverse=True)
)
_UNSPACED_UNIT_RE = re.compile(
    f"(?:(?<![\\w.,])|(?<=[{UNSPACED_CHARACTERS}]))(\\d+(?:[.,]\\d+)?)\\s?({UNSPACED_UNIT_PATTERN})"
)
_UNIT_TOKEN_RE = re.compile(
    r"\d+(?:\.\d+)?(?:" + "|".join(sorted({*_UNIT_CANONICAL.values(), "size"}, key=len, reverse=True)) + r")"
)

# Phonetic folding for the n-gram namespace only: spellings that differ across languages and transliterations.
# German "sch" is the "ш" a Russian shop writes (Bosch / Бош -> bosh, Fischer / Фишер -> fisher; migration 0019).
_FOLDS = (
    ("sch", "sh"),
    ("ph", "f"),
    ("kh", "h"),
    ("ck", "k"),
    ("c", "k"),
    ("q", "k"),
    ("y", "i"),
    ("j", "i"),
    ("w", "v"),
)
_DOUBLED_RE = re.compile(r"([a-z])\1+")


@lru_cache(maxsize=1 << 16)  # pure; brands, categories and words repeat across a catalogue
def normalize(text: str) -> str:
    """The canonical spelling of `text`: space-separated lower-case tokens, units glued to their number.

    NFKC (full-width "ＡＢＣ１２３" -> "abc123"), words glued at a change of script or of Cyrillic case split
    ("поверхностейBath" -> "поверхностей bath"), casefold, units unified ("8 Вт", "8W", "8 w" -> "8w";
    "1,5 л" -> "1.5l"; '27"' -> "27in"; "30厘米" -> "30cm"; "42码" -> "42size"), Cyrillic transliterated with one
    fixed table ("Самсунг" -> "samsung"), combining marks stripped ("café" -> "cafe"; kept in Indic and Thai
    spelling), every other character that is not a letter or digit becomes a space (a '.' between digits stays:
    "2.0"). A run of a script written without spaces (Han, Kana, Hangul, Thai...) is one token, set apart from
    the words around it ("耐克AirMax270男鞋" -> "耐克 airmax270 男鞋"); `LexicalEncoder` cuts it into characters.
    """
    text = sizes_as_units(unicodedata.normalize("NFKC", plain(text)))
    if text.isascii():
        text = _UNIT_RE.sub(_unit_replacement, text.casefold())
        return " ".join(_TOKEN_RE.findall(text))
    text = split_glued(text).casefold()
    if _UNSPACED_RUN_RE.search(text):
        text = _UNSPACED_UNIT_RE.sub(_unspaced_unit_replacement, text)
        text = _UNSPACED_RUN_RE.sub(r" \g<0> ", text)
    text = _UNIT_RE.sub(_unit_replacement, text)
    text = _strip_marks(text.translate(_TRANSLITERATE))
    return " ".join(_WORD_RE.findall(text))


def split_glued(text: str) -> str:
    """`text` with a space where words are glued at a change of script or of Cyrillic case.

    Russian dealer feeds glue fields together ("поверхностейBath Acrylконцентрат", "ВаннаЧистая"); splitting
    there never breaks a Latin code or brand ("WH1000XM4", "iPhone", "PS-LX350H"), whose case changes are left
    alone. Runs of scripts written without spaces are set apart later, by `normalize` and the title signals.
    """
    return _GLUED_RE.sub(" ", text) if not text.isascii() else text


def unspaced_terms(run: str) -> tuple[list[str], list[str]]:
    """(characters, character bigrams) of a run of a script written without spaces; a single character is both.

    Words are not marked in Chinese, Japanese or Thai, so a run is compared by its characters (fuzzy, like the
    n-grams of a word) and by its adjacent pairs (most Chinese words are two characters long, so a bigram is
    the nearest thing to a word without a dictionary).
    """
    characters = list(run)
    if len(characters) == 1:
        return characters, characters
    return characters, [run[i : i + 2] for i in range(len(run) - 1)]


def is_unspaced(token: str) -> bool:
    """Whether `token` (as `normalize` gives it) is a run of a script written without spaces."""
    return bool(token) and not token[0].isascii() and _UNSPACED_RUN_RE.fullmatch(token) is not None


def lexical_text(product: Mapping[str, object]) -> str:
    """The text the lexical space reads: brand, title, identifying attributes, category, description's start.

    Attributes are read from a nested ``attributes`` mapping and from top-level keys alike (keys in
    `LEXICAL_ATTRIBUTE_KEYS`). This is the human-readable view; `LexicalEncoder.terms` weights the same fields.
    """
    return " | ".join(text for text, _ in _weighted_fields(product) if text)


@dataclass(frozen=True)
class IdfTable:
    """Smoothed IDF per hashed term over a set of documents: idf = ln((1 + n) / (1 + df)) + 1.

    Keeping it current in a database: store each product's raw terms (`LexicalEncoder.encode_many`) and a
    table of per-term document frequencies (add a product's terms on insert, subtract on delete/update).
    Weighted vectors (`weigh`) depend on n_documents and df, but slowly: re-weigh every stored vector only when
    the number of documents has grown or shrunk by more than a fraction (`needs_reweigh`, 20% by default) since
    the table the vectors were weighed with; in between, new products are weighed with the current table.
    Terms never seen get the idf of a term seen in no document (`unseen_idf`).
    """

    indices: np.ndarray  # int32, sorted, unique
    idf: np.ndarray  # float32, same length
    n_documents: int

    @property
    def unseen_idf(self) -> float:
        return math.log(1.0 + self.n_documents) + 1.0

    def lookup(self, indices: np.ndarray) -> np.ndarray:
        """The idf of each term index (float32), `unseen_idf` where the table has none."""
        indices = np.asarray(indices, dtype=np.int32)
        if self.indices.size == 0:
            return np.full(indices.shape, self.unseen_idf, dtype=np.float32)
        pos = np.searchsorted(self.indices, indices)
        pos = np.minimum(pos, self.indices.size - 1)
        found = self.indices[pos] == indices
        return np.where(found, self.idf[pos], np.float32(self.unseen_idf)).astype(np.float32)

    def needs_reweigh(self, n_documents_now: int, fraction: float = 0.2) -> bool:
        """Whether vectors weighed with this table should be re-weighed now that there are `n_documents_now`."""
        return abs(n_documents_now - self.n_documents) > fraction * max(self.n_documents, 1)


@dataclass(frozen=True)
class LexicalEncoder:
    """Turns products into hashed, sublinear term frequencies (not yet IDF-weighted); see the module docstring."""

    ngram_sizes: tuple[int, ...] = (3, 4, 5)
    dimensions: int = 2**20
    max_terms: int = PGVECTOR_HNSW_MAX_NONZEROS
    word_weight: float = 2.0
    code_weight: float = 3.0
    max_code_parts: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.max_terms <= PGVECTOR_HNSW_MAX_NONZEROS:
            raise ValueError(f"max_terms must be in 1..{PGVECTOR_HNSW_MAX_NONZEROS}, not {self.max_terms}")
        if not 1 <= self.dimensions <= 2**31 - 1:
            raise ValueError(f"dimensions must be in 1..2**31-1, not {self.dimensions}")
        if not self.ngram_sizes or min(self.ngram_sizes) < 1:
            raise ValueError(f"ngram_sizes must be positive, not {self.ngram_sizes}")

    def terms(self, product: Mapping[str, object]) -> dict[int, float]:
        """Hashed term -> sublinear frequency (1 + ln tf, tf counted with field weights) of one product.

        Every field is cut to a fixed length first, so a product has at most a few thousand raw terms (fewer
        than `PGVECTOR_SPARSEVEC_MAX_NONZEROS`, so they can be stored as a sparsevec); `weigh` cuts to
        `max_terms`.
        """
        return {h: _sublinear(tf) for h, tf in self._counts(product).items()}

    def encode(self, product: Mapping[str, object]) -> SparseVector:
        """`terms` as sorted (indices int32, values float32) arrays."""
        counts = self._counts(product)
        indices = np.fromiter(counts.keys(), dtype=np.int32, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = np.where(tf >= 1.0, 1.0 + np.log(np.maximum(tf, 1.0)), tf).astype(np.float32)
        order = np.argsort(indices, kind="stable")
        return indices[order], values[order]

    def encode_many(self, products: Iterable[Mapping[str, object]]) -> list[SparseVector]:
        """`encode` of each product, in order (raw term frequencies: feed them to `document_frequencies`)."""
        return [self.encode(product) for product in products]

    def _counts(self, product: Mapping[str, object]) -> dict[int, float]:
        counts: dict[int, float] = {}
        get = counts.get
        sizes, dimensions, word_weight = self.ngram_sizes, self.dimensions, self.word_weight
        for text, weight in _weighted_fields(product):
            tokens = normalize(text).split()
            weight_of_word = weight * word_weight
            for token in tokens:
                grams, words = _word_terms(token, sizes, dimensions)
                for h in grams:
                    counts[h] = get(h, 0.0) + weight
                for h in words:
                    counts[h] = get(h, 0.0) + weight_of_word
            for code in code_terms(tokens, self.max_code_parts):
                h = _hash("c", code, dimensions)
                counts[h] = get(h, 0.0) + weight * self.code_weight
        for term in attribute_value_terms(product):
            h = _hash("a", term, dimensions)
            counts[h] = get(h, 0.0) + ATTRIBUTE_VALUE_WEIGHT
        return counts


def attribute_value_terms(product: Mapping[str, object]) -> list[str]:
    """``slot=value`` of each attribute value of `product`, compared whole (the ``a`` namespace).

    The slot is the one `attribute_agreement` compares under (`prodmatch.roles.comparison_slot`: brand / code /
    gtin by role, built-in identifying keys by concept, other keys by their own normalised name, noise keys
    such as URLs, stock or season left out), the value NFKC-folded, casefolded and without spaces or
    punctuation, so two shops' "鞋底材质: 橡胶" and "帮面材质: 牛皮头层革" meet as exact terms whatever their titles
    say. Descriptive attributes a catalogue fills (material, heel, toe, pattern...) are what tells apart a
    marketplace's look-alike offers whose titles share few words; their IDF keeps a value that half the
    catalogue has ("pattern: plain") from counting. Values longer than `ATTRIBUTE_VALUE_CHARS` are free text and
    a "no brand" brand is no value.
    """
    attributes = product.get("attributes")
    if not isinstance(attributes, Mapping) or not attributes:
        return []
    roles = product_roles(product)
    out: list[str] = []
    for key, value in attributes.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            continue
        text = normalize_value(str(value))
        if not text or len(text) > ATTRIBUTE_VALUE_CHARS:
            continue
        slot = comparison_slot(str(key), roles)
        if slot is None or (slot == "brand" and is_no_brand(str(value))):
            continue
        out.append(f"{slot}={text}")
        if len(out) == MAX_ATTRIBUTE_VALUES:
            break
    return out


def code_terms(tokens: list[str], max_parts: int = 4) -> list[str]:
    """Runs of up to `max_parts` adjacent tokens glued together that look like a product code.

    A code mixes letters and digits, has at least 4 characters and at most 16; a unit ("8w", "40mm") or a long
    plain word of more than 3 letters ("class", "sony") cannot be part of one, so "16gb class 4"
    yields nothing while "ps lx 350 h" yields "pslx350h" (and its sub-runs "pslx", "lx350", ...; spurious sub-runs are rare terms that cost little).
    """
    parts_ok = [_can_be_code_part(t) for t in tokens]
    codes = []
    for start in range(len(tokens)):
        glued = ""
        for end in range(start, min(start + max_parts, len(tokens))):
            if not parts_ok[end]:
                break
            glued += tokens[end].replace(".", "")
            if len(glued) > 16:
                break
            if len(glued) >= 4 and _mixes_letters_and_digits(glued):
                codes.append(glued)
    return codes


def document_frequencies(vectors: Iterable[SparseVector]) -> dict[int, int]:
    """Number of vectors each term index occurs in (the per-term table a database keeps)."""
    chunks = [np.asarray(indices, dtype=np.int64) for indices, _ in vectors]
    if not chunks:
        return {}
    terms, counts = np.unique(np.concatenate(chunks), return_counts=True)
    return dict(zip(terms.tolist(), counts.tolist(), strict=True))


def idf_weights(document_frequency: Mapping[int, int] | SparseVector, n_documents: int) -> IdfTable:
    """The smoothed IDF table for per-term document frequencies (a mapping, or (indices, counts) arrays)."""
    if n_documents < 0:
        raise ValueError(f"n_documents must not be negative, not {n_documents}")
    if isinstance(document_frequency, Mapping):
        indices = np.fromiter(document_frequency.keys(), dtype=np.int64, count=len(document_frequency))
        df = np.fromiter(document_frequency.values(), dtype=np.float64, count=len(document_frequency))
    else:
        indices = np.asarray(document_frequency[0], dtype=np.int64)
        df = np.asarray(document_frequency[1], dtype=np.float64)
    order = np.argsort(indices, kind="stable")
    indices, df = indices[order], df[order]
    idf = np.log((1.0 + n_documents) / (1.0 + np.minimum(df, n_documents))) + 1.0
    return IdfTable(indices=indices.astype(np.int32), idf=idf.astype(np.float32), n_documents=n_documents)


def weigh(
    terms: Mapping[int, float] | SparseVector, idf: IdfTable, max_terms: int = PGVECTOR_HNSW_MAX_NONZEROS
) -> SparseVector:
    """TF-IDF weights of one product's raw terms, at most `max_terms` of them, L2-normalised (cosine = dot).

    Only when a product has more than `max_terms` terms are the lowest-weighted ones dropped; with the same tf
    those are the terms present in most documents (lowest idf). An empty text gives empty arrays.
    """
    if isinstance(terms, Mapping):
        indices = np.fromiter(terms.keys(), dtype=np.int32, count=len(terms))
        values = np.fromiter(terms.values(), dtype=np.float32, count=len(terms))
    else:
        indices = np.asarray(terms[0], dtype=np.int32)
        values = np.asarray(terms[1], dtype=np.float32)
    weights = values * idf.lookup(indices)
    if weights.size > max_terms:
        # Highest weight first; the index breaks ties so the result does not depend on input order.
        keep = np.lexsort((indices, -weights))[:max_terms]
        indices, weights = indices[keep], weights[keep]
    order = np.argsort(indices, kind="stable")
    indices, weights = indices[order], weights[order]
    norm = float(np.sqrt(np.dot(weights.astype(np.float64), weights.astype(np.float64))))
    if norm > 0:
        weights = weights / norm
    return indices.astype(np.int32), weights.astype(np.float32)


def weigh_many(
    vectors: Sequence[SparseVector], idf: IdfTable, max_terms: int = PGVECTOR_HNSW_MAX_NONZEROS
) -> list[SparseVector]:
    """`weigh` of each raw vector (as `encode_many` gives them), in order; one IDF look-up for all of them."""
    if not vectors:
        return []
    lengths = np.array([len(indices) for indices, _ in vectors], dtype=np.int64)
    indices = np.concatenate([np.asarray(i, dtype=np.int32) for i, _ in vectors])
    weights = np.concatenate([np.asarray(v, dtype=np.float32) for _, v in vectors]) * idf.lookup(indices)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # reduceat wants starts inside the array: empty vectors at the end would point past it (their sum is 0)
    squares = np.zeros(len(vectors))
    if indices.size:
        squares = np.add.reduceat(weights.astype(np.float64) ** 2, np.minimum(starts, indices.size - 1))
    norms = np.sqrt(np.where(lengths > 0, squares, 0.0))
    out = []
    for k, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        part, part_indices = weights[start : start + length], indices[start : start + length]
        if length > max_terms:
            # The heaviest terms, ties broken by index, as in `weigh`; indices stay ascending.
            keep = np.sort(np.lexsort((part_indices, -part))[:max_terms])
            part, part_indices = part[keep], part_indices[keep]
            norm = float(np.sqrt(np.dot(part.astype(np.float64), part.astype(np.float64))))
        else:
            norm = norms[k]
        out.append((part_indices, (part / norm if norm > 0 else part).astype(np.float32)))
    return out


def similarity(a: SparseVector, b: SparseVector) -> float:
    """Cosine of two weighted sparse vectors (each sorted by index), 0.0 when either is empty."""
    ia, va = a
    ib, vb = b
    _, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    dot = float(np.dot(np.asarray(va, np.float64)[pa], np.asarray(vb, np.float64)[pb]))
    na = float(np.linalg.norm(np.asarray(va, np.float64)))
    nb = float(np.linalg.norm(np.asarray(vb, np.float64)))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


# --- helpers -------------------------------------------------------------------------------------------------


def _unit_replacement(match: re.Match[str]) -> str:
    number, unit = match.group(1), match.group(2)
    if unit == "в" and re.match(r"\s*\d", match.string[match.end() :]):
        return match.group(0)  # "2 в 1": the Russian preposition, not volts
    if unit == "г" and re.fullmatch(r"(?:19|20)\d\d", number):
        return number  # "2019 г.": a year (Russian "год"), not grams
    return " " + number.replace(",", ".") + _UNIT_CANONICAL[unit] + " "


def _unspaced_unit_replacement(match: re.Match[str]) -> str:
    return " " + match.group(1).replace(",", ".") + UNSPACED_UNITS[match.group(2)] + " "


def _strip_marks(text: str) -> str:
    # "café" = "cafe"; Arabic and Hebrew vowel points go too. Indic and unspaced scripts spell with their marks.
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    kept = "".join(ch for ch in decomposed if not _is_optional_mark(ch))
    return unicodedata.normalize("NFC", kept)


def _is_optional_mark(ch: str) -> bool:
    return (
        unicodedata.category(ch) == "Mn"
        and _UNSPACED_RUN_RE.fullmatch(ch) is None
        and not "\u0900" <= ch <= "\u0dff"
    )


def _weighted_fields(product: Mapping[str, object]) -> list[tuple[str, float]]:
    fields = [
        (_field(product.get("brand")), BRAND_WEIGHT),
        (_field(product.get("title")), TITLE_WEIGHT),
    ]
    attributes = product.get("attributes")
    sources: list[Mapping[str, object]] = [product]
    if isinstance(attributes, Mapping):
        sources.append(attributes)
    # All attribute values together are capped like one field, so that the raw terms of any product stay well
    # under pgvector's 16,000 non-zeros of a stored (unindexed) sparsevec.
    budget = FIELD_CHARS
    for source in sources:
        for key, value in source.items():
            if budget > 0 and reads_lexically(product, str(key)):
                text = _field(value, budget)
                budget -= len(text)
                fields.append((text, ATTRIBUTE_WEIGHT))
    fields.append((_field(product.get("category")), CATEGORY_WEIGHT))
    fields.append((_field(product.get("description"), DESCRIPTION_CHARS), DESCRIPTION_WEIGHT))
    return [(text, weight) for text, weight in fields if text]


def _field(value: object, limit: int = FIELD_CHARS) -> str:
    if value is None or isinstance(value, bool | Mapping):
        return ""
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value if isinstance(v, str | int | float))
    return plain(str(value))[:limit].strip()


def _attribute_key(key: str) -> str:
    return re.sub(r"[\W_]+", "", key.casefold())


@lru_cache(maxsize=1 << 18)
def _word_terms(
    word: str, sizes: tuple[int, ...], dimensions: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # Cached per word: catalogues repeat a small vocabulary, so most words are hashed once per process.
    if is_unspaced(word):
        characters, bigrams = unspaced_terms(word)
        return (
            tuple(_hash("g", c, dimensions) for c in characters),
            tuple(_hash("w", b, dimensions) for b in bigrams),
        )
    folded = _fold(word)
    marked = f"<{folded}>"
    grams = []
    for n in sizes:
        if len(marked) <= n:
            if n == sizes[0]:
                grams.append(marked)
            continue
        grams.extend(marked[i : i + n] for i in range(len(marked) - n + 1))
    return tuple(_hash("g", gram, dimensions) for gram in grams), (_hash("w", word, dimensions),)


def _fold(word: str) -> str:
    if word.isdigit() or _UNIT_TOKEN_RE.fullmatch(word):
        return word
    for old, new in _FOLDS:
        word = word.replace(old, new)
    return _DOUBLED_RE.sub(r"\1", word)


def _hash(namespace: str, term: str, dimensions: int) -> int:
    return zlib.crc32(f"{namespace}\x1f{term}".encode()) % dimensions


def _sublinear(tf: float) -> float:
    return 1.0 + math.log(tf) if tf >= 1.0 else tf


def _mixes_letters_and_digits(text: str) -> bool:
    return any(ch.isdigit() for ch in text) and any(ch.isalpha() for ch in text)


@lru_cache(maxsize=1 << 16)  # asked of every word of every field; the vocabulary repeats
def _can_be_code_part(token: str) -> bool:
    if not token.isascii() or _UNIT_TOKEN_RE.fullmatch(token):
        return False
    return not (token.isalpha() and len(token) > 3)
