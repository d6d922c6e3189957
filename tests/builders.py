"""Test data builders shared across the test tree (pictures, catalogue files, products with given vectors).

Imported as a plain module (`import builders`): tests/ is on sys.path because conftest.py lives there. Fixtures
that use these builders (`clip_model`, `matched`) are in conftest.py, so no test module imports another.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
COLOURS = ["red", "green", "blue", "orange", "purple", "black", "yellow", "cyan"]
WORDS = ["kettle", "lamp", "chair", "shoe", "jacket", "mug", "bag", "watch", "phone", "desk", "shirt", "vase"]


def product_image(path: Path, i: int, fmt: str = "JPEG", size=(96, 96)) -> Path:
    """A picture of two coloured shapes that differs with `i`, saved at `path`."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([10 + i % 7, 10, 60 + i % 13, 70], fill=COLOURS[i % len(COLOURS)])
    draw.ellipse([40, 40 + i % 11, 90, 90], fill=COLOURS[(i * 3) % len(COLOURS)])
    image.save(path, fmt)
    return path


def write_catalog(tmp_path: Path, name: str, n: int, image_ref=None, title=None) -> Path:
    """A CSV catalogue `name` of `n` products with pictures in tmp_path/images (shared by catalogues)."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    lines = ["external_id,title,brand,price,image"]
    for i in range(n):
        path = images / f"{i}.jpg"
        if not path.exists():
            product_image(path, i)
        ref = image_ref(i) if image_ref else f"images/{i}.jpg"
        lines.append(
            f"{name}-{i},{title(i) if title else f'Product {i} {COLOURS[i % 8]}'},Brand{i % 5},{i + 1},{ref}"
        )
    csv = tmp_path / f"{name}.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def matched_items(tmp_path: Path) -> tuple[list[tuple], list[tuple]]:
    """shop (24 items) and rival: rival-0..15 are exact duplicates of shop-0..15 (same image and title, some
    with a 30% higher price); rival-16..23 are different products. Images are written to tmp_path/images."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for i in range(48):
        product_image(images / f"{i}.png", i * 7 + 3, fmt="PNG")
    shop = [(f"shop-{i}", f"{WORDS[i % 12]} model {i}", f"{i}.png", 100 + i) for i in range(24)]
    rival = [
        (f"rival-{i}", f"{WORDS[i % 12]} model {i}", f"{i}.png", (130 if i % 3 == 0 else 100) + i)
        for i in range(16)
    ]
    rival += [
        (f"rival-{i}", f"{WORDS[(i + 5) % 12]} other {i * 11}", f"{i + 24}.png", 50 + i)
        for i in range(16, 24)
    ]
    return shop, rival


def write_items(tmp_path: Path, name: str, items: list[tuple[str, str, str, float]]) -> Path:
    """A CSV catalogue from items (external_id, title, image file name under images/, price)."""
    lines = ["external_id,title,brand,category,price,image"]
    for external_id, title, image, price in items:
        lines.append(
            f"{external_id},{title},Acme,{'Kitchen' if 'kettle' in title else 'Home'},{price},images/{image}"
        )
    path = tmp_path / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


VECTOR_COLUMNS = ("fused_vector", "image_vector", "text_vector")


def products_with_vectors(
    conn, model_id: int, catalog: str, vectors: np.ndarray, categories: list[str]
) -> list[int]:
    """Products with given fused/image/text vectors (written as the worker would), for exact control."""
    conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES (%s) ON CONFLICT DO NOTHING", (catalog,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, category, price)"
            " SELECT id, %s, %s, %s, 10 FROM prodmatch.catalogs WHERE name = %s",
            [(f"{catalog}-{i}", f"item {i}", categories[i], catalog) for i in range(len(vectors))],
        )
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id WHERE c.name = %s"
            " ORDER BY p.id",
            (catalog,),
        )
    ]
    storage = conn.execute("SELECT storage FROM prodmatch.models WHERE id = %s", (model_id,)).fetchone()[0]
    columns = ("fused_half", "image_half", "text_half") if storage == "halfvec" else VECTOR_COLUMNS
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE prodmatch.embeddings SET {} = %s::vector, {} = %s::vector, {} = %s::vector, status = 'done'"
            " WHERE model_id = %s AND product_id = %s".format(*columns),
            [(v, v, v, model_id, pid) for v, pid in zip(vectors.astype(np.float32), ids, strict=True)],
        )
    conn.commit()
    return ids


class _SlowPictures(http.server.SimpleHTTPRequestHandler):
    delay = 0.05

    def do_GET(self):
        time.sleep(self.delay)
        super().do_GET()

    def log_message(self, *args):
        pass


@contextmanager
def slow_picture_server(folder: Path) -> Iterator[str]:
    """8 product pictures served on 127.0.0.1 from `folder`, each after 50 ms (a run lasts long enough to be hit);
    yields the base URL ({url}/0.jpg ... {url}/7.jpg)."""
    folder.mkdir()
    for i in range(8):
        product_image(folder / f"{i}.jpg", i)
    handler = lambda *a, **k: _SlowPictures(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def insert_shop_copy_as_competitor(
    conn, catalogs: dict[str, int], source: str, external_id: str = "app-new"
) -> None:
    """What an application does: a copy of shop product `source` inserted into the competitor catalogue by plain
    SQL through the coordinator (committed by the caller)."""
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, category, image, price,"
        " currency) SELECT %s, %s, title, brand, category, image, price, currency"
        " FROM prodmatch.products WHERE catalog_id = %s AND external_id = %s",
        (catalogs["competitor"], external_id, catalogs["shop"], source),
    )


# An EXPLAIN that asks whether an ordered index (HNSW) serves a query: on a table of a few dozen rows the planner
# may otherwise prefer a sequential or primary-key scan and a sort, which answers nothing about the index.
INDEX_ONLY_PLANS = ("enable_seqscan", "enable_bitmapscan", "enable_sort")


def plan_with_indexes_only(conn, *, local: bool = False) -> None:
    """Turn off the plans that would answer an ordered query without its index (SET LOCAL with `local`)."""
    for setting in INDEX_ONLY_PLANS:
        conn.execute(f"SET {'LOCAL ' if local else ''}{setting} = off")


SHOE_KINDS = [
    "running shoe",
    "hiking boot",
    "canvas sneaker",
    "trail shoe",
    "slip-on loafer",
    "court sneaker",
]
SHOE_BRANDS = ["Asics", "Mizuno", "Onitsuka", "Brooks"]
SHOE_COLOURS = ["black", "white", "navy", "red"]


def shoes_in_two_currencies(folder: Path, shop_rate: float = 150.0, sign: str = "") -> tuple[Path, Path]:
    """(shop CSV, marketplace CSV) with no currency column: the shop's 24 shoes (s0..s23) priced in dollars x
    `shop_rate` (150: yen), the marketplace's in dollars 5% dearer; the marketplace sells s0..s15 (m0..m15) and
    eight look-alikes of s16..s23 in another colour (x0..x7). Both write `sign` before their prices."""
    rng = np.random.default_rng(3)
    shoes = [
        (
            SHOE_BRANDS[i % 4],
            SHOE_KINDS[i % 6],
            SHOE_COLOURS[(i // 6) % 4],
            38 + i % 7,
            round(float(rng.uniform(40, 160)), 2),
        )
        for i in range(24)
    ]
    shop = [
        f"s{i},{b} {k} {c} size {s},{b},{sign}{p * shop_rate:.2f}" for i, (b, k, c, s, p) in enumerate(shoes)
    ]
    market = [
        f"m{i},{b.upper()} {c.title()} {k.title()} - Size {s},{b},{sign}{p * 1.05:.2f}"
        for i, (b, k, c, s, p) in enumerate(shoes[:16])
    ]
    market += [
        f"x{i},{b.upper()} {SHOE_COLOURS[(SHOE_COLOURS.index(c) + 1) % 4].title()} {k.title()} - Size {s},{b},{sign}{p:.2f}"
        for i, (b, k, c, s, p) in enumerate(shoes[16:])
    ]
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "shop.csv", folder / "market.csv"
    for path, rows in zip(paths, (shop, market), strict=True):
        path.write_text("\n".join(["id,title,brand,price", *rows]) + "\n", encoding="utf-8")
    return paths


# (Latin name, Chinese name) of the brands a Chinese shop writes in Chinese only: two whose names prodmatch
# ships (brand_names.json), two it does not know
SHOE_BRANDS_TWO_SCRIPTS = [
    ("Nike", "耐克"),
    ("Adidas", "阿迪达斯"),
    ("Doublestar", "双星"),
    ("Warrior", "回力"),
]


def shoes_in_two_scripts(folder: Path, teach: bool = True) -> tuple[Path, Path]:
    """(shop CSV, marketplace CSV): the shop writes brands in Chinese only, the marketplace in Latin letters.
    The shop sells 24 shoes (s0..s23: brand, kind, colour, size); the marketplace s0..s19 (m0..m19) and, for
    s12..s19, the same shoe of the next brand (x0..x7). With `teach`, some marketplace offers write their brand
    in both scripts ("Nike/耐克", as marketplaces do), Doublestar's never, and offers n0..n5 only teach the
    names."""
    shop, market = [], []
    for i in range(24):
        latin, chinese = SHOE_BRANDS_TWO_SCRIPTS[i % 4]
        kind, colour, size = SHOE_KINDS[i % 6], SHOE_COLOURS[(i // 6) % 4], 38 + i % 7
        shop.append(f"s{i},{chinese} {kind} {colour} {size}码,{chinese}")
        written = f"{latin}/{chinese}" if teach and i % 3 == 0 and latin != "Doublestar" else latin
        if i < 20:
            market.append(f"m{i},{latin.upper()} {kind.title()} {colour.title()} - Size {size},{written}")
        if 12 <= i < 20:
            other = SHOE_BRANDS_TWO_SCRIPTS[(i + 1) % 4][0]
            market.append(f"x{i - 12},{other.upper()} {kind.title()} {colour.title()} - Size {size},{other}")
    for j in range(6):
        latin, chinese = SHOE_BRANDS_TWO_SCRIPTS[[0, 1, 3][j % 3]]
        market.append(f"n{j},{latin} gift card {j},{f'{latin}/{chinese}' if teach else latin}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "shop.csv", folder / "market.csv"
    for path, rows in zip(paths, (shop, market), strict=True):
        path.write_text("\n".join(["id,title,brand", *rows]) + "\n", encoding="utf-8")
    return paths


def shoes_sharing_model_codes(folder: Path) -> tuple[Path, Path]:
    """(shop CSV, marketplace CSV) that never write a brand in both scripts: the shop's 双星 and 回力 offers and the
    marketplace's Doublestar and Warrior ones share makers' model numbers (DS7701.., WR5508..), and one code
    (AB1234) is shared by chance between a 双星 slipper (c0) and a Warrior bag (k0)."""
    shop = [f"s{i},双星 跑步鞋 DS-77{i}1 黑色 42码,双星" for i in range(3)]
    shop += [f"w{i},回力 帆布鞋 WR55{i}8 白色 40码,回力" for i in range(2)]
    shop += ["c0,双星 拖鞋 AB1234 灰色,双星"]
    market = [f"m{i},DOUBLESTAR Running Shoe DS77{i}1 Black - Size 42,Doublestar" for i in range(3)]
    market += [f"v{i},WARRIOR Canvas Shoe WR55{i}8 White - Size 40,Warrior" for i in range(2)]
    market += ["k0,Warrior Canvas Bag AB1234 Grey,Warrior"]
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "shop.csv", folder / "market.csv"
    for path, rows in zip(paths, (shop, market), strict=True):
        path.write_text("\n".join(["id,title,brand", *rows]) + "\n", encoding="utf-8")
    return paths


def catalog_products(conn, catalog: str = "shop") -> dict[str, dict]:
    """A catalogue's products as ingest stored them: external_id -> its columns."""
    cur = conn.execute(
        "SELECT p.external_id, p.title, p.brand, p.price, p.currency, p.image, p.attributes, p.updated_at"
        " FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id WHERE c.name = %s",
        (catalog,),
    )
    names = [d.name for d in cur.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur}
