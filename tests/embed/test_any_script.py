"""Matching in any script: Chinese, Japanese, Korean and Thai titles, glued Russian dealer titles, other alphabets.

The lexical space, the product codes and the pair title signals read the same text the same way: a run of a
script written without spaces is its characters and character bigrams, units written in Chinese are the
canonical unit tokens, and words glued at a change of script are split. Ends with a real-PostgreSQL check: a
Chinese title's true twin in another catalogue ranks above its look-alikes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from prodmatch.embed.codes import extract_codes
from prodmatch.embed.lexical import (
    LexicalEncoder,
    attribute_value_terms,
    code_terms,
    document_frequencies,
    idf_weights,
    is_unspaced,
    normalize,
    similarity,
    unspaced_terms,
    weigh,
)
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.ingest.load import ingest_file
from prodmatch.match.hybrid import lexical_candidates
from prodmatch.match.signals import text
from prodmatch.roles import ROLES_FIELD
from prodmatch.store.catalogs import catalog_id


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("ＡＢＣ１２３", "abc123"),  # full-width forms are ASCII (NFKC)
        ("Café Crème", "cafe creme"),
        ("Ελληνικά Παπούτσια", "ελληνικα παπουτσια"),  # kept as words, accents stripped
        ("حذاء رياضي", "حذاء رياضي"),
        ("जूते पुरुष", "जूते पुरुष"),  # Indic vowel signs are spelling, kept
        ("耐克AirMax270男鞋", "耐克 airmax270 男鞋"),
        ("Nike 耐克 Air Max 270 男鞋", "nike 耐克 air max 270 男鞋"),
        ("42码男鞋", "42size 男鞋"),
        ("内增高30厘米", "内增高 30cm"),
        ("5毫米 500毫升 2升 500克", "5mm 500ml 2l 500g"),
        ("1千克 1公斤 3米", "1kg 1kg 3m"),
        ("2020升级款 米白色", "2020 升级款 米白色"),  # upgrade and beige are no litres or metres
        ("55寸电视 5000毫安时 30公分 3克拉", "55in 电视 5000mah 30cm 3 克拉"),
        ("500ミリリットル 30センチ 1.5キログラム", "500ml 30cm 1.5kg"),
        ("500밀리리터 2리터 260밀리미터", "500ml 2l 260mm"),
        ("ขนาด500มล. 2ลิตร 20 ซม.", "ขนาด 500ml 2l 20cm"),
        ("Monitor 27 Zoll, 2 litros, 500 gramos, 30 centímetros", "monitor 27in 2l 500g 30cm"),
        ("поверхностейBath Acrylконцентрат", "poverhnostej bath acryl koncentrat"),
        ("ВаннаЧистая", "vanna chistaya"),
        ("iPhone WH1000XM4 PS-LX350H 5000мАч", "iphone wh1000xm4 ps lx350h 5000mah"),
    ],
)
def test_text_in_any_script_normalises_to_its_tokens(written, normalised):
    assert normalize(written) == normalised


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("30厘米", "30 cm"),
        ("500毫升", "500ml"),
        ("1公斤", "1 кг"),
        ("ＡＢＣ１２３", "ABC123"),
        ("500ミリリットル", "500 ml"),
        ("500㍉リットル", "500ml"),  # a squared katakana unit, spelt out by NFKC
        ("2리터", "2 л"),
        ("500มล.", "500ml"),
        ("55寸", '55"'),
        ("Écran 27 pouces", "ecran 27 inch"),
        # one table of unit words for the lexical space and the title signals (`UNIT_WORDS`)
        ("Schrauben 10 Stück", "Schrauben 10 pcs"),
        ("Винты 10 шт", "Винты 10 pcs"),
        ("Средство 1 литр", "Средство 1 л"),
        ("USB hub 4-port", "USB hub 4 ports"),
        ("Dumbbell 5 lbs", "Dumbbell 5 lb"),
        ("Кроссовки 42码", "Кроссовки размер 42"),
        ("Schuh 43码", "Schuh Größe: 43"),
    ],
)
def test_one_quantity_written_in_two_scripts_gives_the_same_terms(a, b):
    encoder = LexicalEncoder()
    assert encoder.terms({"title": a}) == encoder.terms({"title": b})


def test_unspaced_runs_are_characters_and_bigrams():
    assert unspaced_terms("男鞋休闲") == (["男", "鞋", "休", "闲"], ["男鞋", "鞋休", "休闲"])
    assert unspaced_terms("鞋") == (["鞋"], ["鞋"])
    assert [is_unspaced(t) for t in normalize("スニーカー 운동화 รองเท้า shoes 2020").split()] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_a_chinese_title_has_terms_and_keeps_its_latin_code():
    encoder = LexicalEncoder()
    spaced, glued = (
        encoder.terms({"title": "Nike 耐克 Air Max 270 男鞋"}),
        encoder.terms({"title": "耐克AirMax270男鞋"}),
    )
    assert len(spaced) > 20 and len(glued) > 20
    shared = spaced.keys() & glued.keys()
    # every character and bigram of 耐克 and 男鞋 and the code airmax270 are shared, whichever way it is written
    assert len(shared) >= 6 + 1
    assert "airmax270" in code_terms(normalize("Nike 耐克 Air Max 270 男鞋").split())
    assert "airmax270" in code_terms(normalize("耐克AirMax270男鞋").split())
    assert not code_terms(normalize("男鞋 42 码 2020 春季").split())  # Chinese words are never code parts


def test_a_chinese_twin_is_closer_than_look_alikes():
    products = [
        {"title": "回力男鞋帆布鞋男2020夏季新款透气低帮板鞋", "category": "流行男鞋 / 帆布鞋"},
        {"title": "Warrior回力 帆布鞋 男 低帮 板鞋 透气 2020夏季新款", "category": "流行男鞋 / 帆布鞋"},
        {"title": "耐克女鞋2020秋季新款高帮马丁靴", "category": "女鞋 / 时装靴"},
        {"title": "回力雪地靴女冬季加绒保暖棉鞋", "category": "女鞋 / 雪地靴"},
    ]
    encoder = LexicalEncoder()
    raw = encoder.encode_many(products)
    idf = idf_weights(document_frequencies(raw), len(raw))
    vectors = [weigh(v, idf) for v in raw]
    scores = [similarity(vectors[0], v) for v in vectors[1:]]
    assert scores[0] > 0.3 and scores[0] > 2 * max(scores[1:])


def test_other_alphabets_are_not_dropped():
    encoder = LexicalEncoder()
    for title in ("Αθλητικά παπούτσια", "حذاء رياضي", "נעלי ספורט", "जूते"):
        assert encoder.terms({"title": title}), title


@pytest.mark.parametrize(
    ("a", "b", "agree", "conflict"),
    [
        ("Гель 750 мл", "Гель 0,75 л", 1.0, 0.0),
        ("Средство 1 литр", "Средство 1 л", 1.0, 0.0),
        ("Порошок 0,6 кг", "Порошок 600 г", 1.0, 0.0),
        ("Кондиционер 1,5 л", "Кондиционер 1500 мл", 1.0, 0.0),
        ("男鞋42码", "男鞋 43码", 0.0, 1.0),
        ("Гель 0,5 л", "Гель 1 л", 0.0, 1.0),
        ("内增高9厘米", "内增高 90mm", 1.0, 0.0),
        ("1公斤", "1000克", 1.0, 0.0),
        ("500ミリリットル", "0,5リットル", 1.0, 0.0),
        ("30センチ", "300mm", 1.0, 0.0),
        ("500밀리리터", "0.5 리터", 1.0, 0.0),
        ("ขวด 500มล.", "ขวด 0.5 ลิตร", 1.0, 0.0),
        ("ขวด 500มล.", "ขวด 1 ลิตร", 0.0, 1.0),
        ("55寸电视", "TV 55 Zoll", 1.0, 0.0),
        ("Écran 27 pouces", 'Monitor 27"', 1.0, 0.0),
        ("Botella 2 litros", "Flasche 2000 ml", 1.0, 0.0),
        ("500 gramos", "0,5 kg", 1.0, 0.0),
        ("5000毫安时", "5000mAh", 1.0, 0.0),
        ("30公分", "30 cm", 1.0, 0.0),
        ("Set 10 pcs", "Set 12 Stück", 0.0, 1.0),
        ("Vitamin C 500 mg", "Витамин C 0,5 грамм", 1.0, 0.0),
        ("Vitamin C 500 mg", "Vitamin C 1000 mg", 0.0, 1.0),
        # unit words the lexical space read and the title signals did not, before one table (`UNIT_WORDS`)
        ("Farinha 500 gram", "Мука 0,5 кг", 1.0, 0.0),
        ("Cooler 2 ltr", "Cooler 2000 ml", 1.0, 0.0),
        ("Monitor 27 polegadas", 'Monitor 27"', 1.0, 0.0),
        ("Dumbbell 5 kgs", "Гантель 5000 г", 1.0, 0.0),
        ("Charger 65 watts 2 amps", "Зарядка 65 Вт 2 а", 1.0, 0.0),
        ("Charger 2 amps", "Charger 3 amps", 0.0, 1.0),
        # a size written before its number, in any language, is the size "42码" is
        ("Nike Air Max Size 42", "耐克 男鞋 42码", 1.0, 0.0),
        ("Кроссовки размер 44", "Sneaker Größe: 43", 0.0, 1.0),
        ("chaussure taille 42,5", "尺码：42.5", 1.0, 0.0),
        ("Nike size 8.5", "耐克 42码", math.nan, math.nan),  # a US size: another system, not compared
    ],
)
def test_numbers_in_different_units_compare_in_a_base_unit(a, b, agree, conflict):
    got = text.numbers_agreement([a], [b])
    assert np.allclose([got[0][0], got[1][0]], [agree, conflict], equal_nan=True)


def test_years_and_upgrades_are_not_measures():
    assert not text._measures("Кроссовки 2019 г. 2020升级款 米白色 3克拉钻戒")


def test_title_signals_read_chinese_titles():
    a, b, c = "回力男鞋帆布鞋", "回力帆布鞋男鞋", "耐克女士高跟鞋"
    jaccard = text.token_jaccard([a, a], [b, c])
    # the same characters and words in another order: only the bigrams across the joins differ
    assert jaccard[0] > 0.7
    assert jaccard[1] < 0.1
    assert text.token_containment(["男鞋"], ["回力男鞋帆布鞋"])[0] == 1.0
    assert text._words("поверхностейBath") == {"поверхностей", "bath"}
    assert text._model_tokens("篮球鞋F36283运动鞋") == {"f36283"}


@pytest.mark.parametrize(
    "attributes", [{"артикул": "009-1"}, {"attributes": {"артикул": "009-1"}}, {"model": "009-1"}]
)
def test_a_bracketed_shop_article_meets_the_makers_article(attributes):
    from_title = extract_codes({"title": "Средство для ванн (009-1)"})
    assert from_title == ["0091"]
    assert extract_codes(attributes) == from_title


@pytest.mark.parametrize(
    "title",
    [
        "Кроссовки (2019)",
        "Туфли (42)",
        "Набор (3 шт)",
        "Обувь размеры (36-40)",
        "Сезон (2019-2020)",
        "Блок питания (220/240)",
        "Носки (1/2)",
    ],
)
def test_years_sizes_ranges_and_counts_in_brackets_are_not_codes(title):
    assert extract_codes({"title": title}) == []


def test_codes_inside_chinese_titles_are_found():
    product = {"title": "Adidas/阿迪达斯正品2019春新款经典篮球鞋运动鞋F36283"}
    assert extract_codes(product) == ["F36283"]


# --- a real database ---------------------------------------------------------------------------------------

SHOP_A = [
    {"id": "a1", "title": "回力男鞋帆布鞋男2020夏季新款透气低帮板鞋", "category": "流行男鞋 / 帆布鞋"},
    {"id": "a2", "title": "特步女鞋跑步鞋2020秋季网面透气运动鞋", "category": "运动鞋new / 跑步鞋"},
]
SHOP_B = [
    {
        "id": "b1",
        "title": "Warrior回力 帆布鞋 男 低帮板鞋 透气 2020夏季新款",
        "category": "流行男鞋 / 帆布鞋",
    },
    {"id": "b2", "title": "回力雪地靴女冬季加绒保暖棉鞋", "category": "女鞋 / 雪地靴"},
    {"id": "b3", "title": "耐克男鞋板鞋2020夏季新款", "category": "流行男鞋 / 板鞋"},
    {"id": "b4", "title": "特步女子跑步鞋 秋季新款 网面 透气 运动鞋 2020", "category": "运动鞋new / 跑步鞋"},
    {"id": "b5", "title": "特步男鞋篮球鞋2020冬季高帮", "category": "运动鞋new / 篮球鞋"},
]


def test_chinese_twins_rank_first_in_the_stored_lexical_space(conn, tmp_path):
    for name, products in (("taobao-a", SHOP_A), ("taobao-b", SHOP_B)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in products), encoding="utf-8")
        ingest_file(conn, path, name)
    refresh_lexical(conn)
    source, target = catalog_id(conn, "taobao-a"), catalog_id(conn, "taobao-b")
    pairs = lexical_candidates(conn, source, target, k=3)
    external = dict(conn.execute("SELECT id, external_id FROM prodmatch.products").fetchall())
    best = {}
    for s, t, score in zip(pairs.sources.tolist(), pairs.targets.tolist(), pairs.score.tolist(), strict=True):
        if score > best.get(external[s], ("", -np.inf))[1]:
            best[external[s]] = (external[t], score)
    assert {s: t for s, (t, _) in best.items()} == {"a1": "b1", "a2": "b4"}


# Two listings of one shoe in two shops and a look-alike: the three titles share the same words, and only the
# descriptive attributes tell which listing is the same shoe (heel, upper, insole, toe, opening).
TWIN_ATTRIBUTES = {
    "鞋跟款式": "粗跟",
    "帮面材质": "牛皮头层革",
    "鞋垫材质": "羊皮",
    "鞋头款式": "尖头",
    "开口深度": "浅口",
}
ATTRIBUTE_TWINS = [
    {"title": "网红真皮女鞋法式尖头单鞋", "category": "女鞋 / 单鞋", "attributes": TWIN_ATTRIBUTES},
    {"title": "网红真皮女鞋职场金属圆扣", "category": "女鞋 / 单鞋", "attributes": TWIN_ATTRIBUTES},
    {
        "title": "网红真皮女鞋百搭平底圆头",
        "category": "女鞋 / 单鞋",
        "attributes": {
            "鞋跟款式": "平跟",
            "帮面材质": "PU",
            "鞋垫材质": "猪皮",
            "鞋头款式": "圆头",
            "开口深度": "深口",
        },
    },
    *(
        {
            "title": f"女鞋单鞋{i}号款",
            "category": "女鞋 / 单鞋",
            "attributes": {"鞋跟款式": heel, "帮面材质": "PU"},
        }
        for i, heel in enumerate(["平跟", "细跟", "坡跟", "平跟", "细跟", "平跟"])
    ),
]


def test_attribute_values_are_whole_terms_under_their_slot():
    product = {
        "attributes": {
            "帮面材质": "牛皮头层革",
            "Upper Material": " Leather ",
            "颜色分类": "黑色",
            "品牌": "other/其他",  # no brand is no value
            "货号": "ZR-675",
            "image_url": "https://img.example.com/1.jpg",  # noise key
            "描述": "x" * 80,  # free text
            "适用季节": "",
        }
    }
    terms = attribute_value_terms(product)
    # a built-in identifying key compares under its concept, another key under its own name
    assert "identifying:material=牛皮头层革" in terms and "key:uppermaterial=leather" in terms
    assert "code=zr675" in terms and any(t.startswith("identifying:") and t.endswith("=黑色") for t in terms)
    assert not any(t.startswith("brand=") or "http" in t or "xxxx" in t or t.endswith("=") for t in terms)
    # a catalogue that switched a key off (role none) reads no term for it
    switched_off = attribute_value_terms({**product, ROLES_FIELD: {"帮面材质": "none"}})
    assert (
        "identifying:material=牛皮头层革" not in switched_off and "key:uppermaterial=leather" in switched_off
    )


def test_descriptive_attributes_rank_a_listing_with_another_title_above_a_look_alike():
    encoder = LexicalEncoder()
    raw = encoder.encode_many(ATTRIBUTE_TWINS)
    idf = idf_weights(document_frequencies(raw), len(raw))
    twin, other_title, look_alike = (weigh(v, idf) for v in raw[:3])
    with_attributes = similarity(twin, other_title) - similarity(twin, look_alike)
    bare = encoder.encode_many([{k: v for k, v in p.items() if k != "attributes"} for p in ATTRIBUTE_TWINS])
    bare_idf = idf_weights(document_frequencies(bare), len(bare))
    twin, other_title, look_alike = (weigh(v, bare_idf) for v in bare[:3])
    title_only = similarity(twin, other_title) - similarity(twin, look_alike)
    assert with_attributes > 0.1 and abs(title_only) < 0.1  # the titles alone cannot tell them apart


# A Japanese shop (Japanese keys, a Korean and a Thai listing among its products) against a marketplace that sells
# the same products under English, Korean and Japanese titles, with a look-alike of two of them: another model of
# the same line in another size.
ASIAN_SHOP = """id,title,ブランド,カラー,容量,price
a1,シャープ 加湿器 KC-50E9 プラズマクラスター 500ミリリットル,シャープ,ホワイト,500ml,19800
a2,パナソニック ドライヤー EH-NA0J ナノケア,パナソニック,ブラック,,25000
a3,무선 이어폰 갤럭시 버즈2 SM-R177,삼성,그라파이트,,129000
a4,รองเท้าวิ่ง ไนกี้ รุ่น Air Zoom Pegasus 39 ขนาด 42,Nike,ดำ,,3900
a5,象印 電気ケトル CK-DA10 1.0リットル,象印,ホワイト,1.0L,6980
"""
MIXED_MARKET = """id,title,brand,색상,price
b1,Sharp KC-50E9 Plasmacluster Humidifier 0.5L,Sharp,White,150
b2,파나소닉 헤어드라이어 EH-NA0J 나노케어,Panasonic,블랙,190
b3,삼성 갤럭시 버즈2 SM-R177 무선이어폰,Samsung,그라파이트,99
b4,Nike Air Zoom Pegasus 39 Running Shoe 42,Nike,Black,120
b5,ZOJIRUSHI 電気ケトル CK-DA10 1000ml,象印,ホワイト,50
b6,象印 電気ケトル CK-DA08 0.8リットル,象印,ホワイト,45
b7,シャープ 加湿器 KC-40E9 400ミリリットル,シャープ,ホワイト,140
"""


def test_the_builtin_matcher_links_japanese_korean_and_thai_listings_with_no_label(conn, tmp_path):
    """Units in katakana, Hangul and Thai, colours and attribute keys in those scripts: every twin is accepted,
    neither look-alike (another capacity of the same line) is."""
    from prodmatch.match.link import link

    for name, rows in (("jp-shop", ASIAN_SHOP), ("market", MIXED_MARKET)):
        path = tmp_path / f"{name}.csv"
        path.write_text(rows, encoding="utf-8")
        ingest_file(conn, path, name)
    run = link(conn, "jp-shop", "market")
    accepted = conn.execute(
        "SELECT s.external_id, t.external_id FROM prodmatch.matches m"
        " JOIN prodmatch.products s ON s.id = m.source_product_id"
        " JOIN prodmatch.products t ON t.id = m.target_product_id WHERE m.run_id = %s AND m.accepted",
        (run.run_id,),
    ).fetchall()
    assert sorted(accepted) == [("a1", "b1"), ("a2", "b2"), ("a3", "b3"), ("a4", "b4"), ("a5", "b5")]
