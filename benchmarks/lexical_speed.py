"""Lexical encoding speed: `LexicalEncoder.encode_many` and `weigh_many` on generated product titles, one run.

    python benchmarks/lexical_speed.py [--products 100000]

Generates typical shop titles (brand, product kind, model code in varied spellings, units, colours) from a fixed
seed, then times (a) raw term extraction for all products in a fresh word cache, (b) document frequencies and the
IDF table, (c) weighing every product (`weigh_many`). Prints products/s for each and the mean number of
non-zeros.
"""

from __future__ import annotations

import argparse
import platform
import random
import time

from prodmatch.embed.lexical import LexicalEncoder, document_frequencies, idf_weights, weigh_many

BRANDS = ["Samsung", "Самсунг", "Philips", "Филипс", "Sony", "Bosch", "Logitech", "Xiaomi", "Apple", "Lenovo"]
KINDS = [
    "LED bulb",
    "Smartphone",
    "Wireless headphones",
    "Gaming mouse",
    "Laptop",
    "Электрочайник",
    "SSD drive",
]
UNITS = ["8 Вт", "8W", "40мм", "1,5 л", "512GB", "1 ТБ", "5000 mAh", '27"', "220 В", "2.4 GHz"]
COLOURS = ["black", "white", "чёрный", "silver", "blue"]


def title(rng: random.Random) -> dict[str, str]:
    code = f"{rng.choice('ABCDEFGHKMPSTWX')}{rng.choice('ABCDEFGHKLMX')}-{rng.randint(10, 9999)}{rng.choice('HMXZ')}"
    code = rng.choice([code, code.replace("-", ""), code.replace("-", " "), code.lower()])
    words = [rng.choice(KINDS), code, rng.choice(UNITS), rng.choice(UNITS), rng.choice(COLOURS)]
    rng.shuffle(words)
    return {"brand": rng.choice(BRANDS), "title": " ".join(words)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(0)
    products = [title(rng) for _ in range(args.products)]
    encoder = LexicalEncoder()
    print(f"CPU: {platform.processor() or platform.machine()}, {args.products} products (brand + title)")

    start = time.perf_counter()
    raw = encoder.encode_many(products)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    idf = idf_weights(document_frequencies(raw), len(raw))
    idf_s = time.perf_counter() - start
    start = time.perf_counter()
    weighted = weigh_many(raw, idf)
    weigh_s = time.perf_counter() - start

    nnz = sum(len(i) for i, _ in weighted) / len(weighted)
    for step, seconds in (
        ("encode_many", encode_s),
        ("document frequencies + idf", idf_s),
        ("weigh_many", weigh_s),
    ):
        print(f"{step:28s} {seconds:7.2f} s  {args.products / seconds:10,.0f} products/s")
    total = encode_s + idf_s + weigh_s
    print(
        f"{'total':28s} {total:7.2f} s  {args.products / total:10,.0f} products/s; mean non-zeros {nnz:.0f}"
    )


if __name__ == "__main__":
    main()
