"""Generate two synthetic product catalogues, a shop and a competitor, for `prodmatch demo` and the tests.

`generate` writes files that `prodmatch ingest` reads unchanged: the shop as a `;`-delimited CSV with decimal-comma
prices ("4 999,00"), the competitor as JSONL with `id`, numeric prices and relative image paths, and one image per
listing drawn with Pillow (a category silhouette in the product's colour and pattern, with the brand on it). The
competitor carries about 70% of the shop's products under noisy titles (another language, transliteration,
abbreviations, word order, unit formats, typos, marketing words) with jittered prices and re-shot images (tint,
shift, rotation, mirroring, badges, JPEG); it adds products of its own and decoys, the same model in another colour
or size. Ground truth goes to `gold.csv` (shop x competitor pairs, label 1 = same product, 0 = near-identical
non-match) and `duplicates.csv` (the shop's own double listings). Everything follows from the seed, byte for byte.
Next on the data's path: `ingest` loads the files; `demo.run` runs the rest.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from prodmatch.demo.pictures import _Painter
from prodmatch.demo.world import (
    _BACKGROUNDS,
    _CYRILLIC_BRANDS,
    _MARKETING,
    _SIZE_FORMATS,
    _SIZE_NAMES,
    _TRANSLIT,
    World,
    _Listing,
    _Photo,
    _Product,
    _retail,
)
from prodmatch.errors import ProdmatchError
from prodmatch.quality.gold import GOLD_COLUMNS as _PAIR_COLUMNS

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
GOLD_COLUMNS = (*_PAIR_COLUMNS, "label")  # the format `quality.gold` reads
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
    world = World(rng)
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


_TRANSLIT.update({"ъ": "", "ь": ""})


# --- the two catalogues ------------------------------------------------------------------------------------


def _plan_shop(world: World, size: int) -> list[_Listing]:
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


def _plan_competitor(world: World, shop: list[_Listing], size: int) -> list[_Listing]:
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
        description = translit(description)
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
        title = translit(title)
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


def translit(text: str) -> str:
    """Russian text in Latin letters, the way shops write it for foreign keyboards (other letters pass through)."""
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
        local = translit if listing.lang == "translit" else str
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
