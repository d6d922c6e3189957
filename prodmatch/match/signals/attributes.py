"""Attribute signal: of the attributes that matter which both offers fill in (colour, size, code...), how many agree.

Attributes are the catalogue columns beyond the canonical ones (prodmatch keeps them as a JSON object per
product), named in each shop's language. Keys are compared by role (`prodmatch.roles`): brand, code and GTIN keys
as their role whatever their name (``Art.-Nr.`` vs ``артикул``: both code), built-in identifying keys as their
concept (``Farbe`` vs ``颜色``: colour), other keys under their own name (after NFKC, case folding, no accents,
spaces or punctuation); noise keys (season, sales channel, URLs, stock) and keys a catalogue switched off are
not compared. A catalogue's own roles travel with each product under `prodmatch.roles.ROLES_FIELD`. Values are
compared after NFKC, case folding and removal of spaces and punctuation, so "Space Grey" equals "space-grey";
where one offer fills several keys of one role (an ``sku`` and an ``mpn``), any shared value counts as agreement.
Offers of two shops rarely share keys, hence NaN (no evidence) where no key is shared, and a minimum length of
values is not imposed: "M" vs "L" is a real clash.
"""

import re
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

from prodmatch.match.signals.colours import text_colours
from prodmatch.match.signals.text import quantity
from prodmatch.roles import comparison_slot, normalize_value

COLOUR_SLOT = "identifying:colour"
_LITERAL_SLOTS = frozenset({"brand", "code", "gtin"})
_DIGIT = re.compile(r"\d")
_COLOUR = (
    "\x1ecolour="  # a canonical colour, with the script it was written in: never equal to a written value
)


def _script(value: str) -> str:
    """The script of a value's first letter ("LATIN", "CYRILLIC", "CJK", "KATAKANA", "HANGUL", "THAI"...)."""
    letter = next((ch for ch in value if ch.isalpha()), "")
    return unicodedata.name(letter, "?").split(" ", 1)[0] if letter else "?"


Normalised = Mapping[str, frozenset[str]]


def attribute_agreement(
    left_attributes: Sequence[Mapping[str, object] | None],
    right_attributes: Sequence[Mapping[str, object] | None],
    left_roles: Sequence[Mapping[str, str] | None] | None = None,
    right_roles: Sequence[Mapping[str, str] | None] | None = None,
) -> np.ndarray:
    """Share of the compared attribute slots filled in on both sides whose values agree; NaN where none is shared.

    `left_roles` / `right_roles`: each product's catalogue overrides ({normalised key: role}; None: built-in)."""
    n = len(left_attributes)
    left_roles = left_roles if left_roles is not None else [None] * n
    right_roles = right_roles if right_roles is not None else [None] * n
    out = np.full(n, np.nan, dtype=np.float32)
    for i, (a, b, ra, rb) in enumerate(
        zip(left_attributes, right_attributes, left_roles, right_roles, strict=True)
    ):
        out[i] = agreement(normalised(a, ra), normalised(b, rb))
    return out


def conflict(a: Normalised, b: Normalised) -> bool:
    """Whether some slot both mappings fill has no value in common (a size or colour clash)."""
    return any(not _agree(a[k], b[k]) for k in a.keys() & b.keys())


def agreement(a: Normalised, b: Normalised) -> float:
    """Share of the slots of two normalised attribute mappings whose values agree; NaN where none is shared."""
    shared = a.keys() & b.keys()
    if not shared:
        return np.nan
    return sum(_agree(a[k], b[k]) for k in shared) / len(shared)


def _agree(a: frozenset[str], b: frozenset[str]) -> bool:
    # a written value or a quantity in common; or one colour written in two scripts (White / ホワイト): in one
    # script, two words of one colour are two shades a shop tells apart (navy / blue), so they do not agree
    colours_a = []
    for value in a:
        if value.startswith(_COLOUR):
            colours_a.append(value.split("@", 1))
        elif value in b:
            return True
    if not colours_a:
        return False
    colours_b = [value.split("@", 1) for value in b if value.startswith(_COLOUR)]
    return any(c == d and s != t for c, s in colours_a for d, t in colours_b)


def normalised(attributes: Mapping[str, object] | None, roles: Mapping[str, str] | None = None) -> Normalised:
    """{comparison slot: normalised values} of one product's attributes (`prodmatch.roles.comparison_slot`).

    Besides its written form, a colour value holds the canonical colours it names, with the script it is written
    in (``ホワイト`` and ``White`` agree, ``navy`` and ``blue`` do not: `_agree`), and a value that is one quantity,
    not a brand or a code, that quantity in a base unit (``500ml`` and ``0,5 л`` both hold a volume of 500; a
    class such as ``高跟(5-8cm)`` compares as written: `prodmatch.match.signals.text.quantity`)."""
    out: dict[str, set[str]] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = normalize_value(str(value))
            slot = comparison_slot(str(key), roles) if text else None
            if slot is not None:
                out.setdefault(slot, set()).update((text, *_canonical(slot, str(value))))
    return {slot: frozenset(values) for slot, values in out.items()}


def _canonical(slot: str, value: str) -> tuple[str, ...]:
    if slot == COLOUR_SLOT:
        script = _script(value)
        return tuple(f"{_COLOUR}{c}@{script}" for c in text_colours(value, in_attribute=True))
    if slot in _LITERAL_SLOTS or not _DIGIT.search(value):
        return ()
    found = quantity(value)
    return (f"\x1f{found[0]}={found[1]}",) if found else ()
