"""The product signals of many pairs at once (`batch.product_signals`) equal their per-pair definition."""

import random

import numpy as np
import pytest

from prodmatch.embed.codes import code_kind, compare_codes
from prodmatch.embed.lexical import normalize
from prodmatch.match.signals.features import PRODUCT_FEATURES, indexed_pair_features, pair_features
from prodmatch.match.signals.ranks import rank_signals

BRANDS = ["Sony", "SONY", "Самсунг", "Samsung", "Hewlett-Packard", "hp", "", None, "Elite Screens", "elite"]
BRANDS += ["Nike/耐克", "耐克", "other/其他", "Generic", "SHARP (シャープ)"]  # two scripts, placeholders
BRANDS += ["ナイキ", "回力", "阿迪达斯", "361°"]  # names another script's name meets only through an alias
# brand aliases in other scripts as the reader attaches them (`brand.brand_aliases`), for some offers
ALIASES = [None, (), ("nike",), ("adidas", "阿迪达斯"), ("ソニー",)]
WORDS = ["turntable", "black", "ssd", "laptop", "Лампа", "cable", "wifi", "mini", "pro", "x"]
WORDS += ["&amp;", "<b>Sony</b>", "18&nbsp;V", "27&#8221;"]  # web markup, read as the text it stands for
MEASURES = ["500GB", "1TB", "1000 gb", "8 Вт", "8W", "40мм", "40 mm", '15.6"', "2m", "16GB", "3.0", "12", ""]
CODES = ["PS-LX350H", "pslx350hb", "PS-LX300H", "WH1000XM4", "WH-1000XM3", "A1234", "lx350h", "GTX1070TI"]
# Chinese titles without spaces, Chinese units, Russian dealer titles glued at a change of script or case
WORDS_ANY_SCRIPT = [
    "回力男鞋",
    "帆布鞋",
    "耐克AirMax270男鞋",
    "поверхностейBath",
    "Acrylконцентрат",
    "ВаннаЧистая",
]
WORDS_ANY_SCRIPT += ["スニーカー", "운동화", "รองเท้า", "2020春季新款", "iPhone", "café"]
MEASURES_ANY_SCRIPT = [
    "42码",
    "43码",
    "30厘米",
    "300mm",
    "500毫升",
    "0,5 л",
    "1 литр",
    "750 мл",
    "0,6 кг",
    "600 г",
]
MEASURES_ANY_SCRIPT += ["1公斤", "500克", "2升", "8W", "(009-1)", "2019 г.", "12", ""]
MEASURES_ANY_SCRIPT += [
    "500ミリリットル",
    "0,5リットル",
    "2리터",
    "500มล.",
    "55寸",
    "27 Zoll",
    "10 pcs",
    "3克拉",
    "Size 42",
    "размер 43",
    "尺码：42",
]
KNOWN_CODES = ["code:pslx350h", "mpn:pslx300h", "gtin:04718755065736", "gtin:00012345678905", "wh1000xm4"]


def product(rng: random.Random, i: int, words_from=WORDS, measures_from=MEASURES) -> dict:
    words = rng.sample(words_from, rng.randint(0, 4)) + rng.sample(measures_from, rng.randint(0, 3))
    words += rng.sample(CODES, rng.randint(0, 2))
    rng.shuffle(words)
    return {
        "id": i,
        "title": " ".join(words) if rng.random() > 0.05 else None,
        "brand": rng.choice(BRANDS),
        "category": rng.choice(["Audio > Turntables", "audio", None, "Laptops", "流行男鞋 / 帆布鞋", "女鞋"]),
        "description": rng.choice(
            [
                None,
                "",
                "Model PS-LX350H, belt drive",
                "EAN 4718755065736 " + "x" * 400,
                "<p>" * 80 + "PS-LX350H",
            ]
        ),
        "price": rng.choice([None, 0.0, 9.99, 10.0, 10.5, 250.0, 1999.0]),
        "currency": rng.choice([None, "", "EUR", "eur ", "USD", "RUB"]),
        # the median log price of the product's catalogue in its currency (a currency gap: 4.6 vs 9.6)
        "price_scale": rng.choice([None, 4.6, 4.9, 9.6]),
        "brand_aliases": rng.choice(ALIASES),
        "attributes": rng.choice(
            [{}, {"Colour": "Space Grey"}, {"colour": "space-grey", "size": "M"}, {"Size": "L"}]
        ),
        "codes": rng.sample(KNOWN_CODES, rng.randint(0, 2)),
    }


@pytest.mark.parametrize(
    ("words_from", "measures_from"), [(WORDS, MEASURES), (WORDS_ANY_SCRIPT, MEASURES_ANY_SCRIPT)]
)
def test_batch_product_signals_equal_the_per_pair_definition(words_from, measures_from):
    rng = random.Random(7)
    products = [product(rng, i, words_from, measures_from) for i in range(300)]
    left = np.array([rng.randrange(300) for _ in range(5000)], dtype=np.int64)
    right = np.array([rng.randrange(300) for _ in range(5000)], dtype=np.int64)
    batch = indexed_pair_features(products, left, right, normalize_brand=normalize, code_kind=code_kind)
    reference = pair_features(
        [products[i] for i in left],
        [products[j] for j in right],
        normalize_brand=normalize,
        compare_codes=compare_codes,
    )
    assert batch.names == reference.names == PRODUCT_FEATURES
    for name in PRODUCT_FEATURES:
        got, want = batch.column(name), reference.column(name)
        # bit for bit: a stored matcher was trained on these values
        assert np.array_equal(got, want, equal_nan=True), name
        assert not np.isnan(want).all(), f"{name}: the generated pairs never exercise it"


def test_batch_defaults_match_the_signal_modules_defaults():
    rng = random.Random(8)
    products = [product(rng, i) for i in range(100)]
    left, right = np.arange(100).repeat(3), np.array([rng.randrange(100) for _ in range(300)])
    batch = indexed_pair_features(products, left, right)
    reference = pair_features([products[i] for i in left], [products[j] for j in right])
    assert np.array_equal(batch.values, reference.values, equal_nan=True)


def test_rank_columns_align_with_pairs_like_a_lookup_table():
    rng = np.random.default_rng(3)
    sources, targets = rng.integers(0, 40, 400), rng.integers(100, 140, 400)  # with repeated candidates
    scores = rng.random(400)
    pair_sources, pair_targets = rng.integers(0, 45, 900), rng.integers(100, 145, 900)
    columns = rank_signals(
        sources, targets, scores, pair_source_ids=pair_sources, pair_target_ids=pair_targets
    )
    plain = rank_signals(sources, targets, scores)
    last = {(s, t): i for i, (s, t) in enumerate(zip(sources.tolist(), targets.tolist(), strict=True))}
    for kind in ("rank", "margin", "reverse_rank", "reverse_margin"):
        want = np.array(
            [
                getattr(plain, kind)[last[key]] if key in last else np.nan
                for key in zip(pair_sources.tolist(), pair_targets.tolist(), strict=True)
            ],
            dtype=np.float32,
        )
        assert np.array_equal(getattr(columns, kind), want, equal_nan=True), kind
    assert np.isfinite(columns.rank).sum() > 50  # the pairs do hit candidates
