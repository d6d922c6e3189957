"""Column names of real exports, in the languages prodmatch's users sell in, read as prodmatch's fields.

A shop's export names its columns in its own language (`Наименование`, `商品名称`, `Produktname`) or its own
English (`name`, `Product Title`, `manufacturer`'s sibling `image_url`). `field_of` reads such a name as the
field it holds, so a file loads without `--map`; `--map` still wins, and a column named exactly as a field wins
over one that only means it (a file with both `title` and `name` keeps `name` as an attribute). Columns that
carry a brand or an article code (`sku`, `Артикул`, `货号`, `商品编号`) are not here: they stay attributes, whose
roles (`prodmatch.roles`) fill the brand field and the code signals in every language; a test keeps the two
tables apart.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

NAMES = {
    "external_id": (
        "id",
        "product id",
        "item id",
        "offer id",
        "product code id",
        "ид",
        "id товара",
        "商品id",
        "产品id",
        "商品コード",
        "상품id",
        "produkt id",
        "artikel id",
        "id produit",
        "id producto",
        "id produto",
    ),
    "title": (
        "name",
        "product name",
        "product title",
        "item name",
        "item title",
        "offer name",
        "offer title",
        "наименование",
        "название",
        "наименование товара",
        "название товара",
        "товар",
        "номенклатура",  # 1C exports
        "наименование номенклатуры",
        "полное наименование",
        "заголовок",
        "商品名称",
        "商品标题",
        "标题",
        "名称",
        "产品名称",
        "品名",
        "商品名",
        "タイトル",
        "상품명",
        "제품명",
        "titel",
        "produktname",
        "artikelname",
        "bezeichnung",
        "produktbezeichnung",
        "nom",
        "nom du produit",
        "désignation",
        "libellé",
        "titre",
        "nombre",
        "nombre del producto",
        "título",
        "titulo",
        "nome",
        "nome do produto",
        "nome prodotto",
        "titolo",
    ),
    "description": (
        "description",
        "product description",
        "описание",
        "описание товара",
        "商品描述",
        "描述",
        "商品详情",
        "商品説明",
        "説明",
        "상품설명",
        "설명",
        "beschreibung",
        "produktbeschreibung",
        "descriptif",
        "descripción",
        "descripcion",
        "descrição",
        "descricao",
        "descrizione",
    ),
    "category": (
        "category",
        "product category",
        "категория",
        "раздел",
        "类目",
        "分类",
        "类别",
        "商品类目",
        "カテゴリ",
        "カテゴリー",
        "카테고리",
        "분류",
        "kategorie",
        "warengruppe",
        "catégorie",
        "categorie",
        "categoría",
        "categoria",
    ),
    "price": (
        "price",
        "sale price",
        "цена",
        "стоимость",
        "цена продажи",
        "розничная цена",
        "价格",
        "售价",
        "价钱",
        "单价",
        "価格",
        "販売価格",
        "가격",
        "판매가",
        "preis",
        "verkaufspreis",
        "prix",
        "precio",
        "preço",
        "preco",
        "prezzo",
    ),
    "currency": (
        "currency",
        "валюта",
        "货币",
        "币种",
        "通貨",
        "통화",
        "währung",
        "waehrung",
        "devise",
        "monnaie",
        "moneda",
        "moeda",
        "valuta",
    ),
    "image": (
        "image",
        "image url",
        "image link",
        "picture",
        "picture url",
        "photo",
        "photo url",
        "img",
        "фото",
        "изображение",
        "картинка",
        "ссылка на фото",
        "图片",
        "主图",
        "图片链接",
        "商品图片",
        "画像",
        "画像url",
        "이미지",
        "bild",
        "bild url",
        "imagen",
        "imagem",
        "immagine",
    ),
}
# A shop's own article number, which an export without an id column identifies its rows by (an Ozon seller's
# `Артикул`, a Taobao shop's `商品编号`): the id when no column is the id, and still an attribute, whose role
# (code) keeps feeding the code signals. Not `model` or `货号`: many offers of one export can share those.
OWN_ARTICLE_NAMES = (
    "sku",
    "артикул",
    "артикул продавца",
    "код товара",
    "商品编号",
    "商家编码",
    "код",  # 1C's item code
    "код номенклатуры",
    "item code",
    "item number",
    "article number",
    "artikelnummer",
    "art.-nr.",
    "référence",
    "referencia",
    "品番",
    "상품코드",
)
_SEPARATORS = re.compile(r"[\s_\-.:]+")
# What a header adds after the name, from its first comma or bracket: `Цена, руб.`, `Price (EUR)`, `价格(元)`,
# `Наименование [полное]`
_QUALIFIER = re.compile(r"\s*[,(（\[].*$", re.DOTALL)


def _key(name: str) -> str:
    # Without separators: `Product Name`, `product_name`, `ProductName` and `Produkt-Name` are one name.
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", name).casefold())


ALIASES = {_key(alias): field for field, names in NAMES.items() for alias in names}
_OWN_ARTICLES = frozenset(_key(name) for name in OWN_ARTICLE_NAMES)


def is_own_article(name: str) -> bool:
    """Whether a column named `name` holds a shop's own article number (`OWN_ARTICLE_NAMES`)."""
    return _key(name) in _OWN_ARTICLES


@lru_cache(maxsize=4096)  # a JSONL file asks for the same few keys on every row
def field_of(name: str) -> str | None:
    """The field a column named `name` holds (`Наименование` -> title; `Цена, руб.` -> price: a name with a
    qualifier after a comma or in brackets), or None for an attribute."""
    found = ALIASES.get(_key(name))
    if found is None:
        bare = _QUALIFIER.sub("", name)
        if bare and bare != name:
            found = ALIASES.get(_key(bare))
    return found


def qualifier(name: str) -> str:
    """What a column's name says after the name itself (`Цена, руб.` -> `руб.`; `Price (EUR)` -> `EUR`)."""
    match = _QUALIFIER.search(name)
    return match.group(0).strip(" ,()（）[]") if match else ""
