"""The lexical space: normalisation, hashed terms, IDF weighting and the rankings users rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prodmatch.embed.lexical import (
    LEXICAL_ATTRIBUTE_KEYS,
    PGVECTOR_SPARSEVEC_MAX_NONZEROS,
    LexicalEncoder,
    document_frequencies,
    idf_weights,
    lexical_text,
    normalize,
    similarity,
    weigh,
    weigh_many,
)

REPO = Path(__file__).resolve().parents[2]

# Background products so that IDF is meaningful: common words appear often, codes once.
FILLER = [
    {"brand": brand, "title": f"{kind} {code}"}
    for brand, kind, code in [
        ("Sony", "turntable", "PS-HX500"),
        ("Sony", "headphones", "WH-1000XM4"),
        ("Samsung", "Galaxy S21 smartphone", "SM-G991B"),
        ("Philips", "LED bulb 8W", "929001234"),
        ("Bosch", "drill", "GSB 18V-55"),
        ("Xiaomi", "Redmi Note 10 smartphone", "M2101K7AG"),
        ("Audio-Technica", "turntable", "AT-LP60X"),
        ("Logitech", "gaming mouse", "G502"),
        ("Huawei", "P30 smartphone", "ELE-L29"),
        ("Lenovo", "ThinkPad laptop", "20XW0055"),
    ]
]


def weighted(products: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    encoder = LexicalEncoder()
    raw = encoder.encode_many(products + FILLER)
    idf = idf_weights(document_frequencies(raw), len(raw))
    return [weigh(vector, idf) for vector in raw[: len(products)]]


def test_code_spellings_rank_above_a_look_alike_with_another_code():
    variants = ["Sony PS-LX350H turntable", "sony pslx350h turntable", "Sony PS LX-350 H Turntable"]
    look_alike = "Sony PS-LX300H turntable"
    vectors = weighted([{"title": t} for t in [*variants, look_alike]])
    for i in range(len(variants)):
        other_variants = [similarity(vectors[i], vectors[j]) for j in range(len(variants)) if j != i]
        assert min(other_variants) > similarity(vectors[i], vectors[-1]), variants[i]


def test_cyrillic_brand_ranks_above_another_brand_with_the_same_model():
    cyrillic, latin, other = weighted(
        [{"title": "Самсунг Galaxy A52"}, {"title": "Samsung Galaxy A52"}, {"title": "Xiaomi Galaxy A52"}]
    )
    assert similarity(cyrillic, latin) > similarity(cyrillic, other)
    assert similarity(latin, cyrillic) > similarity(latin, other)


@pytest.mark.parametrize(
    "spellings",
    [
        ("8 Вт", "8W", "8 w", "8 watts"),
        ("40мм", "40 mm", "40MM"),
        ("1,5 л", "1.5l", "1.5 L"),
        ("512 ГБ", "512GB", "512 gb"),
        ("2 ТБ", "2TB"),
        ("5000 мАч", "5000mAh"),
        ("220 В", "220V"),
        ("2 кг", "2kg"),
        ("500 г", "500g"),
        ("250 мл", "250ml"),
        ("15 см", "15cm"),
        ('27"', "27 inch", "27 дюймов"),
    ],
)
def test_units_written_differently_normalise_equally(spellings):
    assert len({normalize(s) for s in spellings}) == 1, [normalize(s) for s in spellings]


def test_normalize_transliterates_and_keeps_two_in_one_apart_from_volts():
    assert normalize("Самсунг") == "samsung"
    assert normalize("Филипс") == "filips"
    assert normalize("Чайник 2 в 1") == "chajnik 2 v 1"
    assert normalize("модель 2019 г.") == "model 2019" and normalize("500 г") == "500g"
    assert normalize("PS-LX350H") == normalize("ps lx350h") == "ps lx350h"


def test_cyrillic_and_latin_spellings_share_most_terms():
    encoder = LexicalEncoder()
    a, b = weighted([{"title": "Филипс"}, {"title": "Philips"}])
    assert similarity(a, b) > 0.3
    assert set(encoder.terms({"title": "Самсунг"})) == set(encoder.terms({"title": "samsung"}))


def test_a_russian_shops_german_brands_meet_their_spelling():
    # "ш" transliterates to "sh", and German writes it "sch": Бош is Bosch, Фишер Fischer
    for russian, german, other in [("Бош", "Bosch", "Bose"), ("Фишер", "Fischer", "Fisher-Price")]:
        a, b, c = weighted([{"title": russian}, {"title": german}, {"title": other}])
        assert similarity(a, b) > 0.5 and similarity(a, b) > similarity(a, c), (russian, similarity(a, b))
    bosch, russian, makita = weighted(
        [
            {"title": "Bosch GSB 13 RE drill"},
            {"title": "Дрель Бош GSB 13 RE"},
            {"title": "Дрель Макита GSB 13 RE"},
        ]
    )
    assert similarity(bosch, russian) > similarity(bosch, makita) + 0.1


def test_word_order_is_irrelevant():
    encoder = LexicalEncoder()
    assert encoder.terms({"title": "Sony turntable black PS-LX350H"}) == encoder.terms(
        {"title": "black PS-LX350H Sony turntable"}
    )


def test_title_and_brand_weigh_more_than_the_description():
    encoder = LexicalEncoder()
    in_title = encoder.terms({"title": "turntable", "description": "vinyl"})
    in_description = encoder.terms({"title": "vinyl", "description": "turntable"})
    turntable = encoder.terms({"title": "turntable"})
    key = next(iter(turntable))
    assert in_title[key] > in_description[key]
    text = lexical_text(
        {"title": "Turntable", "brand": "Sony", "attributes": {"mpn": "PS-LX350H", "url": "x"}}
    )
    assert "PS-LX350H" in text and "Sony" in text and "x" not in text.split(" | ")


def test_hashing_is_stable_across_processes_with_different_hash_seeds():
    product = {"brand": "Самсунг", "title": "Galaxy A52 128 ГБ PS-LX350H"}
    here = LexicalEncoder().encode(product)
    script = (
        "import json; from prodmatch.embed.lexical import LexicalEncoder;"
        f"i, v = LexicalEncoder().encode({product!r}); print(json.dumps([i.tolist(), v.tolist()]))"
    )
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        indices, values = json.loads(out.stdout)
        assert indices == here[0].tolist()
        assert np.allclose(values, here[1])


def test_max_terms_is_respected_for_a_long_description():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), size=8)) for _ in range(3000)]
    description = " ".join(words)[:20_000]
    product = {"title": "Sony PS-LX350H turntable", "description": description}
    encoder = LexicalEncoder(max_terms=1000)
    raw = encoder.encode(product)
    idf = idf_weights(document_frequencies([raw]), 1)
    indices, values = weigh(raw, idf, max_terms=encoder.max_terms)
    assert 0 < len(indices) <= 1000
    assert np.all(np.diff(indices) > 0) and indices.dtype == np.int32 and values.dtype == np.float32
    assert np.isclose(np.linalg.norm(values), 1.0, atol=1e-5)
    small = weigh(raw, idf, max_terms=50)
    assert len(small[0]) == 50
    # The title's terms carry the most weight, so they survive the cut.
    title_terms = set(encoder.terms({"title": "Sony PS-LX350H turntable"}))
    assert title_terms & set(small[0].tolist())


def test_raw_terms_of_a_product_with_every_field_full_fit_a_stored_sparsevec():
    rng = np.random.default_rng(1)

    def text(words: int) -> str:
        return " ".join(
            "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), size=7)) for _ in range(words)
        )

    keys = sorted(LEXICAL_ATTRIBUTE_KEYS)
    product = {f: text(200) for f in ("title", "brand", "category", "description")}
    product["attributes"] = {key: text(100) for key in keys}
    assert 1000 < len(LexicalEncoder().terms(product)) <= PGVECTOR_SPARSEVEC_MAX_NONZEROS


def test_idf_weighs_rare_terms_above_common_ones_and_says_when_to_reweigh():
    encoder = LexicalEncoder()
    raw = encoder.encode_many([{"title": f"turntable model{i}x"} for i in range(20)])
    idf = idf_weights(document_frequencies(raw), len(raw))
    common = encoder.terms({"title": "turntable"})
    rare = set(encoder.terms({"title": "model7x"})) - set(encoder.terms({"title": "model3x"})) - set(common)
    assert rare
    assert max(idf.lookup(np.array(list(common)))) < min(idf.lookup(np.array(list(rare))))
    assert idf.lookup(np.array([12345]))[0] == pytest.approx(idf.unseen_idf) or 12345 in idf.indices
    assert not idf.needs_reweigh(22) and idf.needs_reweigh(30)
    same = idf_weights((idf.indices, np.ones_like(idf.indices)), 20)
    assert same.indices.tolist() == idf.indices.tolist()


def test_encode_many_matches_terms_and_similarity_is_a_cosine():
    encoder = LexicalEncoder()
    products = [
        {"title": "Sony PS-LX350H"},
        {"title": ""},
        {"title": "Самсунг Galaxy A52", "brand": "Samsung"},
    ]
    for product, (indices, values) in zip(products, encoder.encode_many(products), strict=True):
        terms = encoder.terms(product)
        assert indices.tolist() == sorted(terms)
        assert np.allclose(values, [terms[i] for i in sorted(terms)])
    a, empty, b = weighted(products)
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, empty) == 0.0
    assert 0.0 <= similarity(a, b) < 0.5


@pytest.mark.parametrize("max_terms", [300, 8])
def test_weigh_many_equals_weigh_one_by_one(max_terms):
    encoder = LexicalEncoder()
    long = {"title": "Sony PS-LX350H", "description": " ".join(f"w{i}x{i * 7}" for i in range(400))}
    raw = encoder.encode_many([*FILLER, {"title": ""}, long])
    idf = idf_weights(document_frequencies(raw), len(raw))
    for (i1, v1), (i2, v2) in zip(
        weigh_many(raw, idf, max_terms=max_terms), [weigh(r, idf, max_terms) for r in raw], strict=True
    ):
        assert i1.tolist() == i2.tolist()
        assert np.allclose(v1, v2, atol=1e-6)
    assert weigh_many([], idf) == []


@pytest.mark.parametrize("settings", [{"max_terms": 1001}, {"max_terms": 0}, {"ngram_sizes": ()}])
def test_encoder_rejects_settings_pgvector_cannot_index(settings):
    with pytest.raises(ValueError):
        LexicalEncoder(**settings)
