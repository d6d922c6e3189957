"""Ingest speed: `prodmatch ingest` of a generated catalogue vs a raw binary COPY of the same rows, one run.

    python benchmarks/ingest.py [--rows 200000]

Uses PRODMATCH_DATABASE_URL if set, else a throw-away embedded server. Prints rows/s for: raw binary COPY into a
bare table, raw binary COPY into `prodmatch.products` (the ceiling of any ingest into the real table), ingest of
a new catalogue (parse + validate + COPY straight into products + triggers), and a re-ingest of the same file
(staging + upsert, everything unchanged), with their ratios to both COPYs; then the same rows as JSON lines and
as one JSON document (`{"products": [...]}`, streamed), each against the CSV file's ingest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings, load_settings  # noqa: E402
from prodmatch.ingest.load import ingest_file  # noqa: E402
from prodmatch.ingest.sources import IngestOptions  # noqa: E402

WORDS = (
    "red blue running shoe kettle cotton shirt mug jacket leather bag steel black white size pro max".split()
)
BRANDS = ["Nike", "Adidas", "Bosch", "IKEA", "Sony", "Xiaomi", "Uniqlo", "Puma", "Columbia", "Philips"]


def generate_rows(n: int, images: Path, seed: int = 0) -> list[tuple]:
    """`n` product rows; their image paths lie under `images`, the catalogue file's folder (its images root)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        title = " ".join(rng.choices(WORDS, k=6))
        description = " ".join(rng.choices(WORDS, k=30))
        price = Decimal(rng.randrange(100, 1_000_000)) / 100
        rows.append(
            (
                f"SKU-{i:07d}",
                title,
                description,
                rng.choice(BRANDS),
                rng.choice(["Shoes", "Kitchen", "Clothes", "Bags"]),
                price,
                "EUR",
                f"{images}/{i % 1000}/{i}.jpg",
                rng.choice(WORDS),
            )
        )
    return rows


def write_csv(rows: list[tuple], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("external_id,title,description,brand,category,price,currency,image,colour\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")


FIELDS = ("external_id", "title", "description", "brand", "category", "price", "currency", "image", "colour")


def write_json(rows: list[tuple], path: Path, *, lines: bool) -> None:
    objects = (dict(zip(FIELDS, (*r[:5], float(r[5]), *r[6:]), strict=True)) for r in rows)
    with open(path, "w", encoding="utf-8") as f:
        if lines:
            f.writelines(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
        else:
            json.dump({"count": len(rows), "products": list(objects)}, f, ensure_ascii=False, indent=1)


def raw_copy(url: str, rows: list[tuple]) -> float:
    """Seconds for a binary COPY of the same rows into a bare table (no indexes, no constraints)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE bare (external_id text, title text, description text, brand text, category text,"
            " price numeric, currency text, image text, colour text)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy("COPY bare FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text", "text", "text", "numeric", "text", "text", "text"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bare")
    return seconds


def copy_into_products(url: str, rows: list[tuple]) -> float:
    """Seconds for a binary COPY of the same rows straight into prodmatch.products (its keys, foreign key,
    generated content hash and triggers): what writing the rows costs before any parsing or validation."""
    with psycopg.connect(url) as conn:
        catalog_id = conn.execute(
            "INSERT INTO prodmatch.catalogs (name) VALUES ('raw-copy') RETURNING id"
        ).fetchone()[0]
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title, description, brand, category, price,"
            " currency, image, attributes) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                ["int8", "text", "text", "text", "text", "text", "numeric", "text", "text", "jsonb"]
            )
            for *fields, colour in rows:
                copy.write_row((catalog_id, *fields, Jsonb({"colour": colour})))
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DELETE FROM prodmatch.catalogs WHERE id = %s", (catalog_id,))
        conn.commit()
    return seconds


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line)
        flags = next(line for line in out.splitlines() if line.startswith("Flags"))
        extras = [f for f in ("amx_bf16", "avx512_bf16", "avx512f") if f in flags.split()]
        return f"{model} ({os.cpu_count()} cores; {', '.join(extras)})"
    except Exception:
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate COPY into products and a new catalogue's ingest this many times (shared machines)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env_settings = load_settings()
        settings = env_settings if env_settings.database_url else Settings(home=Path(tmp) / "home")
        db.upgrade(settings)
        url = db.database_url(settings)
        rows = generate_rows(args.rows, Path(tmp).resolve() / "images")
        path = Path(tmp) / "catalogue.csv"
        write_csv(rows, path)

        raw_seconds = raw_copy(url, rows)
        pairs = []  # (COPY into products, ingest of a new catalogue) seconds, measured one right after the other
        with db.connection(settings) as conn:
            for _ in range(args.rounds):
                table_seconds = copy_into_products(url, rows)
                conn.execute("DELETE FROM prodmatch.catalogs WHERE name = 'bench'")
                conn.commit()
                first = ingest_file(conn, path, "bench", IngestOptions())
                pairs.append((table_seconds, first.seconds))
            again = ingest_file(conn, path, "bench", IngestOptions())
            conn.execute("DELETE FROM prodmatch.catalogs WHERE name = 'bench'")
            conn.commit()
            formats = []
            for name, lines in (("catalogue.jsonl", True), ("catalogue.json", False)):
                json_path = Path(tmp) / name
                write_json(rows, json_path, lines=lines)
                done = ingest_file(conn, json_path, "bench", IngestOptions())
                formats.append((name, done, json_path.stat().st_size))
                conn.execute("DELETE FROM prodmatch.catalogs WHERE name = 'bench'")
                conn.commit()

    n = args.rows
    raw_rate = n / raw_seconds
    table_seconds, first_seconds = (statistics.median(times) for times in zip(*pairs, strict=True))
    table_rate = n / table_seconds
    print(f"CPU: {cpu_name()}")
    print(f"rows: {n:,}  file: {path.name}; medians of {args.rounds} alternating rounds")
    print(f"raw binary COPY, bare table : {raw_rate:12,.0f} rows/s  ({raw_seconds:.2f} s)  = 1.00")
    print(
        f"raw binary COPY, products   : {table_rate:12,.0f} rows/s  ({table_seconds:.2f} s)  = {table_rate / raw_rate:.2f}"
        "  (straight into prodmatch.products: keys, foreign key, content hash, triggers)"
    )
    for label, seconds, result in (
        ("ingest, new catalogue", first_seconds, first),
        ("re-ingest, unchanged", again.seconds, again),
    ):
        rate = n / seconds
        print(
            f"{label:<28}: {rate:12,.0f} rows/s  ({seconds:.2f} s)  = {rate / raw_rate:.2f} of raw COPY,"
            f" {rate / table_rate:.2f} of COPY into products"
            f"  [inserted {result.inserted:,}, unchanged {result.unchanged:,}, rejected {result.rejected}]"
        )
    for name, done, size in formats:
        rate = n / done.seconds
        print(
            f"ingest of {name:<17}: {rate:12,.0f} rows/s  ({done.seconds:.2f} s, {size / 1e6:.0f} MB)  ="
            f" {first_seconds / done.seconds:.2f} of the CSV file's ingest  [{done.format}, inserted {done.inserted:,}]"
        )
    shares = ", ".join(f"{table / ingest:.2f}" for table, ingest in pairs)
    print(
        f"ingest of a new catalogue / plain COPY into products = {table_seconds / first_seconds:.2f}"
        f" (each round: {shares}; the target: >= 0.50)"
    )


if __name__ == "__main__":
    main()
