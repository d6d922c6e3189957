"""Attribute roles: which attribute keys of a catalogue name a brand, a product code, a GTIN or an identifying value.

A catalogue's attributes are whatever columns its file had beyond the canonical ones, named in the shop's own
language: ``Marke``, ``Artikelnummer``, ``Farbe``; ``品牌``, ``货号``, ``颜色``; ``артикул``, ``цвет``; ``브랜드``,
``색상``; ``ยี่ห้อ``. Matching reads them by *role*, never by name:

* ``brand``: the maker's name (``品牌``, ``Marke``, ``производитель``);
* ``code``: a model number, MPN, article number or SKU (``货号``, ``Artikelnummer``, ``Référence``, ``артикул``);
* ``gtin``: a GTIN / EAN / UPC / ISBN barcode number;
* ``identifying``: a value that tells look-alike products apart: colour, size, material, capacity, volume,
  weight... (``颜色``, ``尺码``, ``Farbe``, ``Größe``, ``Couleur``, ``Taille``);
* ``none``: noise for matching (season, sales channel, URLs, stock): never compared nor read.

`BUILTIN` knows the common keys of English, Russian, Chinese (simplified and traditional), German, French,
Spanish, Italian, Portuguese and Japanese catalogues. A catalogue may add keys or switch built-in ones off
(``prodmatch catalog roles``, stored in ``prodmatch.catalogs.attribute_roles``); whoever turns product rows into
the mappings that the lexical space, code extraction and pair signals read attaches those overrides to each
product under `ROLES_FIELD` (`with_roles`), and the readers here (`attribute_role`) honour them. Keys are
compared after `normalize_key`: NFKC, case folding, accents dropped, no spaces or punctuation
(``Référence`` = ``reference``, ``Model Number`` = ``model_number``). This module is pure (no database): the
store (`prodmatch.store.catalogs`), ingest, embed and match all read it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache

from prodmatch.errors import ConfigError
from prodmatch.markup import plain

__all__ = [
    "BUILTIN",
    "NONE",
    "ROLES",
    "ROLES_FIELD",
    "attribute_role",
    "brand_from_attributes",
    "builtin_role",
    "comparison_slot",
    "is_no_brand",
    "normalize_key",
    "normalize_roles",
    "parse_assignment",
    "product_roles",
    "reads_lexically",
    "role_of",
    "with_roles",
]

ROLES = ("brand", "code", "gtin", "identifying")
NONE = "none"
# The key of a product mapping that carries its catalogue's role overrides ({normalised key: role}).
ROLES_FIELD = "attribute_roles"
# Roles whose values the lexical space reads as text (brand has its own field there).
LEXICAL_ROLES = frozenset({"code", "gtin", "identifying"})

# concept -> (role, keys as written in catalogues, separated by spaces). Keys of one concept in different
# languages are compared with each other by `attribute_agreement` (``Farbe`` vs ``颜色``); the concept is a label.
BUILTIN: dict[str, tuple[str, str]] = {
    "brand": (
        "brand",
        "brand brandname manufacturer maker make vendor бренд марка производитель торговаямарка 品牌 品牌名称 "
        "牌子 商标 厂商 制造商 生产厂家 廠牌 製造商 marke hersteller markenname marque fabricant marca fabricante "
        "produttore fabbricante ブランド メーカー ブランド名 製造元 브랜드 제조사 제조업체 상표 ยี่ห้อ แบรนด์ ผู้ผลิต",
    ),
    "code": (
        "code",
        "mpn model modelno modelnumber modelcode partnumber partno manufacturerpartnumber sku "
        "productcode productnumber itemnumber itemno articlenumber articleno article styleno stylenumber "
        "stylecode refno reference артикул модель кодтовара кодпроизводителя партномер номермодели 货号 型号 "
        "款号 商品编号 商品货号 产品型号 规格型号 型號 貨號 款號 商品編號 artikelnummer artikelnr artnr herstellernummer "
        "herstellernr modellnummer modell typennummer bestellnummer référence ref réf modèle "
        "numérodemodèle codeproduit numérodarticle referencia modelo númerodemodelo códigodeproducto "
        "códigodelfabricante númerodepieza codice codiceprodotto modello numerodiparte riferimento "
        "códigodoproduto 型番 品番 モデル番号 製品番号 型式 모델번호 모델명 품번 상품번호 제품번호 상품코드 제품코드 "
        "รุ่น รหัสสินค้า หมายเลขรุ่น รหัสรุ่น",
    ),
    "gtin": (
        "gtin",
        "gtin gtin8 gtin12 gtin13 gtin14 ean ean13 ean8 upc upca isbn isbn13 barcode штрихкод "
        "штрихкодean 条形码 条码 商品条码 條碼 商品條碼 strichcode codebarre codedebarres códigodebarras codiceabarre "
        "codicedibarre バーコード janコード 바코드 บาร์โค้ด",
    ),
    "colour": (
        "identifying",
        "colour color colourname colorname цвет 颜色 颜色分类 顏色 顏色分類 色 farbe couleur colore cor カラー 色名 색상 "
        "컬러 색깔 สี",
    ),
    "size": (
        "identifying",
        "size dimensions размер 尺码 尺寸 鞋码 尺碼 鞋碼 规格 規格 größe grosse abmessungen taille dimension talla "
        "tamaño taglia dimensioni tamanho サイズ 寸法 사이즈 크기 치수 ขนาด ไซส์ ไซซ์",
    ),
    "material": (
        "identifying",
        "material материал 材质 材質 材料 鞋面材质 帮面材质 鞋面材質 帮面材質 matériau matiere matière materiale materiau 素材 "
        "소재 재질 วัสดุ",
    ),
    "capacity": (
        "identifying",
        "capacity storage memory ёмкость емкость объем объём память 容量 内存 存储容量 內存 kapazität speicher "
        "speicherkapazität volumen volume capacité capacidad capacità capacidade メモリ 용량 메모리 ความจุ",
    ),
    "weight": ("identifying", "weight вес 重量 净重 淨重 gewicht poids peso 重さ 무게 중량 น้ำหนัก"),
    "modelname": ("identifying", "modelname series серия 系列 serie série シリーズ 시리즈 ซีรีส์"),
    "noise": (
        NONE,
        "url link producturl imageurl image images stock instock availability quantity qty shipping "
        "delivery seller shop store season year releaseyear наличие остаток количество доставка продавец "
        "магазин ссылка сезон 上市年份季节 上市时间 上市年份 销售渠道类型 库存 发货地 店铺 市场价 是否商场同款 是否瑕疵 是否贵重品 是否易碎品 是否危险品 包装体积 "
        "毛重 上市年份季節 銷售渠道類型 庫存 lagerbestand verfügbarkeit versand saison disponibilité livraison "
        "disponibilidad envío temporada disponibilità spedizione stagione 在庫 送料 배송 재고 판매자 การจัดส่ง",
    ),
}

# Values that say "no brand": an attribute holding one does not name the product's brand.
_NO_BRAND_WORDS = (
    "other others 其他 其它 other其他 无 无品牌 無品牌 无牌 杂牌 没有 nobrand unbranded generic na none null unknown"
    " нет безбренда другой другое noname ohnemarke keinemarke sonstige sansmarque autre autres générique sinmarca"
    " otro otros otra genérico senzamarca altro semmarca outro outros ノーブランド ノーブランド品 その他 なし"
    " 기타 없음 노브랜드 ไม่มียี่ห้อ อื่นๆ"
).split()

_NOT_WORD = re.compile(r"[\W_]+")


@lru_cache(maxsize=1 << 16)
def normalize_key(key: str) -> str:
    """A key as compared: NFKC, casefolded, accents of Latin/Greek/Cyrillic letters dropped, no spaces/punctuation."""
    text = unicodedata.normalize("NFKC", str(key)).casefold()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFD", text)
        kept = [
            ch
            for i, ch in enumerate(decomposed)
            # a combining mark on a Latin/Greek/Cyrillic letter is an accent; on kana it is part of the letter
            if not (unicodedata.combining(ch) and i and ord(decomposed[i - 1]) < 0x0530)
        ]
        text = unicodedata.normalize("NFC", "".join(kept))
    return _NOT_WORD.sub("", text)


_NO_BRAND = frozenset(normalize_key(word) for word in _NO_BRAND_WORDS)


@lru_cache(maxsize=1 << 16)
def normalize_value(value: str) -> str:
    """An attribute value as compared: NFKC, casefolded, without spaces or punctuation ("Space Grey" ==
    "space-grey"); what `attribute_agreement` compares and the lexical space's ``a`` terms hold."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", plain(value)).casefold())


def _builtin_table() -> tuple[dict[str, str], dict[str, str]]:
    roles: dict[str, str] = {}
    concepts: dict[str, str] = {}
    for concept, (role, keys) in BUILTIN.items():
        for key in keys.split():
            roles.setdefault(normalize_key(key), role)
            concepts.setdefault(normalize_key(key), concept)
    return roles, concepts


_BUILTIN_ROLES, _BUILTIN_CONCEPTS = _builtin_table()


def builtin_role(key: str) -> str | None:
    """The built-in role of `key` ("none" for known noise), or None for a key prodmatch does not know."""
    return _BUILTIN_ROLES.get(normalize_key(key))


def role_of(key: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The role of `key` under a catalogue's `overrides` ({normalised key: role}), else its built-in role.

    "none" (noise, or switched off by the catalogue) and unknown keys both give None."""
    normalised = normalize_key(key)
    role = overrides.get(normalised) if overrides else None
    role = role or _BUILTIN_ROLES.get(normalised)
    return None if role == NONE else role


def product_roles(product: Mapping[str, object]) -> Mapping[str, str] | None:
    """The catalogue overrides a reader attached to `product` under `ROLES_FIELD`, if any."""
    roles = product.get(ROLES_FIELD)
    return roles if isinstance(roles, Mapping) else None


def attribute_role(product: Mapping[str, object], key: str) -> str | None:
    """The role of attribute `key` of `product`, honouring its catalogue's overrides (see `with_roles`)."""
    return role_of(key, product_roles(product))


def reads_lexically(product: Mapping[str, object], key: str) -> bool:
    """Whether the lexical space reads attribute `key` of `product` (a code, GTIN or identifying value)."""
    return attribute_role(product, key) in LEXICAL_ROLES


def comparison_slot(key: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """What `attribute_agreement` compares a key's value under: None for noise.

    brand, code and gtin keys compare as their role, whatever their name (``Art.-Nr.`` vs ``артикул``); a built-in
    identifying key as its concept (``Farbe`` vs ``颜色``: colour); any other key under its own normalised name."""
    normalised = normalize_key(key)
    override = overrides.get(normalised) if overrides else None
    if override == NONE:
        return None
    role = override or _BUILTIN_ROLES.get(normalised)
    if role == NONE:
        return None
    if role in ("brand", "code", "gtin"):
        return role
    if role == "identifying" and override is None:
        return "identifying:" + _BUILTIN_CONCEPTS[normalised]
    return "key:" + normalised


def with_roles(product: dict, overrides: Mapping[str, str] | None) -> dict:
    """`product` with its catalogue's overrides ({normalised key: role}, as `normalize_roles` gives them)
    attached under `ROLES_FIELD`; for readers that turn product rows into mappings."""
    if overrides:
        product[ROLES_FIELD] = overrides
    return product


def normalize_roles(roles: Mapping[str, str]) -> dict[str, str]:
    """{key as written: role} -> {normalised key: role}, checking each role (ConfigError naming a bad one)."""
    out = {}
    for key, role in roles.items():
        out[_checked_key(key)] = _checked_role(key, role)
    return out


def parse_assignment(text: str) -> tuple[str, str]:
    """'KEY=ROLE' (as given to --attribute-role / --set) -> (key, role); ConfigError saying the form otherwise."""
    key, sep, role = text.rpartition("=")
    if not sep:
        raise ConfigError(
            f"{text!r}: expected KEY=ROLE, e.g. 'Hersteller-Nr=code' (roles: {', '.join(ROLES)}, none)"
        )
    key = key.strip()
    _checked_key(key)
    return key, _checked_role(key, role)


def is_no_brand(value: str) -> bool:
    """Whether a brand or attribute value means "no brand" (``other/其他``, ``无品牌``, ``n/a``, ``без бренда``,
    ``Generic``, ``ノーブランド``, ``기타``)."""
    text = normalize_key(value)
    if not text:
        return True
    return text in _NO_BRAND or all(
        normalize_key(part) in _NO_BRAND for part in re.split(r"[/|,;]+", value) if normalize_key(part)
    )


def brand_from_attributes(
    attributes: Mapping[str, object] | None, overrides: Mapping[str, str] | None = None
) -> str | None:
    """The value, as written, of the first attribute whose role is brand and that names one; None otherwise."""
    for key, value in (attributes or {}).items():
        if isinstance(value, str) and role_of(key, overrides) == "brand":
            value = value.strip()
            if value and not is_no_brand(value):
                return value
    return None


def builtin_keys(*roles: str) -> frozenset[str]:
    """The normalised built-in keys of the given roles."""
    return frozenset(key for key, role in _BUILTIN_ROLES.items() if role in roles)


def describe_roles() -> Iterable[str]:
    """One line per role and its built-in keys, for help texts and docs."""
    for role in (*ROLES, NONE):
        keys = sorted({key for r, keys in BUILTIN.values() if r == role for key in keys.split()})
        yield f"{role}: {', '.join(keys)}"


def _checked_key(key: str) -> str:
    normalised = normalize_key(key)
    if not normalised:
        raise ConfigError(f"attribute key {key!r} has no letters or digits")
    return normalised


def _checked_role(key: str, role: str) -> str:
    role = str(role).strip().casefold()
    if role not in (*ROLES, NONE):
        raise ConfigError(
            f"attribute {key!r}: unknown role {role!r} (choose one of {', '.join(ROLES)}, none)"
        )
    return role
