"""Price signal: how far apart two offers' prices are, as |log(price_a / price_b)|.

A pair whose prices cannot be compared gets NaN (missing), which the matcher treats as "no evidence" rather
than as a mismatch: a price is absent, not positive, or both offers name currencies that differ (we do not
convert: exchange rates drift and a stored matcher must not depend on them); currencies compare by their ISO
code (`prodmatch.currencies`: "руб." = "RUB"; "$" and "¥" name none, as dollars and pesos, yen and yuan share
them). An offer without a currency is assumed to be in the other offer's currency, because most exports leave
the column empty, unless the typical prices of the two sides say otherwise: a yen shop and a dollar shop that both leave the column empty have
prices about 150x apart on every pair, which would read as a price clash on every true match.

The typical price of a side is its *price scale*: the median log price of its catalogue's offers in the same
currency (`price_scales`; offers without one are a group of their own). Where an offer names no currency and
the two offers' scales are `CURRENCY_GAP` times or more apart, the pair's prices are not compared. Two
catalogues of one currency and one trade sit well within it (the development sets: 1.0-1.3x; a wholesale feed
at 40% of retail: 2.5x); most currency pairs lie beyond it (CNY/USD 7x, RUB/CNY 12x, JPY/USD 150x). Nearer
currencies (EUR/USD, GBP/EUR) stay compared, and read as the modest difference they are (1.5x: 0.41). A
missed gap costs a price clash on every true pair; a false one only the price evidence of the catalogue pair.
"""

from collections.abc import Iterable, Sequence

import numpy as np

from prodmatch.currencies import currency_key

CURRENCY_GAP = 3.0  # typical prices this many times apart, one side naming no currency: not compared
MIN_PRICED = 20  # a price scale needs this many priced offers of its catalogue in its currency
SCALE_BINS = 10  # a price scale is read from a histogram of ln(price) in bins of 1/SCALE_BINS (about 10%)


def price_log_ratio(
    left_prices: Sequence[float | None],
    left_currencies: Sequence[str | None],
    right_prices: Sequence[float | None],
    right_currencies: Sequence[str | None],
    left_scales: Sequence[float | None] | None = None,
    right_scales: Sequence[float | None] | None = None,
) -> np.ndarray:
    """|log(left / right)| per pair (0 = same price); NaN where the prices cannot be compared.

    `left_scales` / `right_scales`: each offer's price scale (`price_scales`; None where unknown)."""
    left = as_prices(left_prices)
    right = as_prices(right_prices)
    ratio = np.abs(np.log(left) - np.log(right))
    named = [
        (currency_key(a), currency_key(b)) for a, b in zip(left_currencies, right_currencies, strict=True)
    ]
    differ = np.array([bool(a and b and a != b) for a, b in named], dtype=bool)
    ratio[differ] = np.nan
    if left_scales is not None and right_scales is not None:
        unnamed = np.array([not (a and b) for a, b in named], dtype=bool)
        ratio[unnamed & scales_apart(as_scales(left_scales), as_scales(right_scales))] = np.nan
    return ratio.astype(np.float32)


def scales_apart(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Whether two price scales are CURRENCY_GAP times or more apart (False where either is unknown, NaN)."""
    with np.errstate(invalid="ignore"):
        return np.abs(left - right) >= np.log(CURRENCY_GAP)


def price_scales(histogram: Iterable[tuple[object, str | None, int, int]]) -> dict[tuple[object, str], float]:
    """Price scales from (catalogue, currency as stored, bin of floor(ln(price) * SCALE_BINS), offers) rows.

    Returns {(catalogue, currency normalised as `currency_key`): median ln(price)} for each group of at least
    MIN_PRICED offers; the median is the middle offer's bin centre, so it is good to a twentieth of a unit of
    ln(price) (5%), far finer than CURRENCY_GAP (ln 3 = 1.1)."""
    groups: dict[tuple[object, str], dict[int, int]] = {}
    for catalog, currency, bin_, offers in histogram:
        bins = groups.setdefault((catalog, currency_key(currency)), {})
        bins[int(bin_)] = bins.get(int(bin_), 0) + int(offers)
    out = {}
    for group, bins in groups.items():
        total = sum(bins.values())
        if total < MIN_PRICED:
            continue
        seen = 0
        for bin_ in sorted(bins):
            seen += bins[bin_]
            if 2 * seen >= total:
                out[group] = (bin_ + 0.5) / SCALE_BINS
                break
    return out


def as_prices(prices: Sequence[float | None]) -> np.ndarray:
    """Prices as float64, NaN where a price is missing or not positive."""
    values = np.array([np.nan if p is None else float(p) for p in prices], dtype=np.float64)
    values[~(values > 0)] = np.nan  # 0, negative and NaN prices carry no information
    return values


def as_scales(scales: Sequence[float | None]) -> np.ndarray:
    """Price scales as float64, NaN where unknown."""
    return np.array([np.nan if s is None else float(s) for s in scales], dtype=np.float64)
