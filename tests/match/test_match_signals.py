"""Pair signals: price, brand, title text, codes, ranks, and the named feature matrix that joins them."""

import math

import numpy as np
import pytest

from prodmatch.match.signals import attributes, brand, codes, price, text
from prodmatch.match.signals.features import PRODUCT_FEATURES, FeatureMatrix, pair_features, with_context
from prodmatch.match.signals.ranks import rank_signals


def test_price_ratio_respects_currencies():
    ratio = price.price_log_ratio(
        [100.0, 100.0, 100.0, None, 0.0, 100.0],
        ["EUR", "EUR", None, "EUR", "EUR", "usd"],
        [100.0, 200.0, 50.0, 100.0, 100.0, 110.0],
        ["EUR", "USD", "RUB", "EUR", "EUR", "USD"],
    )
    assert ratio[0] == 0.0
    assert math.isnan(ratio[1])  # EUR vs USD: not comparable without an exchange rate
    assert ratio[2] == pytest.approx(math.log(2))  # a missing currency is taken as the other's
    assert math.isnan(ratio[3]) and math.isnan(ratio[4])  # missing and zero prices
    assert ratio[5] == pytest.approx(math.log(1.1), rel=1e-5)  # currency codes compared case-insensitively


def test_stored_currencies_compare_by_their_iso_code():
    # what an application may have written in products.currency: codes, signs and words for one currency
    ratio = price.price_log_ratio(
        [100.0, 100.0, 100.0, 100.0, 100.0, 100.0],
        ["руб.", "€", " usd ", "null", "$", "RUB"],
        [110.0, 110.0, 110.0, 110.0, 110.0, 110.0],
        ["RUB", "eur", "US$", "RUB", "MXN", "₽"],
    )
    assert ratio[:4] == pytest.approx([math.log(1.1)] * 4, rel=1e-5)  # "null" names no currency
    assert ratio[4] == pytest.approx(math.log(1.1), rel=1e-5)  # "$" names none: taken as the other's
    assert ratio[5] == pytest.approx(math.log(1.1), rel=1e-5)
    assert math.isnan(price.price_log_ratio([1.0], ["руб."], [1.0], ["EUR"])[0])
    keys = [price.currency_key(c) for c in ("руб.", "лв.", "RMB", "LEI", "$", "¥", "null", "Kč", "XYZ ")]
    assert keys == ["RUB", "BGN", "CNY", "RON", "", "", "", "CZK", "XYZ"]


def test_numbers_with_units_agree_or_conflict():
    agree, conflict = text.numbers_agreement(
        ["Samsung 870 EVO 500GB SSD", "WD Red 1TB", "Лампа 8 Вт, 40мм", "USB cable", "16GB RAM 15.6in"],
        ["Samsung 870 EVO 1TB SSD", "wd red 1000 gb", "lamp 8W 40 mm", "USB 3.0 cable 2m", "16 gb laptop"],
    )
    assert conflict[0] == 1.0 and agree[0] == 0.0  # 500GB vs 1TB: two variants, a strong non-match cue
    assert conflict[1] == 0.0 and agree[1] == 1.0  # 1TB == 1000 GB
    assert conflict[2] == 0.0 and agree[2] == 1.0  # Cyrillic units and spacing
    assert math.isnan(agree[3]) and math.isnan(conflict[3])  # no shared measured dimension: no evidence
    assert conflict[4] == 0.0 and agree[4] == 1.0  # the inch size on one side only says nothing


def test_model_tokens_ignore_inner_punctuation():
    jaccard = text.model_token_jaccard(
        ["Sony PS-LX350H turntable", "Sony PS-LX350H"], ["sony pslx350h", "PS-LX300H"]
    )
    assert jaccard[0] == 1.0 and jaccard[1] == 0.0
    assert text.model_token_containment(["PS-LX350H"], ["pslx350hb black"])[0] == 1.0


def test_title_overlap():
    jaccard = text.token_jaccard(["Apple iPad mini", "a b", None], ["apple ipad MINI 4", "c d", "x"])
    containment = text.token_containment(["Apple iPad mini"], ["apple ipad MINI 4 wifi"])
    assert jaccard[0] == pytest.approx(3 / 4) and jaccard[1] == 0.0 and math.isnan(jaccard[2])
    assert containment[0] == 1.0


def test_brand_equality_after_normalisation():
    equal = brand.brand_equal(
        ["SONY", "Hewlett-Packard", "Sony", None, "Elite Screens"],
        ["sony", "hewlett packard", "LG", "LG", "elite"],
    )
    assert equal.tolist()[:3] == [1.0, 1.0, 0.0]
    assert math.isnan(equal[3])  # a missing brand is not a disagreement
    assert equal[4] == 1.0  # one brand written as a prefix of the other
    found = brand.brand_in_other_title(
        [None, None, "Canon"],
        ["Sony turntable", "x", "y"],
        ["Sony", None, None],
        ["sony PS-LX350H", "z", "HP ink"],
    )
    assert found[0] == 1.0 and math.isnan(found[1]) and found[2] == 0.0


def test_brand_takes_a_stronger_normalizer():
    transliterate = {"сони": "sony"}
    equal = brand.brand_equal(
        ["Сони"], ["Sony"], normalize=lambda s: transliterate.get(s.casefold(), s.casefold())
    )
    assert equal[0] == 1.0


@pytest.mark.parametrize(
    ("written", "names"),
    [
        ("Nike/耐克", ("nike", "耐克")),  # a marketplace's brand in two scripts: two names
        ("SHARP (シャープ)", ("sharp", "シャープ")),
        ("Samsung／삼성", ("samsung", "삼성")),  # full-width slash
        ("BIGTREE（鞋）", ("bigtree",)),  # a one-character part ("shoe") is a note, not a name
        ("AC/DC", ("acdc",)),  # parts in one script: one name, as before
        ("Apple (Renewed)", ("applerenewed",)),
        ("other/其他", ()),  # placeholders: no brand at all
        ("No brand", ()),
        ("Generic", ()),
        ("Без бренда", ()),
        ("ノーブランド", ()),
        ("기타", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_brand_names_of_a_field(written, names):
    assert brand.brand_names(written) == names


def test_a_brand_in_two_scripts_agrees_with_either_and_placeholders_with_nothing():
    equal = brand.brand_equal(
        ["Nike/耐克", "Nike/耐克", "耐克", "other/其他", "SCHNIKE/施耐克", "Generic", "Sony"],
        ["耐克", "Nike", "Adidas/阿迪达斯", "other/其他", "Nike/耐克", "Generic", "No brand"],
    )
    assert equal.tolist()[:3] == [1.0, 1.0, 0.0]
    assert math.isnan(equal[3])  # two no-name products do not share a brand
    assert equal[4] == 0.0  # 施耐克 is another brand than 耐克, schnike another than nike
    assert math.isnan(equal[5]) and math.isnan(equal[6])
    found = brand.brand_in_other_title(
        ["Nike/耐克", "other/其他", None],
        ["x", "其他 跑步鞋", "シャープ 加湿器 KC-40E9"],
        [None, None, "SHARP (シャープ)"],
        ["耐克男鞋 Air Max 270", "other brand running shoe", "humidifier KC-40E9"],
    )
    assert found[0] == 1.0  # 耐克 inside a Chinese title without spaces
    assert math.isnan(found[1])  # a placeholder is not looked for
    assert found[2] == 1.0


def test_codes_agree_and_conflict():
    agree, conflict = codes.code_signals(
        [["gtin:04718755065736", "pslx350h"], ["gtin:04718755065736"], ["pslx350h"], [], ["sku:123"]],
        [["pslx350h"], ["gtin:00012345678905"], ["gtin:00012345678905"], ["pslx350h"], ["mpn:abc1"]],
    )
    assert agree[0] == 1.0 and conflict[0] == 0.0
    assert agree[1] == 0.0 and conflict[1] == 1.0  # two different GTINs
    assert agree[2] == 0.0 and conflict[2] == 0.0  # a model code vs a GTIN proves nothing
    assert math.isnan(agree[3]) and math.isnan(conflict[3])
    assert conflict[4] == 0.0  # a SKU and an MPN are codes of different kinds


def test_ranks_and_margins_per_source_and_target():
    columns = rank_signals(
        np.array(["a", "a", "a", "b"]),
        np.array(["x", "y", "z", "x"]),
        np.array([0.9, 0.5, 0.7, 0.95]),
        pair_source_ids=np.array(["a", "a", "b", "b"]),
        pair_target_ids=np.array(["y", "x", "x", "y"]),
    )
    assert columns.rank[:3].tolist() == [3.0, 1.0, 1.0]
    assert math.isnan(columns.rank[3])  # (b, y) was not proposed by this source
    assert columns.margin[0] == pytest.approx(0.5 - 0.9)  # behind the best
    assert columns.margin[1] == pytest.approx(0.9 - 0.7)  # ahead of the runner-up
    assert math.isnan(columns.margin[2])  # b's only candidate: no runner-up
    assert columns.reverse_rank[1] == 2.0 and columns.reverse_rank[2] == 1.0  # x prefers b (0.95) over a


def test_pair_features_names_the_columns():
    left = [
        {
            "title": "Samsung 500GB SSD",
            "brand": "Samsung",
            "price": 50.0,
            "currency": "EUR",
            "codes": ["mz76e500"],
        }
    ]
    right = [
        {
            "title": "Samsung 1TB SSD",
            "brand": "samsung",
            "price": 90.0,
            "currency": "EUR",
            "codes": ["mz76e1t0"],
        }
    ]
    ranks = {"lexical": rank_signals(np.array([1]), np.array([2]), np.array([0.8]))}
    matrix = pair_features(left, right, similarities={"lexical": np.array([0.8])}, ranks=ranks)
    assert matrix.names[:5] == (
        "sim:lexical",
        "rank:lexical",
        "margin:lexical",
        "reverse_rank:lexical",
        "reverse_margin:lexical",
    )
    assert matrix.names[5:] == PRODUCT_FEATURES
    assert matrix.values.dtype == np.float32 and matrix.values.shape == (1, len(matrix.names))
    assert matrix.column("numbers_conflict")[0] == 1.0 and matrix.column("brand_equal")[0] == 1.0
    assert matrix.column("codes_conflict")[0] == 1.0
    with pytest.raises(KeyError, match="sim:text"):
        matrix.column("sim:text")
    with pytest.raises(ValueError, match="similarity 'text'"):
        pair_features(left, right, similarities={"text": np.array([0.1, 0.2])})


def test_feature_matrix_rejects_mismatched_names():
    with pytest.raises(ValueError):
        FeatureMatrix(("a", "b"), np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        FeatureMatrix(("a", "a"), np.zeros((3, 2), dtype=np.float32))


def test_a_code_written_in_the_other_title_counts():
    found = codes.code_in_other_text(
        [["PSLX350H"], [], ["gtin:04718755065736"], ["ab12"]],
        ["Sony turntable", "Sony turntable", "Monitor", "x"],
        [[], [], [], []],
        ["Sony Turntable PS-LX350H black", "Sony turntable", "BenQ 4718755065736", "AB12 cable"],
    )
    assert found[0] == 1.0 and found[2] == 1.0
    assert math.isnan(found[1])  # no code on either side
    assert found[3] == 0.0  # codes under 5 characters hide inside unrelated words, so they are ignored


def test_attributes_filled_on_both_sides_are_compared():
    agree = attributes.attribute_agreement(
        [{"Colour": "Space Grey", "size": "M"}, {"colour": "red"}, None],
        [{"colour": "space-grey", "size": "L", "weight": "2 kg"}, {"modelno": "x1"}, {"colour": "red"}],
    )
    assert agree[0] == 0.5  # colour agrees, size clashes; weight is on one side only
    assert math.isnan(agree[1]) and math.isnan(agree[2])


def test_context_compares_a_pair_with_its_competitors():
    features = FeatureMatrix(("title_jaccard", "sim:x"), np.array([[0.6, 1], [0.2, 1], [0.9, 1]], np.float32))
    extended = with_context(features, np.array(["a", "a", "b"]), np.array(["x", "y", "x"]))
    assert extended.names == (
        "title_jaccard",
        "sim:x",
        "context_margin:title_jaccard",
        "context_reverse_margin:title_jaccard",
    )
    np.testing.assert_allclose(extended.column("context_margin:title_jaccard")[:2], [0.4, -0.4], atol=1e-6)
    assert math.isnan(extended.column("context_margin:title_jaccard")[2])  # b has no other candidate
    np.testing.assert_allclose(
        extended.column("context_reverse_margin:title_jaccard")[[0, 2]], [-0.3, 0.3], atol=1e-6
    )
