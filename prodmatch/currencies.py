"""Which currency a price or a currency column names, as an ISO 4217 code: the one place ingest and the price
signal ask.

Shops write currencies as codes (`RUB`, `usd`), signs (`₽`, `€`, `R$`) and words (`руб.`, `元`, `euro`), and
an application writing rows into the database may store any of them in `products.currency`; two offers in
roubles must compare as roubles whether one writes `RUB` and the other `руб.`. `iso_currency` reads all of
these. Signs that several currencies share name none: `$` alone is the US dollar and the peso of Mexico,
Colombia, Chile or Argentina (`US$`, `MX$`, `C$` are not ambiguous), `¥` / `￥` the yen and the yuan, `kr` four
crowns. Such a price is stored without a currency, and the price signal then tells catalogues in different
currencies apart by their typical prices (`prodmatch.match.signals.price`) instead of comparing pesos with
dollars as one currency: an ambiguity guessed wrong costs a price clash on every true pair.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Signs and words -> ISO code, matched case-blind in a price text or a currency column, longest first (so
# "R$" wins over "$", "грн" over "р."). None: several currencies use it, so it names none.
_SIGNS: dict[str, str | None] = {
    "US$": "USD",
    "USD$": "USD",
    "R$": "BRL",
    "CA$": "CAD",
    "CAN$": "CAD",
    "C$": "CAD",
    "AU$": "AUD",
    "A$": "AUD",
    "NZ$": "NZD",
    "HK$": "HKD",
    "SG$": "SGD",
    "S$": "SGD",
    "NT$": "TWD",
    "MX$": "MXN",
    "$": None,
    "€": "EUR",
    "euro": "EUR",
    "евро": "EUR",
    "£": "GBP",
    "₽": "RUB",
    "руб": "RUB",
    "р.": "RUB",
    "¥": None,
    "￥": None,
    "元": "CNY",
    "人民币": "CNY",
    "円": "JPY",
    "₩": "KRW",
    "원": "KRW",
    "₹": "INR",
    "₺": "TRY",
    "฿": "THB",
    "บาท": "THB",
    "₫": "VND",
    "₴": "UAH",
    "грн": "UAH",
    "₸": "KZT",
    "тенге": "KZT",
    "zł": "PLN",
    "kč": "CZK",
    "₪": "ILS",
    "₱": "PHP",
    "лв": "BGN",
    "kr": None,
}
# Codes people write that ISO does not use, or no longer does.
_CODE_ALIASES = {"RMB": "CNY", "RUR": "RUB", "NTD": "TWD", "YEN": "JPY", "EURO": "EUR", "LEI": "RON"}
# What exports write in an empty currency column.
_NO_CURRENCY = frozenset({"null", "none", "nan", "n/a", "na", "-", "—", "?"})
_CODE = re.compile(r"(?<![A-Za-z])([A-Za-z]{3,4})(?![A-Za-z])")
_SIGN = re.compile("|".join(re.escape(s) for s in sorted(_SIGNS, key=len, reverse=True)), re.IGNORECASE)
_SIGN_CODES = {sign.lower(): code for sign, code in _SIGNS.items()}  # what _SIGN found, lower-cased -> code


def iso_currency(text: str | None, *, any_case: bool = False) -> str | None:
    """The ISO 4217 code `text` names ("1 299 руб." -> "RUB", "R$ 10" -> "BRL", "CNY" -> "CNY"), or None
    where it names none or only a sign several currencies share ("$", "¥").

    A three-letter code counts when written in capitals, as in prices ("1299 RUB"); with `any_case` (a
    currency column, which holds nothing else) also in lower case ("usd")."""
    return _iso_currency(text, any_case) if text else None


@lru_cache(maxsize=4096)
def _iso_currency(text: str, any_case: bool) -> str | None:
    for match in _CODE.finditer(text):
        word = match.group(1)
        upper = word.upper()
        if upper in _CODE_ALIASES and (any_case or word.isupper()):
            return _CODE_ALIASES[upper]
        if len(word) == 3 and (word.isupper() or any_case):
            return upper
    sign = _SIGN.search(text)
    return _SIGN_CODES[sign.group(0).lower()] if sign else None


def currency_key(currency: str | None) -> str:
    """A stored currency as prices are compared by it: its ISO code ("руб." -> "RUB", "usd " -> "USD"); ""
    for none, a placeholder ("null", "n/a") or a sign several currencies share ("$"); other text trimmed, in
    capitals."""
    return _currency_key(currency.strip()) if currency and currency.strip() else ""


@lru_cache(maxsize=4096)
def _currency_key(text: str) -> str:
    code = _iso_currency(text, True)
    if code:
        return code
    if _SIGN.search(text) or text.casefold() in _NO_CURRENCY:
        return ""
    return text.upper()
