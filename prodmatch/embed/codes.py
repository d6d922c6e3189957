"""Product codes: model numbers, MPNs, SKUs and GTIN/EAN/UPC, extracted from a product and written one way.

A code is what two shops copy verbatim when they sell the same thing, so an exact code hit is the strongest
single evidence of a match and a clash of codes the strongest evidence against one. `extract_codes` reads the
code-like attributes (``mpn``, ``model``, ``sku``, ``gtin``, ``артикул``...), the title and the start of the
description and returns normalised codes: model-like codes as upper-case ASCII letters and digits without
separators ("PS-LX350H", "ps lx350h", "PS LX-350 H" -> "PSLX350H", Cyrillic look-alike letters mapped to Latin),
GTINs with a valid GS1 check digit as ``gtin:`` + 14 digits (a UPC-A and its EAN-13 form are equal). A shop's
article number in brackets in a title ("Средство для ванн (009-1)") is a code even without letters, written
as the maker's article attribute is ("0091"), unless it reads as a range (sizes "(36-40)", years
"(2019-2020)"); a bracketed plain number ("(2019)", "(42)") never is. Text in any script around a code is fine:
codes are read from Latin letters and digits ("篮球鞋F36283" -> "F36283").
`compare_codes` turns two products' codes into the agree/conflict signal. Neighbour: `prodmatch.embed.lexical`
(units are recognised with its table, so "8W" or "40mm" are never codes).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache

from prodmatch.embed.lexical import normalize
from prodmatch.markup import plain
from prodmatch.roles import attribute_role

__all__ = [
    "CODE_ATTRIBUTE_KEYS",
    "GTIN_ATTRIBUTE_KEYS",
    "GTIN_PREFIX",
    "code_kind",
    "compare_codes",
    "extract_codes",
    "gtin_check_digit_ok",
    "normalize_gtin",
]

GTIN_PREFIX = "gtin:"
GTIN_LENGTHS = (8, 12, 13, 14)
MIN_CODE_LENGTH = 4
MAX_CODE_LENGTH = 30
DESCRIPTION_CHARS = 1000

# Attribute keys, compared casefolded without separators ("Model Number", "model_number" -> "modelnumber").
GTIN_ATTRIBUTE_KEYS = frozenset(
    {"gtin", "gtin8", "gtin12", "gtin13", "gtin14", "ean", "ean13", "upc", "isbn", "штрихкод"}
)
CODE_ATTRIBUTE_KEYS = frozenset(
    {
        "mpn",
        "model",
        "modelno",
        "modelnumber",
        "partnumber",
        "partno",
        "manufacturerpartnumber",
        "sku",
        "productcode",
        "артикул",
        "модель",
        "кодтовара",
    }
)

# Cyrillic letters that look like Latin ones: inside a code they are typing accidents of the same code.
_LOOKALIKES = str.maketrans("АВЕКМНОРСТХУ", "ABEKMHOPCTXY")
_CHUNK_RE = re.compile(r"[0-9A-Za-zА-Яа-яЁё]+(?:[-/.][0-9A-Za-zА-Яа-яЁё]+)*")
# "(009-1)", "[12-345/6]": digits joined by "-" or "/" inside brackets, the whole bracket's content.
_BRACKETED_ARTICLE_RE = re.compile(r"[(\[]\s*(\d+(?:[-/]\d+)+)\s*[)\]]")
_YEARS_RE = re.compile(r"(?:19|20)\d\d[-/](?:19|20)\d\d")
_SHORT_WORDS = frozenset(
    "a an and as at by for from in of on or the to vs with new set kit pack for и в во на для с со из от по к".split()
)
# Number + suffix that is a measurement, count or ordinal rather than a code: "500GB", "2X", "1080P", "3RD".
_MEASURE_RE = re.compile(
    r"\d+(?:[.,]\d+)?(?:X\d+(?:[.,]\d+)?)*"
    r"(?:MAH|KWH|KW|W|WH|VA|MM|CM|M|KM|NM|ML|L|TB|GB|MB|KB|GHZ|MHZ|KHZ|HZ|KG|MG|G|V|KV|A|MA|IN|FT|OZ|LB|LBS|"
    r"X|P|K|PCS|PC|PK|PACK|BIT|CORE|PORT|MP|MPX|FPS|RPM|DPI|MS|DB|ST|ND|RD|TH|GBPS|MBPS|KBPS|NIT|NITS|S|H|MIN)?"
)
# Interface and standard names that mix letters and digits but name a feature, not a product.
_GENERIC_RE = re.compile(
    r"(?:LP)?G?DDR\d*[A-Z]?|USB\d*[A-C]?|PCIE?\d*X?\d*|HDMI\d*[A-Z]?|SATA\d*|WIFI\d*E?|IPX?\d{1,2}|RJ\d+|CAT\d+[AE]?|"
    r"H26\d|X26\d|MP\d|80211[A-Z]*|BT\d+|LTE\d*|[345]G(?:LTE)?|\d+BIT|W(?:IN|INDOWS)?\d+(?:PRO|HOME)?|QI\d*|"
    r"DVDRW|CDRW|(?:FC)?LGA\d+(?:V\d)?|AM\d(?:PLUS)?|PC\d?L?\d{3,5}[A-Z]?"
    # A number and a word: a count or measure ("240-pin", "16 channel", "6 Gb/s"), not a code.
    r"|\d+(?:[.,]\d+)?[A-Z]{3,}"
)


def extract_codes(product: Mapping[str, object]) -> list[str]:
    """The product's codes, normalised, each once, in order: attributes, title, description.

    Attribute values under `GTIN_ATTRIBUTE_KEYS` count only as GTINs (dropped when the check digit is wrong);
    values under `CODE_ATTRIBUTE_KEYS` may be plain numbers ("85303"); in free text a code must mix letters
    and digits, or be an 8/12/13/14-digit number with a valid GS1 check digit (then a GTIN).
    """
    codes: list[str] = []
    for key, value in _attributes(product):
        if attribute_role(product, key) == "gtin":
            gtin = normalize_gtin(re.sub(r"[\s-]", "", value))
            codes.extend([GTIN_PREFIX + gtin] if gtin else [])
        elif attribute_role(product, key) == "code":
            codes.extend(_text_codes(value, numbers_are_codes=True))
    codes.extend(_text_codes(_text(product.get("title"))))
    codes.extend(_text_codes(_text(product.get("description"))[:DESCRIPTION_CHARS]))
    return list(dict.fromkeys(codes))


def gtin_check_digit_ok(digits: str) -> bool:
    """Whether `digits` (8, 12, 13 or 14 digits: GTIN-8, UPC-A, EAN-13, GTIN-14) end in a valid GS1 check digit."""
    if len(digits) not in GTIN_LENGTHS or not digits.isascii() or not digits.isdigit():
        return False
    body = digits[:-1]
    # GS1: from the right of the body, weights 3, 1, 3, 1...; the check digit tops the sum up to a multiple of 10.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(digits[-1])


def normalize_gtin(digits: str) -> str | None:
    """`digits` as a 14-digit GTIN (zero-padded on the left), or None unless it is a valid GTIN."""
    digits = digits.strip()
    if not gtin_check_digit_ok(digits):
        return None
    return digits.zfill(14)


@lru_cache(maxsize=200_000)  # a link asks for the kinds of every code of every candidate
def code_kind(code: str) -> str:
    """What sort of code `code` is, for `compare_codes`: "gtin", or its letter/digit pattern and length.

    "PSLX350H" -> "ADA:8" (runs of letters A and digits D, then the length). Look-alike products of one maker
    share a pattern and length (PSLX350H / PSLX300H, WH1000XM4 / WH1000XM3); a shop's SKU and a maker's MPN
    rarely do.
    """
    if code.startswith(GTIN_PREFIX):
        return "gtin"
    pattern = _KIND_RUNS.sub(r"\1", code.translate(_KIND_LETTERS))  # "PSLX350H" -> "AAAADDDA" -> "ADA"
    return f"{pattern}:{len(code)}"


_KIND_LETTERS = str.maketrans(
    {**dict.fromkeys(map(chr, range(65, 91)), "A"), **dict.fromkeys("0123456789", "D")}
)
_KIND_RUNS = re.compile(r"([AD])\1+")


def compare_codes(a: Sequence[str], b: Sequence[str]) -> tuple[bool, bool]:
    """(agree, conflict) of two products' codes (as `extract_codes` returns them).

    agree: a code is shared, exactly: a suffix often names another product ("GTX1070" / "GTX1070TI",
    "I77700" / "I77700K"), so near-equal codes do not agree (they usually conflict). conflict: they do not agree, yet some code of `a` and
    some code of `b` are of the same `code_kind` (two different GTINs; two model codes with the same letter/
    digit pattern and length). Codes of different kinds never conflict, so a product listed by its shop SKU
    and one listed by its MPN come out neither agreeing nor conflicting.
    """
    set_a, set_b = set(a), set(b)
    if set_a & set_b:
        return True, False
    kinds_a = {code_kind(code) for code in set_a}
    return False, any(code_kind(code) in kinds_a for code in set_b)


# --- helpers -------------------------------------------------------------------------------------------------


def _attributes(product: Mapping[str, object]) -> list[tuple[str, str]]:
    sources: list[Mapping[str, object]] = [product]
    nested = product.get("attributes")
    if isinstance(nested, Mapping):
        sources.append(nested)
    pairs = []
    for source in sources:
        for key, value in source.items():
            if isinstance(value, str | int) and not isinstance(value, bool):
                pairs.append((re.sub(r"[\W_]+", "", str(key).casefold()), str(value)))
    return pairs


def _text(value: object) -> str:
    return plain(value) if isinstance(value, str) else ""


def _text_codes(text: str, numbers_are_codes: bool = False) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    chunks = [(m.group(0), m.start(), m.end()) for m in _CHUNK_RE.finditer(text)]
    codes = [] if numbers_are_codes else _bracketed_articles(text)
    i = 0
    while i < len(chunks):
        raw, _, end = chunks[i]
        # "MX 518", "PS LX-350 H": a short letter prefix and a trailing single capital belong to the code.
        if (
            i + 1 < len(chunks)
            and _adjacent(text, end, chunks[i + 1][1])
            and _is_short_prefix(raw, chunks[i + 1][0])
        ):
            i += 1
            raw, end = raw + chunks[i][0], chunks[i][2]
        if (
            i + 1 < len(chunks)
            and any(ch.isdigit() for ch in raw)
            and _adjacent(text, end, chunks[i + 1][1])
            and re.fullmatch(r"[A-Z]", chunks[i + 1][0])
        ):
            i += 1
            raw = raw + chunks[i][0]
        i += 1
        code = _normalize_code(raw, numbers_are_codes)
        if code:
            codes.append(code)
    return codes


def _bracketed_articles(text: str) -> list[str]:
    codes = []
    for match in _BRACKETED_ARTICLE_RE.finditer(text):
        parts = re.split(r"[-/]", match.group(1))
        # "(36-40)", "(2019-2020)", "(220/240)": a rising range of plain numbers, not an article
        is_range = (
            len(parts) == 2 and not any(p.startswith("0") for p in parts) and int(parts[0]) < int(parts[1])
        )
        code = None if is_range else _normalize_code(match.group(1), numbers_are_codes=True)
        if code:
            codes.append(code)
    return codes


@lru_cache(
    maxsize=1 << 16
)  # pure, and catalogues repeat their words: a full lexical rebuild calls it per word
def _normalize_code(raw: str, numbers_are_codes: bool) -> str | None:
    if _YEARS_RE.fullmatch(raw):
        return None  # "2019-2020": a season, whose digits can pass a GTIN-8 check by chance
    digits = re.sub(r"[-/.]", "", raw)
    if digits.isascii() and digits.isdigit():
        gtin = normalize_gtin(digits)
        if gtin:
            return GTIN_PREFIX + gtin
        return digits if numbers_are_codes and len(digits) >= MIN_CODE_LENGTH else None
    if _is_measure(raw):
        return None
    code = re.sub(r"[-/.]", "", raw.upper().translate(_LOOKALIKES))
    if not (code.isascii() and code.isalnum()) or not MIN_CODE_LENGTH <= len(code) <= MAX_CODE_LENGTH:
        return None
    if not numbers_are_codes and not (re.search(r"[0-9]", code) and re.search(r"[A-Z]", code)):
        return None
    if not re.search(r"[0-9]", code) or _MEASURE_RE.fullmatch(code) or _GENERIC_RE.fullmatch(code):
        return None
    return code


@lru_cache(maxsize=1 << 16)
def _is_measure(raw: str) -> bool:
    # Units in any script ("8Вт", "40мм", "1,5л") through the lexical space's table.
    tokens = normalize(raw).split()
    return bool(tokens) and all(_MEASURE_RE.fullmatch(t.upper()) for t in tokens)


def _is_short_prefix(chunk: str, next_chunk: str) -> bool:
    # Lower-case catalogues ("ps lx350h") count too, but then the rest must itself look like a code; short
    # words of running text ("for", "in") never start one, and a measurement never continues one ("HP 2GB").
    if not (chunk.isalpha() and len(chunk) <= 3) or chunk.casefold() in _SHORT_WORDS:
        return False
    if not next_chunk.isdigit() and _is_measure(next_chunk):
        return False
    if next_chunk.isdigit() and len(next_chunk) >= 6:
        return False  # "EAN 4006381333931", "Art. 1234567": a label before a number, not part of it
    if chunk.isupper():
        return any(ch.isdigit() for ch in next_chunk)
    return any(ch.isdigit() for ch in next_chunk) and any(ch.isalpha() for ch in next_chunk)


def _adjacent(text: str, end: int, start: int) -> bool:
    return text[end:start] in (" ", "-")
