"""The demo's made-up world: colours, product categories and families, sizes, brands and the words around them.

`World` draws product families and products (a family's model in one colour and size) from a seeded random
source; `COLOURS` and the category table hold the vocabulary in English and Russian. `demo.catalogues` turns
products into shop and competitor listings, `demo.pictures` draws them. Data only, no files.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

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


COLOURS = (
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


class World:
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
            secondary=rng.choice(COLOURS),
            pattern=rng.choice(_PATTERNS),
            price=_retail(rng.uniform(low, high)),
        )
        self.families.append(family)
        return family

    def product(self, family: _Family, avoid: Collection[tuple] = ()) -> _Product:
        """A variant of `family` that is not in `avoid` (variant tuples)."""
        sizes = family.category.sizes or (None,)
        while True:
            product = _Product(family, self.rng.choice(COLOURS), self.rng.choice(sizes))
            if product.variant not in avoid:
                return product

    def sibling(self, product: _Product, avoid: Collection[tuple]) -> _Product:
        """Another colour (or, where the category has sizes, maybe another size) of the same model."""
        sizes = product.family.category.sizes
        for _ in range(100):
            if sizes and self.rng.random() < 0.4:
                candidate = _Product(product.family, product.colour, self.rng.choice(sizes))
            else:
                candidate = _Product(product.family, self.rng.choice(COLOURS), product.size)
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
