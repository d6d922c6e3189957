"""Prices of two catalogues in different currencies that neither file names: not a clash on every pair.

A yen shop against a dollar marketplace, both without a currency column: each true pair's prices are ~150x
apart. Before price scales every pair read that as a price clash (|log ratio| 5.0): the built-in matcher's
probability of a clear twin fell from 0.95 to 0.74-0.80, and a twin with less evidence fell under its
threshold. Now each side's typical price (the median of its catalogue's prices in that currency) tells two
currencies apart, and such pairs get no price evidence, as pairs that name different currencies do.
"""

from __future__ import annotations

import math

import pytest
from builders import shoes_in_two_currencies

from prodmatch.ingest.load import ingest_file
from prodmatch.match.link import link
from prodmatch.match.signals import price


@pytest.fixture
def yen_and_dollars(conn, tmp_path):
    shop, market = shoes_in_two_currencies(tmp_path)
    ingest_file(conn, shop, "yen-shop")
    ingest_file(conn, market, "dollar-market")
    return conn


def _pairs(conn, run_id: int) -> dict[tuple[str, str], tuple[float, bool, float | None]]:
    """Every stored pair of a run: {(source, target): (match probability, accepted, stored price signal)}."""
    rows = conn.execute(
        "SELECT s.external_id, t.external_id, m.match_probability, m.accepted,"
        " (m.signals ->> 'price_log_ratio')::float8"
        " FROM prodmatch.matches m JOIN prodmatch.products s ON s.id = m.source_product_id"
        " JOIN prodmatch.products t ON t.id = m.target_product_id WHERE m.run_id = %s",
        (run_id,),
    ).fetchall()
    return {(s, t): (p, ok, ratio) for s, t, p, ok, ratio in rows}


def test_a_yen_shop_and_a_dollar_marketplace_link_as_well_as_two_dollar_catalogues(yen_and_dollars, tmp_path):
    conn = yen_and_dollars
    # the same shop in dollars (the marketplace's prices are 5% higher), and with no price column at all
    ingest_file(conn, shoes_in_two_currencies(tmp_path / "dollars", shop_rate=1.0)[0], "dollar-shop")
    lines = (tmp_path / "shop.csv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "unpriced.csv").write_text("".join(line.rsplit(",", 1)[0] + "\n" for line in lines), "utf-8")
    ingest_file(conn, tmp_path / "unpriced.csv", "unpriced-shop")
    yen, dollars, unpriced = (
        _pairs(conn, link(conn, shop, "dollar-market").run_id)
        for shop in ("yen-shop", "dollar-shop", "unpriced-shop")
    )

    twins = {(f"s{i}", f"m{i}") for i in range(16)}
    for pairs in (yen, dollars, unpriced):
        assert {pair for pair, (_, ok, _) in pairs.items() if ok} == twins  # every twin, no look-alike
    assert all(ratio is None for _, _, ratio in yen.values())  # no price evidence either way
    assert all(dollars[pair][2] == pytest.approx(math.log(1.05), abs=2e-4) for pair in twins)
    # a currency gap weighs exactly as no price: before price scales every yen pair was a 150x price clash,
    # which cost each twin 0.15-0.20 of probability (0.74-0.80 where the dollar shop's twins had 0.95)
    assert {pair: p for pair, (p, _, _) in yen.items()} == {pair: p for pair, (p, _, _) in unpriced.items()}
    assert min(yen[pair][0] for pair in twins) > max(
        p for pair, (p, _, _) in yen.items() if pair not in twins
    )


def test_a_peso_shop_and_a_dollar_marketplace_that_both_write_dollar_signs(conn, tmp_path):
    # "$" is the dollar's sign and the Mexican, Colombian and Chilean peso's: read as dollars on both sides,
    # a peso shop's twins were 17x dearer than the marketplace's on every pair. It names no currency now, and
    # the two catalogues' typical prices tell the currencies apart, as for files with no sign at all.
    pesos, market = shoes_in_two_currencies(tmp_path / "pesos", shop_rate=17.0, sign="$")
    ingest_file(conn, pesos, "peso-shop")
    ingest_file(conn, market, "dollar-market")
    ingest_file(conn, shoes_in_two_currencies(tmp_path / "plain", shop_rate=17.0)[0], "unsigned-shop")
    stored = conn.execute("SELECT DISTINCT price IS NOT NULL, currency FROM prodmatch.products").fetchall()
    assert stored == [(True, None)]
    signed, unsigned = (
        _pairs(conn, link(conn, s, "dollar-market").run_id) for s in ("peso-shop", "unsigned-shop")
    )
    twins = {(f"s{i}", f"m{i}") for i in range(16)}
    assert {pair for pair, (_, ok, _) in signed.items() if ok} == twins
    assert all(ratio is None for _, _, ratio in signed.values())
    assert signed == unsigned


def test_price_scales_are_medians_of_groups_large_enough():
    rows = [(1, None, 46, 15), (1, "", 47, 10), (2, "usd ", 46, 12), (2, "USD", 60, 12), (3, "EUR", 10, 19)]
    scales = price.price_scales(rows)
    # catalogue 1 without a currency: 25 offers, the middle one in bin 46 -> 4.65; "usd " and "USD" are one
    # group of 24 whose middle offer is the 12th (bin 46); catalogue 3 has too few offers for a scale
    assert scales == {(1, ""): pytest.approx(4.65), (2, "USD"): pytest.approx(4.65)}


def test_prices_are_not_compared_across_a_currency_gap_unless_both_name_one():
    yen, dollar = math.log(15000), math.log(100)
    ratio = price.price_log_ratio(
        [15000.0, 15000.0, 15000.0, 15000.0, 120.0, 15000.0],
        [None, None, "JPY", "JPY", None, None],
        [100.0, 100.0, 100.0, 100.0, 100.0, 100.0],
        [None, "USD", None, "JPY", None, None],
        [yen, yen, yen, yen, math.log(120), yen],
        [dollar, dollar, dollar, dollar, dollar, None],
    )
    assert math.isnan(ratio[0]) and math.isnan(ratio[1]) and math.isnan(ratio[2])  # a gap, one side unnamed
    assert ratio[3] == pytest.approx(math.log(150), rel=1e-5)  # both name the currency: they are compared
    assert ratio[4] == pytest.approx(math.log(1.2), rel=1e-5)  # scales 1.2x apart: one currency
    assert ratio[5] == pytest.approx(math.log(150), rel=1e-5)  # no scale known on one side: as before
    without = price.price_log_ratio([15000.0], [None], [100.0], [None])  # no scales given: as before
    assert without[0] == pytest.approx(math.log(150), rel=1e-5)
