"""Price signal: how far apart two offers' prices are, as |log(price_a / price_b)|.

A pair whose prices cannot be compared gets NaN (missing), which the matcher treats as "no evidence" rather
than as a mismatch: a price is absent, not positive, or both offers name currencies that differ (we do not
convert: exchange rates drift and a stored matcher must not depend on them). An offer without a currency is
assumed to be in the other offer's currency, because most exports leave the column empty.
"""

from collections.abc import Sequence

import numpy as np


def price_log_ratio(
    left_prices: Sequence[float | None],
    left_currencies: Sequence[str | None],
    right_prices: Sequence[float | None],
    right_currencies: Sequence[str | None],
) -> np.ndarray:
    """|log(left / right)| per pair (0 = same price); NaN where the prices cannot be compared."""
    left = _as_prices(left_prices)
    right = _as_prices(right_prices)
    ratio = np.abs(np.log(left) - np.log(right))
    differ = np.array(
        [_currencies_differ(a, b) for a, b in zip(left_currencies, right_currencies, strict=True)], dtype=bool
    )
    ratio[differ] = np.nan
    return ratio.astype(np.float32)


def _as_prices(prices: Sequence[float | None]) -> np.ndarray:
    values = np.array([np.nan if p is None else float(p) for p in prices], dtype=np.float64)
    values[~(values > 0)] = np.nan  # 0, negative and NaN prices carry no information
    return values


def _currencies_differ(a: str | None, b: str | None) -> bool:
    a = (a or "").strip().upper()
    b = (b or "").strip().upper()
    return bool(a and b and a != b)
