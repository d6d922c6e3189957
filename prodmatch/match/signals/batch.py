"""Product signals of many pairs at once: the work done once per distinct product, the pairs as array operations.

`features.per_pair_product_signals` is the definition of every product signal, one pair at a time through the per-signal
modules (price, brand, text, codes, attributes). A link scores millions of candidate pairs among far fewer
products, so this module computes the same columns, with the same values, the other way round: each product's
tokens, numbers, codes and normalised brand once; then set overlaps as row products of binary token matrices
(exact integer counts, so Jaccard and containment come out bit-identical); signals that depend on a few distinct
values (brands, measured numbers) once per distinct combination; and the rest (substring tests) as short Python
loops over only the pairs that need them. Pairs are processed in chunks, so memory stays bounded by the products
and one chunk, not by all pairs times all signals. Tokens, numbers and measures come from `text`'s own
functions, so titles in any script (Chinese character bigrams, glued Russian words) get the same values here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from prodmatch.match.signals import attributes, brand, codes, colours, price, text
from prodmatch.roles import product_roles

Product = Mapping[str, object]
CodeKind = Callable[[str], str]

PAIR_CHUNK = 1 << 19  # pairs per chunk of the sparse row products


def product_signals(
    products: Sequence[Product],
    left: np.ndarray,
    right: np.ndarray,
    *,
    normalize_brand: Callable[[str], str] | None = None,
    code_kind: CodeKind | None = None,
) -> dict[str, np.ndarray]:
    """The PRODUCT_FEATURES columns of pairs (products[left[i]], products[right[i]]).

    Equal, value for value, to `features.per_pair_product_signals` on the same pairs with `compare_codes` that agrees on a
    shared code and conflicts when codes of one `code_kind` differ (`prodmatch.embed.codes.compare_codes` with
    its `code_kind`; the default is `prodmatch.match.signals.codes`'s prefix kind).
    """
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    norm = normalize_brand or brand.normalize_brand
    kind = code_kind or _prefix_kind
    titles = [p.get("title") or "" for p in products]
    title_words = _TokenSets([text._words(t) for t in titles])
    model_tokens = _TokenSets([text._model_tokens(t) for t in titles])
    numbers = _TokenSets([text._numbers(t) for t in titles])
    category_words = _TokenSets([text._words(p.get("category") or "") for p in products])
    product_codes = [p.get("codes") or () for p in products]
    agree, conflict = _codes(product_codes, kind, left, right)
    numbers_agree, numbers_conflict = _measures(titles, left, right)
    colour_agree, colour_conflict = _colours(products, left, right)
    out = {
        "price_log_ratio": _price(products, left, right),
        "brand_equal": _brand_equal(products, norm, left, right),
        "brand_in_other_title": _brand_in_other_title(products, titles, norm, left, right),
        "title_jaccard": title_words.jaccard(left, right),
        "title_containment": title_words.containment(left, right),
        "model_token_jaccard": model_tokens.jaccard(left, right),
        "model_token_containment": _model_containment(model_tokens, left, right),
        "numbers_agree": numbers_agree,
        "numbers_conflict": numbers_conflict,
        "plain_number_jaccard": numbers.jaccard(left, right),
        "title_length_ratio": title_words.length_ratio(left, right),
        "category_jaccard": category_words.jaccard(left, right),
        "codes_agree": agree,
        "codes_conflict": conflict,
        "code_in_other_text": _code_in_other_text(products, product_codes, left, right),
        "attribute_agreement": _attributes(products, left, right),
        "colour_agree": colour_agree,
        "colour_conflict": colour_conflict,
    }
    return out


class _TokenSets:
    """One token set per product as a binary sparse matrix: pair overlaps are row products, counted exactly."""

    def __init__(self, sets: Sequence[frozenset]) -> None:
        self.sets = sets
        vocabulary: dict[object, int] = {}
        indices = [vocabulary.setdefault(token, len(vocabulary)) for s in sets for token in s]
        self.sizes = np.array([len(s) for s in sets], dtype=np.int64)
        indptr = np.r_[0, np.cumsum(self.sizes)]
        self.matrix = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), np.array(indices, dtype=np.int64), indptr),
            shape=(len(sets), max(len(vocabulary), 1)),
        )

    @classmethod
    def from_rows(cls, n: int, rows: Sequence[int], tokens: Sequence[object]) -> _TokenSets:
        """The sets of n products from (product, token) items in product order, without a set per product."""
        made = cls.__new__(cls)
        made.sets = None  # only _model_containment reads the sets, of sets built by __init__
        vocabulary: dict[object, int] = {}
        indices = [vocabulary.setdefault(token, len(vocabulary)) for token in tokens]
        made.sizes = np.bincount(np.asarray(rows, dtype=np.int64), minlength=n).astype(np.int64)
        made.matrix = sp.csr_matrix(
            (
                np.ones(len(indices), dtype=np.float32),
                np.array(indices, dtype=np.int64),
                np.r_[0, np.cumsum(made.sizes)],
            ),
            shape=(n, max(len(vocabulary), 1)),
        )
        return made

    def overlap(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """|A ∩ B| per pair (as float64; exact: counts of ones)."""
        out = np.zeros(len(left), dtype=np.float64)
        for start in range(0, len(left), PAIR_CHUNK):
            rows = self.matrix[left[start : start + PAIR_CHUNK]]
            cols = self.matrix[right[start : start + PAIR_CHUNK]]
            out[start : start + PAIR_CHUNK] = np.asarray(rows.multiply(cols).sum(axis=1)).ravel()
        return out

    def _both(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.sizes[left], self.sizes[right]
        return a, b, (a > 0) & (b > 0)

    def jaccard(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        a, b, ok = self._both(left, right)
        inter = self.overlap(left[ok], right[ok])
        return _column(len(left), ok, inter / (a[ok] + b[ok] - inter))

    def containment(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        a, b, ok = self._both(left, right)
        return _column(len(left), ok, self.overlap(left[ok], right[ok]) / np.minimum(a[ok], b[ok]))

    def length_ratio(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        a, b, ok = self._both(left, right)
        return _column(len(left), ok, np.minimum(a[ok], b[ok]) / np.maximum(a[ok], b[ok]))


def _column(n: int, ok: np.ndarray, values: np.ndarray) -> np.ndarray:
    # float64 ratios of exact counts, rounded once to float32: what the per-pair code stores
    out = np.full(n, np.nan, dtype=np.float32)
    out[ok] = values
    return out


def _model_containment(tokens: _TokenSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a, b, ok = tokens._both(left, right)
    pairs = np.flatnonzero(ok)
    small = np.minimum(a[pairs], b[pairs])
    values = np.ones(len(pairs), dtype=np.float64)  # every token of the smaller set found as it is
    # Only where some token is not found as it is does the substring rule ("lx350h" in "pslx350hb") matter.
    inexact = np.flatnonzero(tokens.overlap(left[pairs], right[pairs]) < small)
    sets = tokens.sets
    values[inexact] = [
        text._model_containment(sets[i], sets[j])
        for i, j in zip(left[pairs[inexact]].tolist(), right[pairs[inexact]].tolist(), strict=True)
    ]
    return _column(len(left), ok, values)


def _measures(titles: Sequence[str], left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numbers_agree / numbers_conflict: per measured dimension, the Jaccard of the two titles' values."""
    found = [text._measures(title) for title in titles]
    dimensions = sorted({d for f in found for d in f})
    n = len(left)
    total = np.zeros(n, dtype=np.float64)  # sum of the shared dimensions' Jaccards
    shared = np.zeros(n, dtype=np.int64)
    conflict = np.zeros(n, dtype=bool)
    # each dimension's values as token sets, built from one pass over the products (most have few dimensions)
    rows: dict[str, list[int]] = {d: [] for d in dimensions}
    tokens: dict[str, list[float]] = {d: [] for d in dimensions}
    for i, f in enumerate(found):
        for dimension, measured in f.items():
            rows[dimension] += [i] * len(measured)
            tokens[dimension] += measured
    for dimension in dimensions:
        values = _TokenSets.from_rows(len(found), rows[dimension], tokens[dimension])
        a, b, both = values._both(left, right)
        pairs = np.flatnonzero(both)
        inter = values.overlap(left[pairs], right[pairs])
        total[pairs] += inter / (a[pairs] + b[pairs] - inter)
        shared[pairs] += 1
        conflict[pairs] |= inter == 0
    agree = np.full(n, np.nan, dtype=np.float32)
    clash = np.full(n, np.nan, dtype=np.float32)
    ok = shared > 0
    # One or two terms add up alike in any order; a mean of more follows the per-pair code's own order.
    agree[ok], clash[ok] = total[ok] / shared[ok], conflict[ok]
    for i in np.flatnonzero(shared > 2).tolist():
        agree[i], clash[i] = text.measures_agreement(found[left[i]], found[right[i]])
    return agree, clash


def _colours(
    products: Sequence[Product], left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """colour_agree / colour_conflict: each product's colour set once, each distinct pair of sets once."""
    keys: dict[frozenset, int] = {}
    ids = np.array([keys.setdefault(colours.colours(p), len(keys)) for p in products], dtype=np.int64)
    if not len(left):
        return np.empty(0, np.float32), np.empty(0, np.float32)
    distinct = list(keys)
    combos, inverse = _distinct(ids[left], ids[right])
    values = np.array(
        [colours.compare_colours(distinct[a], distinct[b]) for a, b in combos.tolist()], dtype=np.float32
    ).reshape(-1, 2)
    return values[inverse, 0], values[inverse, 1]


def _distinct(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) combinations and, per pair, the index of its combination."""
    if not len(a):
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    width = int(max(a.max(), b.max())) + 1  # one int64 key per pair: a 1-d unique, not a row-wise one
    keys, inverse = np.unique(a.astype(np.int64) * width + b, return_inverse=True)
    return np.stack([keys // width, keys % width], axis=1), inverse.ravel()


def _price(products: Sequence[Product], left: np.ndarray, right: np.ndarray) -> np.ndarray:
    prices = np.log(price.as_prices([p.get("price") for p in products]))
    codes_seen: dict[str, int] = {"": -1}  # no currency: taken as the other offer's, unless the scales differ
    currency = np.array(
        [_currency_id(codes_seen, price.currency_key(p.get("currency"))) for p in products], dtype=np.int64
    )
    scales = price.as_scales([p.get("price_scale") for p in products])
    ratio = np.abs(prices[left] - prices[right])
    cl, cr = currency[left], currency[right]
    ratio[(cl >= 0) & (cr >= 0) & (cl != cr)] = np.nan  # currencies that differ: no exchange rates here
    ratio[((cl < 0) | (cr < 0)) & price.scales_apart(scales[left], scales[right])] = np.nan
    return ratio.astype(np.float32)


def _currency_id(seen: dict[str, int], code: str) -> int:
    if code not in seen:
        seen[code] = len(seen)
    return seen[code]


def _brand_equal(
    products: Sequence[Product], norm: Callable[[str], str], left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    names: dict[tuple[str, ...], int] = {}
    ids = np.array([names.setdefault(_offer_names(p, norm), len(names)) for p in products], np.int64)
    distinct = list(names)
    combos, inverse = _distinct(ids[left], ids[right])
    values = np.array(
        [brand.names_agree(distinct[x], distinct[y]) for x, y in combos.tolist()], dtype=np.float32
    )
    return values[inverse] if len(left) else np.full(0, np.nan, np.float32)


def _offer_names(product: Product, norm: Callable[[str], str]) -> tuple[str, ...]:
    return brand.offer_names(product.get("brand"), product.get("brand_aliases"), norm)


def _brand_in_other_title(
    products: Sequence[Product],
    titles: Sequence[str],
    norm: Callable[[str], str],
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    brands = [_offer_names(p, norm) for p in products]
    first = [b[0] if b else "" for b in brands]  # most brands have one name: one substring test per pair
    several = np.array([len(b) > 1 for b in brands], dtype=bool)
    normalised_titles = [norm(t) for t in titles]
    ascii_titles = [t.isascii() for t in normalised_titles]
    latin_others = [tuple(n for n in b[1:] if n.isascii()) for b in brands]
    has = np.array([bool(b) for b in brands])
    out = np.full(len(left), np.nan, dtype=np.float32)
    found = np.zeros(len(left), dtype=bool)
    for own, other in ((left, right), (right, left)):
        asks = np.flatnonzero(has[own])
        mine, theirs = own[asks].tolist(), other[asks].tolist()
        hits = np.array([first[i] in normalised_titles[j] for i, j in zip(mine, theirs, strict=True)], bool)
        for k in np.flatnonzero(~hits & several[own[asks]]).tolist():  # the other names of "Nike/耐克"
            title = normalised_titles[theirs[k]]
            # a name in another script cannot be in an ASCII title (most titles; a brand's aliases are mostly so)
            others = latin_others[mine[k]] if ascii_titles[theirs[k]] else brands[mine[k]][1:]
            hits[k] = any(name in title for name in others)
        found[asks[hits]] = True
    known = has[left] | has[right]
    out[known] = found[known]
    return out


def _prefix_kind(code: str) -> str:
    return code.split(":", 1)[0] if ":" in code else "code"


def _codes(
    product_codes: Sequence[Sequence[str]], kind: CodeKind, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """codes_agree / codes_conflict: a shared code; else codes of one kind on both sides. NaN without codes."""
    shared = _TokenSets([frozenset(c) for c in product_codes])
    kinds = _TokenSets([frozenset(kind(code) for code in c) for c in product_codes])
    has = np.array([bool(c) for c in product_codes])
    ok = has[left] & has[right]
    agree = shared.overlap(left[ok], right[ok]) > 0
    conflict = ~agree & (kinds.overlap(left[ok], right[ok]) > 0)
    return _column(len(left), ok, agree), _column(len(left), ok, conflict)


def _code_in_other_text(
    products: Sequence[Product], product_codes: Sequence[Sequence[str]], left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    squashed = [codes._squash(codes.searched_text(p)) for p in products]
    forms = [codes.written_forms(c) for c in product_codes]
    has_code = np.array([bool(c) for c in product_codes])
    has_form = np.array([bool(f) for f in forms])
    ok = has_code[left] | has_code[right]
    out = np.full(len(left), np.nan, dtype=np.float32)
    out[ok] = 0.0
    found = np.zeros(len(left), dtype=bool)
    for own, other in ((left, right), (right, left)):
        asks = np.flatnonzero(ok & has_form[own] & ~found)
        hits = [
            any(form in squashed[j] for form in forms[i])
            for i, j in zip(own[asks].tolist(), other[asks].tolist(), strict=True)
        ]
        found[asks[np.array(hits, dtype=bool)]] = True
    out[found] = 1.0
    return out


def _attributes(products: Sequence[Product], left: np.ndarray, right: np.ndarray) -> np.ndarray:
    normalised = [attributes.normalised(p.get("attributes"), product_roles(p)) for p in products]
    has = np.array([bool(a) for a in normalised])
    out = np.full(len(left), np.nan, dtype=np.float32)
    both = np.flatnonzero(has[left] & has[right])
    out[both] = [
        attributes.agreement(normalised[i], normalised[j])
        for i, j in zip(left[both].tolist(), right[both].tolist(), strict=True)
    ]
    return out
