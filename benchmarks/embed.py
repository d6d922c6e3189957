"""Embedding speed: `prodmatch embed` on generated product photos against a naive loop and this CPU's limit, one run.

    python benchmarks/embed.py [--products 400] [--naive-products 64]

Builds a random-weight model of the exact openai/clip-vit-base-patch32 architecture (prodmatch.toymodels), registers
it like a real one, generates a catalogue of 800x800 JPEG product photos and embeds it on a throw-away embedded
PostgreSQL. Prints products/s for:

  (a) the worker, end to end (claim, read + decode + preprocess, image and text towers, fusion, database writes),
      through `prodmatch.worker.embed` with the options `prodmatch embed` uses by default;
  (b) a naive loop over a subset, one product at a time in fp32: PIL open, the transformers processor,
      get_image_features, get_text_features, one UPDATE and commit per product;
  (c) the model-only ceiling: the best bf16 matmul FLOP/s this CPU reaches, divided by the model's FLOPs per
      product (image tower at 224x224 plus text tower at the catalogue's token length, FlopCounterMode);
  (d) the same in fp32, the naive loop's precision;

with (a)/(b), (a)/(c), (b)/(d), and the peak RSS of `prodmatch embed` run in a subprocess on N and on 2N products.
The naive loop runs in a fresh process, as a first-draft script would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.demo.toymodels import build_clip  # noqa: E402
from prodmatch.embed.encoders import Encoder  # noqa: E402
from prodmatch.embed.registry import add_model  # noqa: E402
from prodmatch.embed.text import render_text  # noqa: E402
from prodmatch.embed.worker import EmbedOptions, embed  # noqa: E402
from prodmatch.hardware import auto_precision, matmul_flops  # noqa: E402
from prodmatch.ingest.load import ingest_file  # noqa: E402
from prodmatch.store.models import get_model  # noqa: E402

MODEL_NAME = "vit-b-32"
COLOURS = [
    "red",
    "green",
    "blue",
    "orange",
    "purple",
    "black",
    "gold",
    "teal",
    "navy",
    "maroon",
    "olive",
    "grey",
]
BRANDS = ["Nike", "Adidas", "Bosch", "IKEA", "Sony", "Xiaomi", "Uniqlo", "Puma", "Philips", "Braun"]
NOUNS = [
    "running shoe",
    "kettle",
    "cotton shirt",
    "mug",
    "jacket",
    "leather bag",
    "lamp",
    "headphones",
    "chair",
]
PHOTO_SIDE = 800


# --- the catalogue ------------------------------------------------------------------------------------------------


def product_photo(path: Path, i: int) -> None:
    """An 800x800 JPEG 'product photo': a few outlined shapes in colour and a caption, on white."""
    rng = random.Random(i)
    image = Image.new("RGB", (PHOTO_SIDE, PHOTO_SIDE), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 6)):
        x0, y0 = rng.randrange(0, PHOTO_SIDE * 3 // 4), rng.randrange(0, PHOTO_SIDE * 3 // 4)
        box = [x0, y0, x0 + rng.randrange(60, PHOTO_SIDE // 2), y0 + rng.randrange(60, PHOTO_SIDE // 2)]
        shape = rng.choice((draw.rectangle, draw.ellipse, draw.rounded_rectangle))
        shape(box, fill=rng.choice(COLOURS), outline="black", width=rng.randint(1, 6))
    caption = f"{rng.choice(BRANDS)} {rng.choice(NOUNS)}".upper()
    draw.text((40, PHOTO_SIDE - 90), caption, fill="black", font=ImageFont.load_default(size=48))
    image.save(path, "JPEG", quality=90)


def write_catalogue(folder: Path, name: str, n: int, photos: list[Path]) -> Path:
    """A CSV of `n` products whose images cycle through `photos`."""
    rng = random.Random(name)
    lines = ["external_id,title,brand,price,image"]
    for i in range(n):
        title = f"{rng.choice(NOUNS)} {rng.choice(COLOURS)} {rng.randrange(1, 100)}"
        lines.append(
            f"{name}-{i},{title},{rng.choice(BRANDS)},{rng.randrange(5, 500)}.99,{photos[i % len(photos)]}"
        )
    path = folder / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- (a) the worker -----------------------------------------------------------------------------------------------


def worker_run(settings: Settings, catalogue: str) -> tuple[float, object]:
    """Embed the catalogue with the CLI's default options; returns (seconds including model load, summary)."""
    options = EmbedOptions(model=MODEL_NAME, catalog=catalogue, precision=settings.precision)
    started = time.perf_counter()
    [summary] = embed(settings, options)
    return time.perf_counter() - started, summary


def worker_subprocess(url: str, catalogue: str) -> dict:
    """`prodmatch embed --json` in a child process; its summary plus its peak RSS (from wait4)."""
    env = {**os.environ, "PRODMATCH_DATABASE_URL": url}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prodmatch.cli",
            "embed",
            "--model",
            MODEL_NAME,
            "--catalog",
            catalogue,
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"prodmatch embed failed in the subprocess (exit {child.returncode})")
    return {**json.loads(out), "peak_rss_mib": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def naive_subprocess(url: str, model_dir: Path, catalogue: str, limit: int) -> tuple[int, float]:
    """`naive_loop` in a child process with glibc's default allocator settings; returns (products, seconds)."""
    out = subprocess.run(
        [sys.executable, __file__, "--naive-child", url, str(model_dir), catalogue, str(limit)],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ).stdout
    result = json.loads(out.decode().strip().splitlines()[-1])
    return result["products"], result["seconds"]


# --- (b) the naive loop -------------------------------------------------------------------------------------------


def naive_loop(settings: Settings, model_dir: Path, catalogue: str, limit: int) -> tuple[int, float]:
    """One product at a time in fp32, as the idea is usually first coded; returns (products, seconds)."""
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    with db.connection(settings) as conn:
        naive_id = conn.execute("SELECT id FROM prodmatch.models WHERE name = 'naive'").fetchone()[0]
        products = conn.execute(
            "SELECT p.id, p.title, p.brand, p.image FROM prodmatch.products p"
            " JOIN prodmatch.catalogs c ON c.id = p.catalog_id WHERE c.name = %s ORDER BY p.id LIMIT %s",
            (catalogue, limit),
        ).fetchall()
        conn.commit()
        started = time.perf_counter()
        for product_id, title, brand, image_path in products:
            with torch.no_grad():
                image = Image.open(image_path).convert("RGB")
                pixels = processor(images=image, return_tensors="pt")
                image_vector = _unit(model.get_image_features(**pixels))
                tokens = processor.tokenizer([f"{brand} {title}"], padding=True, return_tensors="pt")
                text_vector = _unit(model.get_text_features(**tokens))
            fused = image_vector + text_vector
            fused /= np.linalg.norm(fused)
            conn.execute(
                "UPDATE prodmatch.embeddings SET image_vector = %s, text_vector = %s, fused_vector = %s,"
                " status = 'done', embedded_at = now() WHERE model_id = %s AND product_id = %s",
                (image_vector, text_vector, fused, naive_id, product_id),
            )
            conn.commit()
        seconds = time.perf_counter() - started
    return len(products), seconds


def _unit(output) -> np.ndarray:
    vectors = output if isinstance(output, torch.Tensor) else output.pooler_output
    vector = vectors[0].float().numpy()
    return vector / np.linalg.norm(vector)


# --- (c) the CPU's limit ------------------------------------------------------------------------------------------


def best_matmul_flops(dtype: torch.dtype, sizes=(2048, 3072, 4096)) -> float:
    """The best FLOP/s of square matrix products of `dtype` on the CPU over a few sizes (prodmatch.hardware)."""
    return max(matmul_flops(dtype, size=n, device="cpu") for n in sizes)


def model_flops_per_product(model_dir: Path, texts: list[str]) -> tuple[float, float, float]:
    """(image FLOPs, mean text FLOPs, mean text tokens) per product, counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    encoder = Encoder.load(str(model_dir), precision="bf16")
    pixels = torch.zeros((1, 3, 224, 224))
    with FlopCounterMode(display=False) as counter:
        encoder.embed_pixels(pixels)
    image_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        for text in texts:  # one at a time: no padding counted
            encoder.embed_texts([text])
    tokens = [len(encoder._tokenizer(text)["input_ids"]) for text in texts]
    return image_flops, counter.get_total_flops() / len(texts), float(np.mean(tokens))


def bf16_agreement(model_dir: Path, photos: list[Path], texts: list[str]) -> tuple[float, float]:
    """The lowest cosine between bf16 and fp32 vectors of the same photos and texts: (image, text)."""
    images = [Image.open(path).convert("RGB") for path in photos]
    half = Encoder.load(str(model_dir), precision="bf16")
    full = Encoder.load(str(model_dir), precision="fp32")
    image = np.sum(half.embed_images(images) * full.embed_images(images), axis=1).min()
    text = np.sum(half.embed_texts(texts) * full.embed_texts(texts), axis=1).min()
    return float(image), float(text)


# --- reporting ----------------------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line)
        flags = next(line for line in out.splitlines() if line.startswith("Flags")).split()
        extras = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
        missing = [f for f in ("amx_bf16",) if f not in flags]
        return f"{model}, {os.cpu_count()} cores; {', '.join(extras) or 'no bf16 flags'}" + (
            f"; no {', '.join(missing)}" if missing else ""
        )
    except Exception:
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--products", type=int, default=400, help="catalogue size N (the memory check also runs 2N)"
    )
    parser.add_argument("--naive-products", type=int, default=64, help="products for the naive loop")
    parser.add_argument("--skip-memory", action="store_true", help="skip the N / 2N subprocess runs")
    parser.add_argument(
        "--naive-child", nargs=4, metavar=("URL", "MODEL_DIR", "CATALOGUE", "LIMIT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.naive_child:
        url, model_dir, catalogue, limit = args.naive_child
        count, seconds = naive_loop(Settings(database_url=url), Path(model_dir), catalogue, int(limit))
        print(json.dumps({"products": count, "seconds": seconds}))
        return
    n = args.products

    with tempfile.TemporaryDirectory(prefix="prodmatch-embed-bench-") as tmp:
        tmp = Path(tmp)
        settings = Settings(home=tmp / "home")
        db.upgrade(settings)
        url = db.database_url(settings)

        model_dir = build_clip(tmp / "model", size="vit-b-32")
        photos_dir = tmp / "photos"
        photos_dir.mkdir()
        photos = [photos_dir / f"{i}.jpg" for i in range(n)]
        for i, path in enumerate(photos):
            product_photo(path, i)
        with db.connection(settings) as conn:
            ingest_file(conn, write_catalogue(tmp, "bench", n, photos), "bench")
            model = add_model(conn, str(model_dir), name=MODEL_NAME)
            texts = [
                render_text(model.text_template, {"title": t, "brand": b})
                for t, b in conn.execute("SELECT title, brand FROM prodmatch.products LIMIT 64").fetchall()
            ]

        # The naive loop in a fresh process: this one has loaded models through prodmatch, which tunes the
        # process's allocator (encoders.keep_freed_memory) as a first-draft script would not.
        with db.connection(settings) as conn:
            add_model(conn, str(model_dir), name="naive", precision="fp32")  # registered here, loaded there
        naive_count, naive_seconds = naive_subprocess(url, model_dir, "bench", args.naive_products)
        naive_rate = naive_count / naive_seconds
        seconds_with_load, summary = worker_run(settings, "bench")
        worker_rate = summary.products_per_second

        peak = best_matmul_flops(torch.bfloat16)
        fp32_peak = best_matmul_flops(torch.float32)
        image_flops, text_flops, text_tokens = model_flops_per_product(model_dir, texts)
        image_agreement, text_agreement = bf16_agreement(model_dir, photos[:32], texts[:32])
        ceiling = peak / (image_flops + text_flops)
        fp32_ceiling = fp32_peak / (image_flops + text_flops)

        memory = []
        if not args.skip_memory:
            for size in (n, 2 * n):
                name = f"mem-{size}"
                with db.connection(settings) as conn:
                    ingest_file(conn, write_catalogue(tmp, name, size, photos), name)
                memory.append((size, worker_subprocess(url, name)))

        precision = auto_precision(torch.device("cpu"))
        print(f"CPU: {cpu_name()}")
        print(
            f"torch {torch.__version__}, threads {torch.get_num_threads()}; batch size {EmbedOptions().batch_size}, "
            f"image threads {EmbedOptions().image_threads}, precision auto -> {precision}"
        )
        print(
            f"catalogue: {n} products, {PHOTO_SIDE}x{PHOTO_SIDE} JPEG photos, text template "
            f"{get_model_template(settings)!r} ({text_tokens:.1f} tokens on average)"
        )
        print()
        print(
            f"(a) prodmatch embed, end to end : {worker_rate:7.1f} products/s  ({summary.seconds:.1f} s for "
            f"{summary.embedded} products; {seconds_with_load:.1f} s with the model load)"
        )
        print(
            f"(b) naive loop, fp32, 1 by 1    : {naive_rate:7.1f} products/s  ({naive_seconds:.1f} s for "
            f"{naive_count} products)"
        )
        print(
            f"(c) bf16 model-only ceiling     : {ceiling:7.1f} products/s  (matmul peak {peak / 1e9:.0f} GFLOP/s; "
            f"{image_flops / 1e9:.2f} GFLOP image + {text_flops / 1e9:.2f} GFLOP text per product)"
        )
        print(
            f"(d) fp32 model-only ceiling     : {fp32_ceiling:7.1f} products/s  (matmul peak {fp32_peak / 1e9:.0f}"
            f" GFLOP/s; bf16 / fp32 = {peak / fp32_peak:.1f}x)"
        )
        print()
        print(
            f"bf16 vs fp32 on 32 photos and titles: lowest cosine {image_agreement:.5f} (image),"
            f" {text_agreement:.5f} (text)"
        )
        print(
            f"(a)/(b) = {worker_rate / naive_rate:.1f}x   (a)/(c) = {worker_rate / ceiling:.0%}"
            f"   (b)/(d) = {naive_rate / fp32_ceiling:.0%}   (c)/(b) = {ceiling / naive_rate:.1f}x"
            " (the most (a)/(b) could be here)"
        )
        for size, result in memory:
            print(
                f"subprocess `prodmatch embed` on {size:5d} products: peak RSS {result['peak_rss_mib']:7.0f} MiB, "
                f"{result['products_per_second']:.1f} products/s"
            )


def get_model_template(settings: Settings) -> str:
    with db.connection(settings) as conn:
        return get_model(conn, MODEL_NAME).text_template


if __name__ == "__main__":
    main()
