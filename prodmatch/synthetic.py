"""Generate two synthetic product catalogues, a shop and a competitor, for `prodmatch demo` and the tests.

`generate` writes files that `prodmatch ingest` reads unchanged: the shop as a `;`-delimited CSV with decimal-comma
prices ("4 999,00"), the competitor as JSONL with `id`, numeric prices and relative image paths, and one image per
listing drawn with Pillow (a category silhouette in the product's colour and pattern, with the brand on it). The
competitor carries about 70% of the shop's products under noisy titles (another language, transliteration,
abbreviations, word order, unit formats, typos, marketing words) with jittered prices and re-shot images (tint,
shift, rotation, mirroring, badges, JPEG); it adds products of its own and decoys, the same model in another colour
or size. Ground truth goes to `gold.csv` (shop x competitor pairs, label 1 = same product, 0 = near-identical
non-match) and `duplicates.csv` (the shop's own double listings). Everything follows from the seed, byte for byte.
Next on the data's path: `ingest.py` loads the files; `demo.py` runs the rest.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import random
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from prodmatch.errors import ProdmatchError

SHOP_CATALOG = "shop"
COMPETITOR_CATALOG = "competitor"
SHOP_FILE = "shop.csv"
COMPETITOR_FILE = "competitor.jsonl"
GOLD_FILE = "gold.csv"
DUPLICATES_FILE = "duplicates.csv"
IMAGES_DIR = "images"
SHOP_COLUMNS = (
    "external_id",
    "title",
    "description",
    "brand",
    "category",
    "price",
    "currency",
    "image",
    "colour",
    "size",
    "material",
)
GOLD_COLUMNS = ("source_catalog", "source_id", "target_catalog", "target_id", "label")
DUPLICATE_COLUMNS = ("catalog", "id_a", "id_b")

CARRIED_SHARE = 0.70  # of the shop's distinct products, listed by the competitor too
DECOY_SHARE = 0.08  # competitor products that are another colour or size of a shop product
OWN_SHARE = 0.20  # competitor products the shop does not have (relative to the shop's size)
DUPLICATE_SHARE = 0.03  # shop listings that repeat another shop listing
BIG_GAP_SHARE = 0.20  # matched pairs whose price differs by more than 20%


@dataclass(frozen=True)
class DemoFiles:
    """The files `generate` wrote, and what is in them.

    `matches` and `decoys` count the rows of `gold` with label 1 and 0: a shop listing and the competitor's listing
    of the same product (a shop product listed twice has two rows), and a shop listing and a competitor product
    of the same model in another colour or size. `duplicates` counts the rows of `shop_duplicates`.
    """

    folder: Path
    shop: Path
    competitor: Path
    gold: Path
    shop_duplicates: Path
    images: Path
    products: int
    competitor_products: int
    matches: int
    decoys: int
    duplicates: int
    shop_catalog: str = SHOP_CATALOG
    competitor_catalog: str = COMPETITOR_CATALOG


def generate(folder: Path, size: int = 200, *, seed: int = 0, image_size: int = 256) -> DemoFiles:
    """Write a shop of `size` listings, a competitor catalogue, their images and the ground truth into `folder`.

    The folder is created if needed; the files of an earlier demo in it are replaced (images it no longer needs
    are removed). The same seed and sizes give byte-identical files.
    """
    if size < 1:
        raise ProdmatchError(f"the demo catalogue needs at least 1 product (got --size {size})")
    if image_size < 32:
        raise ProdmatchError(f"demo images must be at least 32 pixels wide (got {image_size})")
    folder = Path(folder)
    rng = random.Random(f"prodmatch-demo:{seed}")
    world = _World(rng)
    shop = _plan_shop(world, size)
    competitor = _plan_competitor(world, shop, size)
    gold = _gold_pairs(shop, competitor)
    duplicates = [(a.external_id, b.external_id) for a, b in _duplicate_pairs(shop)]

    images = folder / IMAGES_DIR
    try:
        _write_images(images, folder, [*shop, *competitor], image_size)
        _write_shop(folder / SHOP_FILE, shop)
        _write_competitor(folder / COMPETITOR_FILE, competitor)
        _write_csv(folder / GOLD_FILE, GOLD_COLUMNS, gold)
        rows = [(SHOP_CATALOG, a, b) for a, b in duplicates]
        _write_csv(folder / DUPLICATES_FILE, DUPLICATE_COLUMNS, rows)
    except OSError as exc:
        raise ProdmatchError(f"{folder}: cannot write the demo files: {exc}") from exc
    return DemoFiles(
        folder=folder,
        shop=folder / SHOP_FILE,
        competitor=folder / COMPETITOR_FILE,
        gold=folder / GOLD_FILE,
        shop_duplicates=folder / DUPLICATES_FILE,
        images=images,
        products=len(shop),
        competitor_products=len(competitor),
        matches=sum(1 for row in gold if row[4] == 1),
        decoys=sum(1 for row in gold if row[4] == 0),
        duplicates=len(duplicates),
    )


# --- the vocabulary ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Colour:
    key: str
    en: str
    en_short: str
    ru_m: str
    ru_f: str
    ru_pl: str
    ru_short: str
    rgb: tuple[int, int, int]

    def ru(self, gender: str) -> str:
        return {"m": self.ru_m, "f": self.ru_f, "pl": self.ru_pl}[gender]


_COLOURS = (
    _Colour("black", "black", "blk", "чёрный", "чёрная", "чёрные", "чёрн.", (32, 32, 36)),
    _Colour("white", "white", "wht", "белый", "белая", "белые", "бел.", (246, 246, 242)),
    _Colour("grey", "grey", "gry", "серый", "серая", "серые", "сер.", (140, 142, 148)),
    _Colour("red", "red", "rd", "красный", "красная", "красные", "красн.", (210, 36, 42)),
    _Colour("blue", "blue", "blu", "синий", "синяя", "синие", "син.", (36, 82, 200)),
    _Colour("navy", "navy", "nvy", "тёмно-синий", "тёмно-синяя", "тёмно-синие", "т.-син.", (26, 36, 92)),
    _Colour(
        "light-blue", "light blue", "lt blue", "голубой", "голубая", "голубые", "голуб.", (120, 186, 236)
    ),
    _Colour("green", "green", "grn", "зелёный", "зелёная", "зелёные", "зел.", (40, 150, 72)),
    _Colour("yellow", "yellow", "ylw", "жёлтый", "жёлтая", "жёлтые", "жёлт.", (242, 202, 40)),
    _Colour("orange", "orange", "orng", "оранжевый", "оранжевая", "оранжевые", "оранж.", (246, 132, 30)),
    _Colour("pink", "pink", "pnk", "розовый", "розовая", "розовые", "роз.", (240, 132, 172)),
    _Colour("purple", "purple", "prpl", "фиолетовый", "фиолетовая", "фиолетовые", "фиол.", (130, 62, 170)),
    _Colour("beige", "beige", "bge", "бежевый", "бежевая", "бежевые", "беж.", (216, 196, 160)),
    _Colour("brown", "brown", "brn", "коричневый", "коричневая", "коричневые", "корич.", (120, 76, 40)),
)


@dataclass(frozen=True)
class _Category:
    key: str  # also the drawing
    name: str  # the `category` field, the same in both catalogues so --same-category works across them
    ru: str
    ru_short: str
    gender: str  # of the Russian noun, for the colour adjective: "m", "f" or "pl"
    en: tuple[str, ...]  # the first is the shop's word, the others the competitor's synonyms
    # brand, model templates: {n} is 1-99, {d2} .. {d5} that many digits
    brands: tuple[tuple[str, tuple[str, ...]], ...]
    size_kind: str
    sizes: tuple[str, ...]
    materials: tuple[tuple[str, str], ...]  # (English, Russian)
    price: tuple[int, int]  # roubles


_CATEGORIES = (
    _Category(
        "shoes",
        "Shoes",
        "Кроссовки беговые",
        "Кроссовки",
        "pl",
        ("running shoes", "sneakers", "trainers", "runners"),
        (
            ("Nike", ("Air Zoom Pegasus {n}", "Air Max {d2}", "Revolution {n}")),
            ("Adidas", ("Ultraboost {n}", "Duramo SL{n}", "Adizero {d2}")),
            ("Puma", ("Velocity Nitro {n}", "Deviate {n}")),
            ("Asics", ("Gel-Kayano {n}", "Gel-Nimbus {n}")),
            ("New Balance", ("Fresh Foam {d3}", "FuelCell {d3}")),
            ("Reebok", ("Floatride {n}", "Nano X{n}")),
        ),
        "eu",
        ("38", "39", "40", "41", "42", "43", "44", "45", "46"),
        (("textile", "текстиль"), ("leather", "кожа"), ("suede", "замша"), ("mesh", "сетка")),
        (3990, 14990),
    ),
    _Category(
        "kettle",
        "Kettles",
        "Чайник электрический",
        "Чайник",
        "m",
        ("electric kettle", "kettle", "water boiler"),
        (
            ("Bosch", ("TWK {d4}", "TWK 3A0{d2}")),
            ("Philips", ("HD93{d2}", "HD46{d2}")),
            ("Tefal", ("KO {d3}", "KI {d3}")),
            ("Xiaomi", ("Mi Smart Kettle {n}", "Mijia MJDSH0{n}")),
            ("Redmond", ("RK-M{d3}", "RK-G{d3}")),
            ("Kitfort", ("KT-{d3}",)),
        ),
        "litre",
        ("1.5", "1.7", "2.0"),
        (("stainless steel", "нержавеющая сталь"), ("glass", "стекло"), ("plastic", "пластик")),
        (1490, 7990),
    ),
    _Category(
        "tshirt",
        "T-shirts",
        "Футболка",
        "Футболка",
        "f",
        ("T-shirt", "tee", "t-shirt"),
        (
            ("Uniqlo", ("Supima Cotton {d3}", "AIRism {d3}")),
            ("Levi's", ("Housemark {d3}", "Original {d3}")),
            ("Lacoste", ("TH{d4}",)),
            ("Gap", ("Everyday Tee {d3}",)),
            ("Puma", ("Essentials {d3}",)),
        ),
        "apparel",
        ("XS", "S", "M", "L", "XL", "XXL"),
        (("cotton", "хлопок"), ("linen", "лён"), ("polyester", "полиэстер")),
        (790, 4990),
    ),
    _Category(
        "backpack",
        "Backpacks",
        "Рюкзак городской",
        "Рюкзак",
        "m",
        ("city backpack", "backpack", "daypack"),
        (
            ("Xiaomi", ("Mi Casual Daypack {n}", "Urban {d2}")),
            ("Samsonite", ("Securipak {d2}", "Openroad {n}")),
            ("Herschel", ("Little America {n}", "Heritage {d2}")),
            ("The North Face", ("Borealis {n}", "Jester {n}")),
            ("Deuter", ("Giga {n}", "StepOut {d2}")),
        ),
        "litre",
        ("15", "20", "25", "30"),
        (("nylon", "нейлон"), ("polyester", "полиэстер"), ("leather", "кожа")),
        (1990, 12990),
    ),
    _Category(
        "mug",
        "Mugs",
        "Кружка",
        "Кружка",
        "f",
        ("mug", "coffee mug", "cup"),
        (
            ("IKEA", ("Färgrik {d2}", "Vardagen {d2}")),
            ("Luminarc", ("Carine {d2}", "Trianon {d2}")),
            ("Bodum", ("Bistro {d2}", "Douro {d2}")),
            ("Villeroy & Boch", ("NewMoon {d2}", "Artesano {d2}")),
            ("Tescoma", ("Crema {d2}",)),
        ),
        "ml",
        ("250", "300", "350", "400"),
        (("ceramic", "керамика"), ("porcelain", "фарфор"), ("glass", "стекло")),
        (290, 1990),
    ),
    _Category(
        "headphones",
        "Headphones",
        "Наушники беспроводные",
        "Наушники",
        "pl",
        ("wireless headphones", "bluetooth headphones", "headphones"),
        (
            ("Sony", ("WH-1000XM{n}", "WH-CH{d3}N")),
            ("JBL", ("Tune {d3}BT", "Live {d3}NC")),
            ("Sennheiser", ("Momentum {n}", "HD {d3}BT")),
            ("Marshall", ("Major {n}", "Monitor {n}")),
            ("Xiaomi", ("Redmi Buds {n}", "Mi Headphones {n}")),
        ),
        "none",
        (),
        (("plastic", "пластик"), ("faux leather", "экокожа")),
        (2990, 34990),
    ),
    _Category(
        "lamp",
        "Lamps",
        "Лампа настольная",
        "Лампа",
        "f",
        ("desk lamp", "table lamp", "LED lamp"),
        (
            ("IKEA", ("Forså {d2}", "Tertial {d2}")),
            ("Xiaomi", ("Mi LED Desk Lamp {n}",)),
            ("Philips", ("Hue Go {n}", "Donutt {d2}")),
            ("Camelion", ("KD-{d3}",)),
            ("Lightstar", ("Turbina {d3}",)),
        ),
        "watt",
        ("5", "8", "10", "12"),
        (("metal", "металл"), ("plastic", "пластик"), ("wood", "дерево")),
        (990, 6990),
    ),
    _Category(
        "jacket",
        "Jackets",
        "Куртка демисезонная",
        "Куртка",
        "f",
        ("jacket", "rain jacket", "windbreaker"),
        (
            ("Columbia", ("Watertight {n}", "Pouring Adventure {n}")),
            ("The North Face", ("Resolve {n}", "Quest {d2}")),
            ("Helly Hansen", ("Seven J {d2}", "Loke {d2}")),
            ("Uniqlo", ("Blocktech {d3}", "Pocketable {d3}")),
            ("Patagonia", ("Torrentshell {n}L",)),
        ),
        "apparel",
        ("S", "M", "L", "XL", "XXL"),
        (("nylon", "нейлон"), ("polyester", "полиэстер"), ("down", "пух")),
        (4990, 24990),
    ),
    _Category(
        "bottle",
        "Water bottles",
        "Бутылка для воды",
        "Бутылка",
        "f",
        ("water bottle", "sports bottle", "bottle"),
        (
            ("Stanley", ("Go Flip {n}", "Classic {d2}")),
            ("Contigo", ("Autoseal {d2}", "Cortland {n}")),
            ("Nalgene", ("Wide Mouth {d2}",)),
            ("CamelBak", ("Chute Mag {n}", "Eddy {n}")),
        ),
        "ml",
        ("500", "750", "1000"),
        (("stainless steel", "нержавеющая сталь"), ("tritan", "тритан"), ("plastic", "пластик")),
        (590, 3990),
    ),
    _Category(
        "watch",
        "Watches",
        "Часы наручные",
        "Часы",
        "pl",
        ("wrist watch", "watch", "wristwatch"),
        (
            ("Casio", ("G-Shock GA-{d4}", "MTP-{d4}")),
            ("Citizen", ("BM{d4}", "NJ0{d3}")),
            ("Seiko", ("SRPD{d2}", "SUR{d3}")),
            ("Swatch", ("SO{d2}B{d3}",)),
            ("Timex", ("Weekender {d2}", "Expedition {d2}")),
        ),
        "mm",
        ("38", "40", "42", "44"),
        (("steel", "сталь"), ("silicone", "силикон"), ("leather", "кожа")),
        (2990, 39990),
    ),
    _Category(
        "cap",
        "Caps",
        "Бейсболка",
        "Бейсболка",
        "f",
        ("baseball cap", "cap", "snapback"),
        (
            ("New Era", ("9FORTY {d2}", "59FIFTY {d2}")),
            ("Nike", ("Club Cap {d2}",)),
            ("Adidas", ("Baseball {d3}",)),
            ("Puma", ("Ess Cap {d2}",)),
        ),
        "apparel",
        ("S/M", "M/L", "L/XL"),
        (("cotton", "хлопок"), ("polyester", "полиэстер")),
        (990, 3990),
    ),
    _Category(
        "umbrella",
        "Umbrellas",
        "Зонт складной",
        "Зонт",
        "m",
        ("folding umbrella", "umbrella", "compact umbrella"),
        (
            ("Fulton", ("Tiny-{n}", "Open & Close {n}")),
            ("Doppler", ("Carbonsteel {d3}", "Fiber {d3}")),
            ("Zest", ("{d5}",)),
            ("Knirps", ("T.{d3}", "X{n}")),
        ),
        "cm",
        ("95", "100", "105"),
        (("polyester", "полиэстер"), ("pongee", "понж")),
        (990, 5990),
    ),
)

_SIZE_FORMATS = {
    "eu": (("размер {v}", "р. {v}", "{v} р-р", "р-р {v}", "{v}"), ("size {v}", "EU {v}", "{v} EU", "{v}")),
    "apparel": (("размер {v}", "р-р {v}", "({v})", "{v}"), ("size {v}", "({v})", "{v}", "sz {v}")),
    "litre": (("{vc} л", "{vc}л", "{v} л", "{vc} литр."), ("{v} l", "{v}L", "{v} litre", "{v} ltr")),
    "ml": (("{v} мл", "{v}мл", "{lc} л"), ("{v} ml", "{v}ml", "{l} l", "{v}ML")),
    "watt": (("{v} Вт", "{v}Вт"), ("{v} W", "{v}W", "{v} watt")),
    "mm": (("{v} мм", "{v}мм", "корпус {v} мм"), ("{v} mm", "{v}mm", "case {v} mm")),
    "cm": (("{v} см", "купол {v} см", "{v}см"), ("{v} cm", "{v}cm", "dia. {v} cm")),
    "none": ((), ()),
}
_SIZE_NAMES = {  # what the size is, in descriptions (Russian, English)
    "eu": ("Размер", "Size"),
    "apparel": ("Размер", "Size"),
    "litre": ("Объём", "Volume"),
    "ml": ("Объём", "Volume"),
    "watt": ("Мощность", "Power"),
    "mm": ("Диаметр корпуса", "Case"),
    "cm": ("Диаметр купола", "Canopy"),
}

_MARKETING = {
    "ru": ("Новинка", "Хит продаж", "Оригинал", "Скидка!", "в наличии", "бесплатная доставка", "2025"),
    "en": ("NEW", "Best seller", "Original", "SALE", "in stock", "free shipping", "2025"),
}

_CYRILLIC_BRANDS = {
    "Nike": "Найк",
    "Adidas": "Адидас",
    "Puma": "Пума",
    "Bosch": "Бош",
    "Philips": "Филипс",
    "Xiaomi": "Сяоми",
    "Sony": "Сони",
    "Tefal": "Тефаль",
    "Redmond": "Редмонд",
    "Casio": "Касио",
    "IKEA": "ИКЕА",
    "Columbia": "Коламбия",
}

_TRANSLIT = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e yo zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya".split(),
        strict=True,
    )
)
_TRANSLIT.update({"ъ": "", "ь": ""})

_PATTERNS = ("solid", "solid", "stripes", "vstripes", "diagonal", "dots", "checks", "two-tone", "band")
_BACKGROUNDS = ((250, 248, 240), (242, 244, 248), (246, 246, 246), (255, 250, 244), (238, 243, 238))
_WATERMARK = "market.example"


# --- what is sold --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Family:
    """One model of one brand; its variants differ in colour or size only."""

    index: int
    category: _Category
    brand: str
    model: str
    material: tuple[str, str]
    secondary: _Colour
    pattern: str
    price: int


@dataclass(frozen=True)
class _Product:
    """A concrete item: a model in one colour and size."""

    family: _Family
    colour: _Colour
    size: str | None

    @property
    def variant(self) -> tuple[int, str, str | None]:
        return (self.family.index, self.colour.key, self.size)


@dataclass(frozen=True)
class _Photo:
    """How one listing's picture was taken."""

    background: tuple[int, int, int]
    scale: float = 0.92
    angle: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    mirror: bool = False
    shadow: bool = False
    badge: str | None = None
    watermark: bool = False
    quality: int | None = None  # JPEG quality; None = PNG


@dataclass(frozen=True)
class _Listing:
    """One row of one catalogue file."""

    catalog: str
    external_id: str
    product: _Product
    lang: str  # "ru", "en" or "translit" (Russian words in Latin letters)
    title: str
    brand: str
    price: float
    image: str  # relative to the catalogue file
    photo: _Photo | None  # None: the listing reuses another listing's image file
    description: str | None
    duplicate_of: str | None = None
    in_stock: bool = True


class _World:
    """The product families both catalogues draw from, and the random source that drives everything."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.families: list[_Family] = []
        self._models: set[tuple[str, str]] = set()

    def new_family(self) -> _Family:
        rng = self.rng
        category = rng.choice(_CATEGORIES)
        brand, templates = rng.choice(category.brands)
        model = _fill_model(rng.choice(templates), rng)
        for _ in range(20):
            if (brand, model) not in self._models:
                break
            model = _fill_model(rng.choice(templates), rng)
        edition = 2
        while (brand, model) in self._models:  # a big demo has used up the brand's numbers: a new edition
            model = f"{model.rsplit(' Mk', 1)[0]} Mk{edition}"
            edition += 1
        self._models.add((brand, model))
        low, high = category.price
        family = _Family(
            index=len(self.families),
            category=category,
            brand=brand,
            model=model,
            material=rng.choice(category.materials),
            secondary=rng.choice(_COLOURS),
            pattern=rng.choice(_PATTERNS),
            price=_retail(rng.uniform(low, high)),
        )
        self.families.append(family)
        return family

    def product(self, family: _Family, avoid: Collection[tuple] = ()) -> _Product:
        """A variant of `family` that is not in `avoid` (variant tuples)."""
        sizes = family.category.sizes or (None,)
        while True:
            product = _Product(family, self.rng.choice(_COLOURS), self.rng.choice(sizes))
            if product.variant not in avoid:
                return product

    def sibling(self, product: _Product, avoid: Collection[tuple]) -> _Product:
        """Another colour (or, where the category has sizes, maybe another size) of the same model."""
        sizes = product.family.category.sizes
        for _ in range(100):
            if sizes and self.rng.random() < 0.4:
                candidate = _Product(product.family, product.colour, self.rng.choice(sizes))
            else:
                candidate = _Product(product.family, self.rng.choice(_COLOURS), product.size)
            if candidate.variant not in avoid:
                return candidate
        return self.product(product.family, avoid)


def _fill_model(template: str, rng: random.Random) -> str:
    text = template.replace("{n}", str(rng.randint(1, 99)))
    for width in (5, 4, 3, 2):
        placeholder = f"{{d{width}}}"
        while placeholder in text:
            text = text.replace(placeholder, str(rng.randint(10 ** (width - 1), 10**width - 1)), 1)
    return text


def _retail(amount: float) -> int:
    """A shelf price: 349, 1 290, 4 990."""
    if amount < 1000:
        return max(9, int(round(amount / 10)) * 10 - 1)
    return int(round(amount / 100)) * 100 - 10


# --- the two catalogues ------------------------------------------------------------------------------------


def _plan_shop(world: _World, size: int) -> list[_Listing]:
    rng = world.rng
    duplicates = max(1, round(size * DUPLICATE_SHARE)) if size >= 4 else 0
    products: list[_Product] = []
    while len(products) < size - duplicates:
        family = world.new_family()
        products.append(world.product(family))
        if rng.random() < 0.15 and len(products) < size - duplicates:  # the shop sells two variants
            products.append(world.sibling(products[-1], {p.variant for p in products}))
    order = [(i, False) for i in range(len(products))]
    rng.shuffle(order)
    for index in rng.sample(range(len(products)), duplicates):
        # A repeat comes after its original, as in a catalogue that grew over time.
        position = order.index((index, False))
        order.insert(rng.randint(position + 1, len(order)), (index, True))
    width = max(4, len(str(size)))
    listings: list[_Listing] = []
    first: dict[int, _Listing] = {}
    for number, (index, repeat) in enumerate(order, start=1):
        external_id = f"SH-{number:0{width}d}"
        listing = (
            _shop_repeat(rng, first[index], external_id)
            if repeat
            else _shop_listing(rng, products[index], external_id)
        )
        first.setdefault(index, listing)
        listings.append(listing)
    return listings


def _shop_listing(rng: random.Random, product: _Product, external_id: str) -> _Listing:
    lang = "ru" if rng.random() < 0.6 else "en"
    return _Listing(
        catalog=SHOP_CATALOG,
        external_id=external_id,
        product=product,
        lang=lang,
        title=_shop_title(product, lang),
        brand=product.family.brand,
        price=float(product.family.price),
        image=f"{IMAGES_DIR}/{SHOP_CATALOG}/{external_id}.png",
        photo=_Photo(background=(255, 255, 255)),
        description=_description(product, lang),
    )


def _shop_repeat(rng: random.Random, original: _Listing, external_id: str) -> _Listing:
    """The same product listed again, typed in by someone else; half the time with the same picture."""
    reuse_image = rng.random() < 0.5
    photo = None
    if not reuse_image:
        photo = _Photo(
            background=(252, 252, 252),
            scale=rng.uniform(0.84, 0.96),
            shift=(rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)),
            quality=85,
        )
    price = original.price if rng.random() < 0.5 else float(_retail(original.price * rng.uniform(0.95, 1.05)))
    return _Listing(
        catalog=SHOP_CATALOG,
        external_id=external_id,
        product=original.product,
        lang=original.lang,
        title=_noisy_title(rng, original.product, original.lang, light=True),
        brand=original.brand,
        price=price,
        image=original.image if reuse_image else f"{IMAGES_DIR}/{SHOP_CATALOG}/{external_id}.jpg",
        photo=photo,
        description=None if rng.random() < 0.5 else original.description,
        duplicate_of=original.external_id,
    )


def _plan_competitor(world: _World, shop: list[_Listing], size: int) -> list[_Listing]:
    rng = world.rng
    originals = [listing for listing in shop if listing.duplicate_of is None]
    carried = rng.sample(originals, round(len(originals) * CARRIED_SHARE))
    entries: list[tuple[_Product, float]] = [(listing.product, listing.price) for listing in carried]
    taken = {listing.product.variant for listing in originals}
    for listing in rng.sample(originals, min(len(originals), round(len(originals) * DECOY_SHARE))):
        decoy = world.sibling(listing.product, taken)
        taken.add(decoy.variant)
        entries.append((decoy, listing.price))
    for _ in range(round(size * OWN_SHARE)):
        family = world.new_family()
        entries.append((world.product(family), float(family.price)))
    rng.shuffle(entries)
    width = max(5, len(str(len(entries))))
    return [
        _competitor_listing(rng, product, shop_price, f"CMP-{number:0{width}d}")
        for number, (product, shop_price) in enumerate(entries, start=1)
    ]


def _competitor_listing(
    rng: random.Random, product: _Product, list_price: float, external_id: str
) -> _Listing:
    """`list_price` is the shop's price of the product (or of the model, for a decoy or the competitor's own)."""
    lang = rng.choice(("ru", "ru", "en", "en", "translit"))
    price = _jitter(rng, list_price)
    brand = product.family.brand.upper() if rng.random() < 0.2 else product.family.brand
    badge = None
    if rng.random() < 0.3:
        cut = round(100 * (list_price - price) / list_price)
        badge = f"-{cut}%" if cut >= 5 else rng.choice(("SALE", "HIT", "NEW"))
    photo = _Photo(
        background=rng.choice(_BACKGROUNDS),
        scale=rng.uniform(0.8, 0.98),
        angle=rng.uniform(-7, 7),
        shift=(rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06)),
        mirror=rng.random() < 0.3,
        shadow=rng.random() < 0.5,
        badge=badge,
        watermark=rng.random() < 0.35,
        quality=rng.randint(60, 90),
    )
    description = _description(product, "en" if lang == "en" else "ru")
    if lang == "translit":
        description = _translit(description)
    return _Listing(
        catalog=COMPETITOR_CATALOG,
        external_id=external_id,
        product=product,
        lang=lang,
        title=_noisy_title(rng, product, lang),
        brand=brand,
        price=price,
        image=f"{IMAGES_DIR}/{COMPETITOR_CATALOG}/{external_id}.jpg",
        photo=photo,
        description=description if rng.random() < 0.5 else None,
        in_stock=rng.random() < 0.85,
    )


def _jitter(rng: random.Random, price: float) -> float:
    """The competitor's price: within 15% of the shop's, or (sometimes) 22-25% away."""
    if rng.random() < BIG_GAP_SHARE:
        factor = 1 + rng.choice((-1, 1)) * rng.uniform(0.22, 0.25)
    else:
        factor = 1 + rng.uniform(-0.15, 0.15)
    amount = max(9, int(round(price * factor / 10)) * 10 - 1)
    if rng.random() < 0.1:
        return amount + 0.9  # some shops price to the kopeck
    return float(amount)


def _gold_pairs(shop: list[_Listing], competitor: list[_Listing]) -> list[tuple[str, str, str, str, int]]:
    """Every shop x competitor pair of the same model: 1 for the same colour and size, 0 otherwise."""
    by_family: dict[int, list[_Listing]] = {}
    for listing in competitor:
        by_family.setdefault(listing.product.family.index, []).append(listing)
    rows = []
    for source in shop:
        for target in by_family.get(source.product.family.index, []):
            label = int(source.product.variant == target.product.variant)
            rows.append((SHOP_CATALOG, source.external_id, COMPETITOR_CATALOG, target.external_id, label))
    return sorted(rows)


def _duplicate_pairs(shop: list[_Listing]) -> list[tuple[_Listing, _Listing]]:
    by_id = {listing.external_id: listing for listing in shop}
    return [(by_id[listing.duplicate_of], listing) for listing in shop if listing.duplicate_of]


# --- titles --------------------------------------------------------------------------------------------------


def _shop_title(product: _Product, lang: str) -> str:
    """The shop's house style: one template per language, full words, the first unit format."""
    family, category = product.family, product.family.category
    size = _size_text(product, lang, 0)
    if lang == "ru":
        title = f"{category.ru} {family.brand} {family.model} {product.colour.ru(category.gender)}"
    else:
        noun = category.en[0][:1].upper() + category.en[0][1:]
        title = f"{family.brand} {family.model} {noun}, {product.colour.en}"
    return f"{title}, {size}" if size else title


_ORDERS = (
    ("noun", "brand", "model", "colour", "size"),
    ("brand", "model", "noun", "colour", "size"),
    ("noun", "brand", "model", "size", "colour"),
    ("brand", "noun", "model", "colour", "size"),
    ("colour", "noun", "brand", "model", "size"),
    ("brand", "model", "colour", "noun", "size"),
)


def _noisy_title(rng: random.Random, product: _Product, lang: str, *, light: bool = False) -> str:
    """The same product as another person would title it. `lang` is "ru", "en" or "translit"."""
    family, category = product.family, product.family.category
    words_lang = "en" if lang == "en" else "ru"
    chance = 0.5 if light else 1.0
    abbreviate = rng.random() < 0.3 * chance
    parts = {
        "brand": _brand_text(rng, family.brand, lang, chance),
        "model": _model_text(rng, family.model, chance),
        "size": _size_text(product, words_lang, rng.randrange(8)),
    }
    if words_lang == "ru":
        parts["noun"] = category.ru_short if rng.random() < 0.35 else category.ru
        parts["colour"] = product.colour.ru_short if abbreviate else product.colour.ru(category.gender)
    else:
        parts["noun"] = rng.choice(category.en)
        parts["colour"] = product.colour.en_short if abbreviate else product.colour.en
    if words_lang == "ru" and rng.random() < 0.1 * chance:
        parts["model"] = rng.choice(('"{}"', "«{}»")).format(parts["model"])
    order = list(rng.choice(_ORDERS[:3] if light else _ORDERS))
    if rng.random() < 0.25 * chance:
        order.insert(rng.randint(3, len(order)), "material")
        parts["material"] = family.material[1 if words_lang == "ru" else 0]
    comma_before_size = rng.random() < 0.4
    title = ""
    for key in order:
        if parts.get(key):
            joint = ", " if key == "size" and comma_before_size else " "
            title = f"{title}{joint}{parts[key]}" if title else parts[key]
    if words_lang == "ru" and rng.random() < 0.6:
        title = title.replace("ё", "е").replace("Ё", "Е")
    if rng.random() < 0.3 * chance:
        title = _with_marketing(rng, title, words_lang)
    if lang == "translit":
        title = _translit(title)
    if rng.random() < 0.2 * chance:
        title = _typo(rng, title)
    return _recase(rng, title, chance)


def _brand_text(rng: random.Random, brand: str, lang: str, chance: float) -> str:
    draw = rng.random()
    if lang == "ru" and brand in _CYRILLIC_BRANDS and draw < 0.2 * chance:
        return _CYRILLIC_BRANDS[brand]
    if draw > 1 - 0.15 * chance:
        return brand.upper()
    return brand


def _model_text(rng: random.Random, model: str, chance: float) -> str:
    draw = rng.random()
    if draw < 0.15 * chance and ("-" in model or " " in model):
        return model.replace("-", "").replace(" ", "")  # "WH-1000XM5" -> "WH1000XM5"
    if draw < 0.25 * chance and "-" in model:
        return model.replace("-", " ")
    return model


def _size_text(product: _Product, lang: str, choice: int) -> str:
    if product.size is None:
        return ""
    formats = _SIZE_FORMATS[product.family.category.size_kind][0 if lang == "ru" else 1]
    value = product.size
    litres = f"{int(value) / 1000:g}" if value.isdigit() else value
    return formats[choice % len(formats)].format(
        v=value, vc=value.replace(".", ","), l=litres, lc=litres.replace(".", ",")
    )


def _with_marketing(rng: random.Random, title: str, lang: str) -> str:
    word = rng.choice(_MARKETING[lang])
    shape = rng.choice(("{m} {t}", "{t} {m}", "[{m}] {t}", "{t} | {m}", "{t} ({m})"))
    return shape.format(m=word, t=title)


def _translit(text: str) -> str:
    out = []
    for char in text:
        latin = _TRANSLIT.get(char.lower())
        if latin is None:
            out.append(char)
        elif char.isupper():
            out.append(latin[:1].upper() + latin[1:])
        else:
            out.append(latin)
    return "".join(out)


def _typo(rng: random.Random, title: str) -> str:
    words = title.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not candidates:
        return title
    i = rng.choice(candidates)
    word, at = words[i], rng.randrange(1, len(words[i]) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swapped letters
        word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    elif kind == 1:  # a letter dropped
        word = word[:at] + word[at + 1 :]
    else:  # a letter doubled
        word = word[:at] + word[at] + word[at:]
    words[i] = word
    return " ".join(words)


def _recase(rng: random.Random, title: str, chance: float) -> str:
    draw = rng.random()
    if draw < 0.12 * chance:
        return title.upper()
    if draw < 0.2 * chance:
        return title.lower()
    if draw < 0.28 * chance:
        return " ".join(word[:1].upper() + word[1:] for word in title.split(" "))
    return title


def _description(product: _Product, lang: str) -> str:
    family, category = product.family, product.family.category
    facts = [
        (("материал", family.material[1]), ("Material", family.material[0])),
        (("цвет", product.colour.ru_m), ("Colour", product.colour.en)),
    ]
    if product.size is not None:
        value = product.size if category.size_kind in ("eu", "apparel") else _size_text(product, lang, 0)
        ru_name, en_name = _SIZE_NAMES[category.size_kind]
        facts.append(((ru_name.lower(), value), (en_name, value)))
    if lang == "ru":  # the Russian export writes "a; b; c" (and so gets quoted in the CSV)
        return f"{category.ru} {family.brand}; " + "; ".join(f"{k}: {v}" for (k, v), _ in facts)
    return f"{family.brand} {category.en[0]}. " + " ".join(f"{k}: {v}." for _, (k, v) in facts)


# --- files -------------------------------------------------------------------------------------------------


def _write_shop(path: Path, shop: list[_Listing]) -> None:
    rows = []
    for listing in shop:
        product = listing.product
        rows.append(
            (
                listing.external_id,
                listing.title,
                listing.description or "",
                listing.brand,
                product.family.category.name,
                _decimal_comma(listing.price),
                "RUB",
                listing.image,
                product.colour.en,
                product.size or "",
                product.family.material[0],
            )
        )
    _write_csv(path, SHOP_COLUMNS, rows, delimiter=";")


def _decimal_comma(price: float) -> str:
    """4999.0 -> "4 999,00", the way a Russian spreadsheet exports it."""
    whole, fraction = f"{price:.2f}".split(".")
    return f"{int(whole):,}".replace(",", " ") + "," + fraction


def _write_competitor(path: Path, competitor: list[_Listing]) -> None:
    lines = []
    for listing in competitor:
        product, family = listing.product, listing.product.family
        local = _translit if listing.lang == "translit" else str
        russian = listing.lang != "en"
        record: dict[str, object] = {
            "id": listing.external_id,
            "title": listing.title,
            "brand": listing.brand,
            "category": family.category.name,
            "price": int(listing.price) if listing.price.is_integer() else listing.price,
            "currency": "RUB",
            "image": listing.image,
            "color": local(product.colour.ru_m) if russian else product.colour.en,
        }
        if product.size is not None:
            record["size"] = product.size
        record["material"] = local(family.material[1]) if russian else family.material[0]
        if listing.description:
            record["description"] = listing.description
        record["in_stock"] = listing.in_stock
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple], *, delimiter: str = ",") -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _write_images(images: Path, folder: Path, listings: list[_Listing], image_size: int) -> None:
    directories = [images / SHOP_CATALOG, images / COMPETITOR_CATALOG]
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
    painter = _Painter(image_size)
    # Grouped by model and colour, so each drawing is made once and reused while it is needed.
    photographed = sorted(
        (listing for listing in listings if listing.photo),
        key=lambda listing: (listing.product.family.index, listing.product.colour.key, listing.image),
    )
    written = {_write_image(painter, listing, folder) for listing in photographed}
    _remove_stale_images(written, directories)


def _write_image(painter: _Painter, listing: _Listing, folder: Path) -> Path:
    path = folder / listing.image
    image = painter.photo(listing.product, listing.photo)
    if listing.photo.quality is None:
        image.save(path, "PNG")
    else:
        image.save(path, "JPEG", quality=listing.photo.quality)
    return path


def _remove_stale_images(written: set[Path], directories: list[Path]) -> None:
    """Images a previous, bigger demo left behind would only confuse someone browsing the folder."""
    for directory in directories:
        for path in directory.iterdir():
            if path.suffix in (".png", ".jpg") and path not in written:
                path.unlink()


# --- images --------------------------------------------------------------------------------------------------


class _Painter:
    """Draws each product once (per model and colour) and photographs it for each listing."""

    def __init__(self, image_size: int) -> None:
        self.size = image_size
        self._last: tuple[tuple[int, str], Image.Image] | None = None

    def photo(self, product: _Product, photo: _Photo) -> Image.Image:
        size = self.size
        canvas = Image.new("RGB", (size, size), photo.background)
        item = self._product(product.family, product.colour)
        centre = (size / 2 + photo.shift[0] * size, size / 2 + photo.shift[1] * size)
        if photo.shadow:
            shade = tuple(max(0, c - 22) for c in photo.background)
            x, y, half = centre[0], centre[1] + 0.41 * size * photo.scale, 0.35 * size * photo.scale
            ImageDraw.Draw(canvas).ellipse([x - half, y - half / 7, x + half, y + half / 7], fill=shade)
        # Scale, rotation, mirroring and shift in one resampling: each output pixel looks up its source.
        turn = math.radians(photo.angle)
        cos, sin = math.cos(turn) / photo.scale, math.sin(turn) / photo.scale
        flip = -1 if photo.mirror else 1
        a, b, d, e = flip * cos, flip * sin, -sin, cos
        matrix = (
            a,
            b,
            size / 2 - a * centre[0] - b * centre[1],
            d,
            e,
            size / 2 - d * centre[0] - e * centre[1],
        )
        item = item.transform((size, size), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
        canvas.paste(item, (0, 0), item)
        if photo.badge:
            _badge(canvas, photo.badge)
        if photo.watermark:
            _watermark(canvas)
        return canvas

    def _product(self, family: _Family, colour: _Colour) -> Image.Image:
        key = (family.index, colour.key)
        if self._last is None or self._last[0] != key:  # listings come grouped by model and colour
            self._last = (key, self._draw(family, colour))
        return self._last[1]

    def _draw(self, family: _Family, colour: _Colour) -> Image.Image:
        scale = 2  # drawn at twice the size and scaled down, for smooth edges
        canvas = _Canvas(self.size * scale, family, colour)
        _DRAWINGS[family.category.key](canvas)
        canvas.finish()
        return canvas.image.reduce(scale)


def _badge(image: Image.Image, text: str) -> None:
    size = image.width
    draw = ImageDraw.Draw(image)
    radius = size * 0.12
    centre = (size - radius * 1.2, radius * 1.2)
    draw.ellipse(
        [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius], fill=(220, 30, 40)
    )
    draw.text(centre, text, fill=(255, 255, 255), font=_font(max(8, round(radius * 0.7))), anchor="mm")


def _watermark(image: Image.Image) -> None:
    size = image.width
    ImageDraw.Draw(image, "RGBA").text(
        (size / 2, size * 0.9),
        _WATERMARK,
        fill=(90, 90, 90, 110),
        font=_font(max(8, size // 14)),
        anchor="mm",
    )


@functools.lru_cache(maxsize=64)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=pixels)  # Pillow's bundled font: the same on every machine
    except (ImportError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _darker(rgb: tuple[int, int, int], factor: float = 0.55) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in rgb)


def _contrast(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (20, 20, 24) if luminance > 150 else (250, 250, 250)


class _Canvas:
    """A transparent square in unit coordinates; `body_*` shapes get the product's colour and pattern."""

    def __init__(self, size: int, family: _Family, colour: _Colour) -> None:
        self.size = size
        self.colour = colour.rgb
        self.second = family.secondary.rgb if family.secondary != colour else _darker(colour.rgb, 0.7)
        self.pattern = family.pattern
        self.brand = family.brand.upper()
        self.outline = _darker(colour.rgb) if colour.key != "black" else (90, 90, 96)
        self.width = max(1, size // 110)
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self._mask = Image.new("L", (size, size), 0)
        self._mask_draw = ImageDraw.Draw(self._mask)
        self._outlines: list[tuple[str, object]] = []
        self._labels: list[tuple[float, float, float]] = []

    def xy(self, points) -> list[tuple[float, float]]:
        return [(x * self.size, y * self.size) for x, y in points]

    def box(self, box) -> list[float]:
        return [v * self.size for v in box]

    # Body shapes: filled with the product's colour and pattern by fill().
    def body_polygon(self, points) -> None:
        self._mask_draw.polygon(self.xy(points), fill=255)
        self._outlines.append(("polygon", self.xy(points)))

    def body_ellipse(self, box) -> None:
        self._mask_draw.ellipse(self.box(box), fill=255)
        self._outlines.append(("ellipse", self.box(box)))

    def body_rect(self, box, radius: float = 0.0) -> None:
        self._mask_draw.rounded_rectangle(self.box(box), radius=radius * self.size, fill=255)
        self._outlines.append(("rect", (self.box(box), radius * self.size)))

    def body_pieslice(self, box, start: float, end: float) -> None:
        self._mask_draw.pieslice(self.box(box), start, end, fill=255)
        self._outlines.append(("pieslice", (self.box(box), start, end)))

    def body_arc(self, box, start: float, end: float, width: float) -> None:
        self._mask_draw.arc(self.box(box), start, end, fill=255, width=round(width * self.size))

    def fill(self) -> None:
        self.image.paste(_pattern(self.size, self.colour, self.second, self.pattern), (0, 0), self._mask)
        for kind, shape in self._outlines:
            if kind == "polygon":
                self.draw.polygon(shape, outline=self.outline, width=self.width)
            elif kind == "ellipse":
                self.draw.ellipse(shape, outline=self.outline, width=self.width)
            elif kind == "rect":
                self.draw.rounded_rectangle(shape[0], radius=shape[1], outline=self.outline, width=self.width)
            else:
                self.draw.pieslice(shape[0], shape[1], shape[2], outline=self.outline, width=self.width)

    # Details, drawn over the body.
    def polygon(self, points, fill) -> None:
        self.draw.polygon(self.xy(points), fill=fill, outline=self.outline, width=self.width)

    def ellipse(self, box, fill, outline: bool = True) -> None:
        self.draw.ellipse(
            self.box(box), fill=fill, outline=self.outline if outline else None, width=self.width
        )

    def rect(self, box, fill, radius: float = 0.0) -> None:
        self.draw.rounded_rectangle(
            self.box(box), radius=radius * self.size, fill=fill, outline=self.outline, width=self.width
        )

    def line(self, points, fill, width: float) -> None:
        self.draw.line(self.xy(points), fill=fill, width=max(1, round(width * self.size)), joint="curve")

    def arc(self, box, start: float, end: float, fill, width: float) -> None:
        self.draw.arc(self.box(box), start, end, fill=fill, width=max(1, round(width * self.size)))

    def label(self, x: float, y: float, height: float, patch: bool = False) -> None:
        """The brand, written on the product (drawn last, over every detail)."""
        self._labels.append((x, y, height, patch))

    def finish(self) -> None:
        for x, y, height, patch in self._labels:
            pixels = round(height * self.size)
            width = self.draw.textlength(self.brand, font=_font(max(6, pixels)))
            pixels = min(pixels, int(pixels * 0.4 * self.size / max(width, 1)))  # long names: smaller letters
            font = _font(max(6, pixels))
            centre = (x * self.size, y * self.size)
            colour = _contrast(self.colour)
            if patch:
                left, top, right, bottom = self.draw.textbbox(centre, self.brand, font=font, anchor="mm")
                pad = self.size * 0.01
                self.draw.rectangle([left - pad, top - pad, right + pad, bottom + pad], fill=(250, 250, 250))
                colour = (20, 20, 24)
            self.draw.text(centre, self.brand, fill=colour, font=font, anchor="mm")


def _pattern(size: int, colour, second, pattern: str) -> Image.Image:
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    step = size // 10
    if pattern == "stripes":
        for y in range(0, size, step):
            draw.rectangle([0, y, size, y + step // 3], fill=second)
    elif pattern == "vstripes":
        for x in range(0, size, step):
            draw.rectangle([x, 0, x + step // 3, size], fill=second)
    elif pattern == "diagonal":
        for x in range(-size, size, step):
            draw.line([(x, size), (x + size, 0)], fill=second, width=max(1, step // 4))
    elif pattern == "dots":
        r = step // 5
        for row, y in enumerate(range(step // 2, size, step)):
            for x in range(step // 2 + (row % 2) * step // 2, size, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=second)
    elif pattern == "checks":
        for row, y in enumerate(range(0, size, step)):
            for x in range((row % 2) * step, size, 2 * step):
                draw.rectangle([x, y, x + step - 1, y + step - 1], fill=second)
    elif pattern == "two-tone":
        draw.rectangle([0, int(size * 0.62), size, size], fill=second)
    elif pattern == "band":
        draw.rectangle([0, int(size * 0.46), size, int(size * 0.56)], fill=second)
    return image


# One drawing per category, in unit coordinates (y grows downwards).
def _draw_shoes(c: _Canvas) -> None:
    c.body_polygon(
        [(0.10, 0.66), (0.14, 0.46), (0.30, 0.42), (0.44, 0.30), (0.58, 0.30), (0.66, 0.44), (0.86, 0.52)]
        + [(0.92, 0.60), (0.92, 0.66)]
    )
    c.fill()
    c.rect((0.08, 0.64, 0.94, 0.74), fill=(245, 245, 245), radius=0.04)
    c.polygon([(0.30, 0.58), (0.62, 0.46), (0.80, 0.56), (0.62, 0.52)], fill=c.second)
    for i in range(4):
        x = 0.46 + i * 0.045
        c.line([(x, 0.34 + i * 0.03), (x + 0.05, 0.40 + i * 0.03)], fill=(250, 250, 250), width=0.012)
    c.label(0.40, 0.55, 0.055)


def _draw_kettle(c: _Canvas) -> None:
    c.arc((0.56, 0.30, 0.86, 0.74), 270, 90, fill=c.outline, width=0.06)
    c.body_polygon([(0.30, 0.30), (0.66, 0.30), (0.74, 0.80), (0.22, 0.80)])
    c.body_polygon([(0.31, 0.36), (0.14, 0.28), (0.12, 0.33), (0.26, 0.52)])
    c.fill()
    c.ellipse((0.30, 0.24, 0.66, 0.34), fill=c.second)
    c.rect((0.18, 0.80, 0.78, 0.87), fill=(60, 60, 64), radius=0.02)
    c.rect((0.58, 0.42, 0.63, 0.74), fill=(150, 205, 240))
    c.label(0.45, 0.62, 0.06, patch=True)


def _draw_tshirt(c: _Canvas) -> None:
    c.body_polygon(
        [(0.30, 0.20), (0.42, 0.16), (0.58, 0.16), (0.70, 0.20), (0.90, 0.36), (0.81, 0.48), (0.72, 0.41)]
        + [(0.72, 0.86), (0.28, 0.86), (0.28, 0.41), (0.19, 0.48), (0.10, 0.36)]
    )
    c.fill()
    c.arc((0.41, 0.10, 0.59, 0.26), 20, 160, fill=c.outline, width=0.02)
    c.label(0.50, 0.44, 0.07)


def _draw_backpack(c: _Canvas) -> None:
    c.arc((0.38, 0.10, 0.62, 0.30), 180, 360, fill=c.outline, width=0.03)
    c.body_rect((0.24, 0.20, 0.76, 0.88), radius=0.10)
    c.fill()
    c.rect((0.31, 0.56, 0.69, 0.84), fill=c.second, radius=0.05)
    c.line([(0.34, 0.62), (0.66, 0.62)], fill=(40, 40, 40), width=0.01)
    c.line([(0.28, 0.30), (0.28, 0.80)], fill=c.outline, width=0.015)
    c.line([(0.72, 0.30), (0.72, 0.80)], fill=c.outline, width=0.015)
    c.label(0.50, 0.40, 0.06, patch=True)


def _draw_mug(c: _Canvas) -> None:
    c.arc((0.56, 0.38, 0.84, 0.68), 270, 90, fill=c.outline, width=0.06)
    c.body_rect((0.22, 0.28, 0.66, 0.82), radius=0.05)
    c.fill()
    c.ellipse((0.22, 0.24, 0.66, 0.34), fill=_darker(c.colour, 0.4))
    c.label(0.44, 0.58, 0.06, patch=True)


def _draw_headphones(c: _Canvas) -> None:
    c.body_arc((0.20, 0.14, 0.80, 0.80), 180, 360, width=0.07)
    c.body_rect((0.13, 0.44, 0.33, 0.78), radius=0.07)
    c.body_rect((0.67, 0.44, 0.87, 0.78), radius=0.07)
    c.fill()
    c.rect((0.30, 0.48, 0.36, 0.74), fill=c.second, radius=0.02)
    c.rect((0.64, 0.48, 0.70, 0.74), fill=c.second, radius=0.02)
    c.label(0.50, 0.62, 0.05, patch=True)


def _draw_lamp(c: _Canvas) -> None:
    c.line([(0.44, 0.82), (0.34, 0.52), (0.58, 0.34)], fill=(90, 90, 96), width=0.025)
    c.body_polygon([(0.50, 0.20), (0.68, 0.14), (0.86, 0.42), (0.58, 0.52)])
    c.body_ellipse((0.22, 0.80, 0.66, 0.90))
    c.fill()
    c.ellipse((0.66, 0.44, 0.78, 0.54), fill=(255, 236, 140), outline=False)
    c.label(0.44, 0.85, 0.04)


def _draw_jacket(c: _Canvas) -> None:
    c.body_polygon(
        [(0.30, 0.16), (0.42, 0.12), (0.58, 0.12), (0.70, 0.16), (0.86, 0.38), (0.92, 0.80), (0.81, 0.82)]
        + [(0.74, 0.46), (0.74, 0.90), (0.26, 0.90), (0.26, 0.46), (0.19, 0.82), (0.08, 0.80), (0.14, 0.38)]
    )
    c.fill()
    c.arc((0.38, 0.04, 0.62, 0.24), 180, 360, fill=c.outline, width=0.03)
    c.line([(0.50, 0.14), (0.50, 0.90)], fill=c.second, width=0.015)
    c.line([(0.31, 0.68), (0.43, 0.68)], fill=c.outline, width=0.012)
    c.line([(0.57, 0.68), (0.69, 0.68)], fill=c.outline, width=0.012)
    c.label(0.63, 0.30, 0.035)


def _draw_bottle(c: _Canvas) -> None:
    c.body_rect((0.36, 0.24, 0.64, 0.90), radius=0.07)
    c.body_rect((0.42, 0.16, 0.58, 0.28))
    c.fill()
    c.rect((0.41, 0.08, 0.59, 0.17), fill=c.second, radius=0.02)
    c.rect((0.36, 0.48, 0.64, 0.64), fill=(248, 248, 248))
    c.label(0.50, 0.56, 0.045, patch=True)


def _draw_watch(c: _Canvas) -> None:
    c.body_rect((0.40, 0.06, 0.60, 0.36), radius=0.03)
    c.body_rect((0.40, 0.64, 0.60, 0.94), radius=0.03)
    c.fill()
    c.ellipse((0.28, 0.28, 0.72, 0.72), fill=c.second)
    c.ellipse((0.33, 0.33, 0.67, 0.67), fill=(250, 250, 246))
    c.line([(0.50, 0.50), (0.50, 0.38)], fill=(20, 20, 20), width=0.015)
    c.line([(0.50, 0.50), (0.60, 0.54)], fill=(20, 20, 20), width=0.012)
    c.label(0.50, 0.60, 0.035, patch=True)


def _draw_cap(c: _Canvas) -> None:
    c.body_pieslice((0.18, 0.26, 0.78, 0.90), 180, 360)
    c.fill()
    c.polygon([(0.70, 0.58), (0.94, 0.60), (0.92, 0.66), (0.70, 0.64)], fill=c.second)
    c.ellipse((0.45, 0.23, 0.51, 0.29), fill=c.second)
    c.label(0.46, 0.46, 0.055)


def _draw_umbrella(c: _Canvas) -> None:
    c.line([(0.50, 0.50), (0.50, 0.84)], fill=(70, 70, 74), width=0.02)
    c.arc((0.50, 0.78, 0.62, 0.90), 0, 180, fill=(70, 70, 74), width=0.02)
    c.body_pieslice((0.08, 0.16, 0.92, 0.84), 180, 360)
    c.fill()
    for x in (0.29, 0.50, 0.71):
        c.line([(0.50, 0.16), (x, 0.50)], fill=c.outline, width=0.006)
    c.label(0.50, 0.42, 0.05)


_DRAWINGS = {
    "shoes": _draw_shoes,
    "kettle": _draw_kettle,
    "tshirt": _draw_tshirt,
    "backpack": _draw_backpack,
    "mug": _draw_mug,
    "headphones": _draw_headphones,
    "lamp": _draw_lamp,
    "jacket": _draw_jacket,
    "bottle": _draw_bottle,
    "watch": _draw_watch,
    "cap": _draw_cap,
    "umbrella": _draw_umbrella,
}
