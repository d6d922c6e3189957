"""The demo data generator: files that ingest reads without a reject, ground truth that points at real rows,
images that look alike for the same product, noisy titles, and byte-identical output for a seed. No database."""

from __future__ import annotations

import csv
import json
import random
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodmatch.demo.catalogues import DemoFiles, generate, translit
from prodmatch.demo.world import COLOURS, World
from prodmatch.errors import ProdmatchError
from prodmatch.ingest.rows import read_rows
from prodmatch.ingest.sources import IngestOptions, open_source

CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
LATIN = re.compile("[a-z]", re.IGNORECASE)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("demo"), 120, seed=3, image_size=96)


def read_shop(demo: DemoFiles) -> dict[str, dict]:
    with demo.shop.open(encoding="utf-8", newline="") as f:
        return {row["external_id"]: row for row in csv.DictReader(f, delimiter=";")}


def read_competitor(demo: DemoFiles) -> dict[str, dict]:
    lines = demo.competitor.read_text(encoding="utf-8").splitlines()
    return {obj["id"]: obj for obj in map(json.loads, lines)}


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)


def test_files_parse_and_counts_match(demo):
    assert demo.shop.read_text(encoding="utf-8").splitlines()[0].split(";") == [
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
    ]
    shop, competitor = read_shop(demo), read_competitor(demo)
    gold, duplicates = read_csv(demo.gold), read_csv(demo.shop_duplicates)
    assert len(shop) == demo.products == 120
    assert len(competitor) == demo.competitor_products
    assert sum(row["label"] == "1" for row in gold) == demo.matches > 0
    assert sum(row["label"] == "0" for row in gold) == demo.decoys > 0
    assert len(duplicates) == demo.duplicates > 0
    # About 70% of the shop's distinct products are carried by the competitor.
    carried = {row["source_id"] for row in gold if row["label"] == "1"} - {d["id_b"] for d in duplicates}
    assert 0.6 < len(carried) / (demo.products - demo.duplicates) < 0.8
    for obj in competitor.values():
        assert "external_id" not in obj and isinstance(obj["price"], int | float)
        assert not Path(obj["image"]).is_absolute()
    assert all(re.fullmatch(r"\d{1,3}( \d{3})*,\d\d", row["price"]) for row in shop.values())


def test_ground_truth_points_at_real_rows(demo):
    shop, competitor = read_shop(demo), read_competitor(demo)
    gold = read_csv(demo.gold)
    assert set(gold[0]) == {"source_catalog", "source_id", "target_catalog", "target_id", "label"}
    for row in gold:
        assert (row["source_catalog"], row["target_catalog"]) == (demo.shop_catalog, demo.competitor_catalog)
        assert row["source_id"] in shop and row["target_id"] in competitor
        assert row["label"] in ("0", "1")
    assert len({(r["source_id"], r["target_id"]) for r in gold}) == len(gold)
    for row in read_csv(demo.shop_duplicates):
        assert row["catalog"] == demo.shop_catalog
        assert row["id_a"] in shop and row["id_b"] in shop and row["id_a"] != row["id_b"]


def test_every_image_reference_is_a_readable_image(demo):
    references = [row["image"] for row in read_shop(demo).values()]
    references += [obj["image"] for obj in read_competitor(demo).values()]
    for reference in references:
        with Image.open(demo.folder / reference) as image:
            image.load()
            assert image.size == (96, 96) and image.format in ("JPEG", "PNG")
    assert {p.resolve() for p in demo.images.rglob("*.*")} == {
        (demo.folder / r).resolve() for r in references
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def snapshot(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    first = generate(tmp_path / "a", 30, seed=7, image_size=64)
    again = generate(tmp_path / "b", 30, seed=7, image_size=64)
    other = generate(tmp_path / "c", 30, seed=8, image_size=64)
    assert snapshot(first.folder) == snapshot(again.folder)
    counts = ("products", "competitor_products", "matches", "decoys", "duplicates")
    assert [getattr(first, k) for k in counts] == [getattr(again, k) for k in counts]
    assert first.shop.read_bytes() != other.shop.read_bytes()
    assert first.competitor.read_bytes() != other.competitor.read_bytes()
    # Writing into the same folder again leaves no stale images behind.
    smaller = generate(tmp_path / "a", 10, seed=7, image_size=64)
    assert len(list((smaller.images / "shop").iterdir())) <= smaller.products


def test_matched_images_look_alike_but_differ(demo):
    shop, competitor = read_shop(demo), read_competitor(demo)
    matched = [r for r in read_csv(demo.gold) if r["label"] == "1"]
    same = []
    for row in matched:
        a = pixels(demo.folder / shop[row["source_id"]]["image"])
        b = pixels(demo.folder / competitor[row["target_id"]]["image"])
        same.append(np.abs(a - b).mean())
    shop_ids, competitor_ids = sorted(shop), sorted(competitor)
    unrelated = [
        np.abs(
            pixels(demo.folder / shop[shop_ids[i]]["image"])
            - pixels(demo.folder / competitor[competitor_ids[(i * 7 + 3) % len(competitor_ids)]]["image"])
        ).mean()
        for i in range(40)
    ]
    assert min(same) > 0  # never a byte-for-byte copy
    # Re-shot (tint, shift, rotation, mirror, badge, JPEG) yet nearly always closer than two different products.
    assert np.mean(np.array(same) < np.median(unrelated)) > 0.9
    assert np.median(same) < 0.75 * np.median(unrelated)


def test_titles_are_noisy_and_mix_scripts(demo):
    shop, competitor = read_shop(demo), read_competitor(demo)
    pairs = [
        (shop[r["source_id"]]["title"], competitor[r["target_id"]]["title"])
        for r in read_csv(demo.gold)
        if r["label"] == "1"
    ]
    assert sum(a != b for a, b in pairs) > 0.8 * len(pairs)
    titles = [t for pair in pairs for t in pair]
    assert any(CYRILLIC.search(t) for t in titles) and any(not CYRILLIC.search(t) for t in titles)
    # Some products are titled in Russian on one side and in Latin letters (English or translit) on the other.
    assert any(bool(CYRILLIC.search(a)) != bool(CYRILLIC.search(b)) for a, b in pairs)
    assert all(LATIN.search(t) for t in titles)  # brands and model numbers stay Latin


def colour_key(name: str) -> str:
    """The colour an attribute names, in English, Russian or transliterated Russian."""
    return next(c.key for c in COLOURS if name in (c.en, c.ru_m, translit(c.ru_m)))


def test_decoys_are_the_same_model_in_another_colour_or_size(demo):
    shop, competitor = read_shop(demo), read_competitor(demo)
    for row in read_csv(demo.gold):
        a, b = shop[row["source_id"]], competitor[row["target_id"]]
        assert a["brand"].lower() == b["brand"].lower() and a["category"] == b["category"]
        same_colour = colour_key(a["colour"]) == colour_key(b["color"])
        same_variant = same_colour and (a["size"] or None) == b.get("size")
        assert same_variant == (row["label"] == "1"), (a, b)


def test_duplicates_are_the_same_product(demo):
    shop = read_shop(demo)
    for row in read_csv(demo.shop_duplicates):
        a, b = shop[row["id_a"]], shop[row["id_b"]]
        for field in ("brand", "category", "colour", "size", "material"):
            assert a[field] == b[field]


def test_some_price_gaps_exceed_twenty_percent(demo):
    shop, competitor = read_shop(demo), read_competitor(demo)
    gaps = []
    for row in read_csv(demo.gold):
        if row["label"] == "1":
            ours = float(shop[row["source_id"]]["price"].replace(" ", "").replace(",", "."))
            gaps.append(abs(competitor[row["target_id"]]["price"] - ours) / ours)
    assert any(gap > 0.2 for gap in gaps)
    assert sum(gap > 0.2 for gap in gaps) < 0.5 * len(gaps)
    assert max(gaps) < 0.3


@pytest.mark.parametrize("which", ["shop", "competitor"])
def test_ingest_reads_every_row(demo, which):
    path = getattr(demo, which)
    options = IngestOptions()
    source = open_source(path, options)
    try:
        rows = list(read_rows(source, options, str(path.parent.resolve())))
    finally:
        source.close()
    assert source.format == ("csv" if which == "shop" else "jsonl")
    if which == "shop":
        assert source.delimiter == ";" and source.encoding == "utf-8"
    assert [r for r in rows if r.reject_reason is not None] == []
    assert len(rows) == (demo.products if which == "shop" else demo.competitor_products)
    assert len({r[1] for r in rows}) == len(rows)  # external ids are unique
    for row in rows:
        _, _, title, _, brand, category, price, currency, image, attributes = row[:10]
        assert title and brand and category and currency == "RUB"
        assert Decimal(str(price)) > 0
        assert Path(image).is_absolute() and Path(image).is_file()
        attributes = json.loads(attributes)  # the extra columns / keys
        assert "material" in attributes and ("colour" in attributes or "color" in attributes)
    if which == "shop":
        first = read_shop(demo)[rows[0][1]]["price"]
        assert Decimal(rows[0][6]) == Decimal(first.replace(" ", "").replace(",", "."))


@pytest.mark.parametrize("size, image_size", [(0, 256), (10, 8)])
def test_bad_arguments_are_user_errors(tmp_path, size, image_size):
    with pytest.raises(ProdmatchError):
        generate(tmp_path, size, image_size=image_size)


def test_tiny_catalogues_work(tmp_path):
    for size in (1, 2, 5):
        files = generate(tmp_path / str(size), size, image_size=48)
        assert files.products == size
        assert len(read_shop(files)) == size


def test_model_names_stay_unique_in_big_catalogues():
    world = World(random.Random(0))
    families = [world.new_family() for _ in range(5000)]  # more than some brands have model numbers for
    assert len({(f.brand, f.model) for f in families}) == len(families)
