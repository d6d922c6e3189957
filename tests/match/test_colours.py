"""The colour signal: one set of colour names whatever the language an offer is written in."""

import math

import pytest

from prodmatch.match.signals.colours import colour_agreement, colours, compare_colours, text_colours


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Рюкзак городской Xiaomi Mi Casual Daypack 17 чёрный, 30 л", {"black"}),
        ("XIAOMI city backpack Mi Casual Daypack 17 black leather", {"black"}),
        ("耐克男鞋黑色运动鞋", {"black"}),
        ("Chaussure noire taille 42", {"black"}),
        ("Schuh Weiß, Größe 42", {"white"}),
        ("Zapatilla azul marino", {"blue"}),
        ("Серая куртка, синие брюки", {"grey", "blue"}),
        ("Bottle, grey, 500 ml", {"grey"}),
        ("ナイキ スニーカー ブラック 27cm", {"black"}),
        ("電気ケトル 黒色 1.0L", {"black"}),
        ("나이키 운동화 화이트 260mm", {"white"}),
        ("아디다스 운동화 검정색", {"black"}),
        ("รองเท้าวิ่ง สีน้ำเงิน ขนาด 42", {"blue"}),
        ("กระเป๋า สีเงิน", {"silver"}),
    ],
)
def test_colours_are_found_in_any_common_language(text, expected):
    assert text_colours(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "серия X5 2021",
        "网红同款鞋 2020新款",
        "Белье нижнее",
        "Sony WH-1000XM4",
        "Blackview A80",
        "赤ちゃん 靴",  # a baby's shoes: 赤 alone is red only in a colour attribute
        "ดำเนินการจัดส่ง",  # Thai "to proceed with delivery": ดำ alone is black only in a colour attribute
    ],
)
def test_words_that_only_look_like_colours_are_not_colours(text):
    assert text_colours(text) == frozenset()


def test_a_bare_chinese_colour_counts_only_in_a_colour_attribute():
    assert text_colours("黑 42码") == frozenset()
    assert colours({"title": "运动鞋", "attributes": {"颜色分类": "黑 42码"}}) == {"black"}
    assert colours({"title": "Shoe", "colour": "Navy"}) == {"blue"}
    assert colours({"title": "Shoe", "attributes": {"material": "black leather"}}) == frozenset()
    assert colours({"title": "靴", "attributes": {"カラー": "赤"}}) == {"red"}
    assert colours({"title": "รองเท้า", "attributes": {"สี": "ดำ"}}) == {"black"}
    assert colours({"title": "운동화", "attributes": {"색상": "블랙"}}) == {"black"}


def test_pairs_agree_clash_or_say_nothing():
    assert compare_colours(frozenset({"black"}), frozenset({"black", "white"})) == (1.0, 0.0)
    assert compare_colours(frozenset({"black"}), frozenset({"grey"})) == (0.0, 1.0)
    assert all(math.isnan(v) for v in compare_colours(frozenset(), frozenset({"grey"})))
    agree, conflict = colour_agreement(
        [{"title": "Рюкзак чёрный"}, {"title": "Рюкзак чёрный"}, {"title": "Рюкзак"}],
        [{"title": "Backpack black"}, {"title": "Backpack grey"}, {"title": "Backpack grey"}],
    )
    assert agree[:2].tolist() == [1.0, 0.0] and conflict[:2].tolist() == [0.0, 1.0]
    assert math.isnan(agree[2]) and math.isnan(conflict[2])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wireless headphones Momentum38 orng", {"orange"}),
        ("Бутылка Nalgene Wide Mouth 78 1000мл оранж.", {"orange"}),
        ("Nalgene WideMouth31 tritan rozovaya 1 l", {"pink"}),
        ("backpack gry leather", {"grey"}),
    ],
)
def test_abbreviations_and_transliterated_russian_colours(text, expected):
    assert text_colours(text) == expected


@pytest.mark.parametrize("text", ["serie A", "BL-5C battery", "WH-1000XM4", "RD-100 radio"])
def test_codes_and_foreign_words_are_not_abbreviated_colours(text):
    assert text_colours(text) == frozenset()
