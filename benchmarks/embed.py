"""Embedding speed: `prodmatch embed` on generated product photos against the model alone and a naive loop, one run.

    python benchmarks/embed.py [--products 400] [--rounds 2] [--naive-products 64] [--skip-memory]

Builds a random-weight model of the exact openai/clip-vit-base-patch32 architecture (prodmatch.toymodels), registers
it like a real one, generates a catalogue of 800x800 JPEG product photos and embeds it on a throw-away embedded
PostgreSQL. Every rate is a **marginal** rate: products after the first batch over the time from the first batch's
end to the last one's, so the model load, the first claim and the first images (paid once per run) are left out
of the worker's rates as they are of the model's. Prints products/s for:

  (a) the worker, end to end (claim, read + decode + preprocess, image and text towers, fusion, database writes),
      through `prodmatch.worker.embed` with the options `prodmatch embed` uses by default, images read from files;
  (a-http) the same with every image fetched over HTTP from a local server (a child process) that waits 100 ms
      before answering each request;
  (m) the model-only limit: the image and text towers alone, batch 32, on tensors made beforehand (the
      catalogue's preprocessed photos and tokenized texts), nothing else in the process running, in the
      precision the worker's "auto" picks on this CPU (bf16 where the CPU has bf16 instructions, else fp32);
  (t) text only: the worker on a catalogue of 4N products without images, against (t-m) the text tower alone on
      the catalogue's tokens (in catalogue order and sorted by length; the better of the two is the limit);
  (b) a naive loop over a subset, one product at a time in fp32: PIL open, the transformers processor,
      get_image_features, get_text_features, one UPDATE and commit per product, in a fresh process;
  (c) the matmul bound: the best matmul FLOP/s this CPU reaches in that precision, divided by the model's FLOPs
      per product
      (image tower at 224x224 plus text tower at the catalogue's token length, FlopCounterMode); (d) in fp32;

with the shares (a)/(m), (t)/(t-m), (a-http)/(a), (m)/(c), (a)/(b), the CPU per product of the worker process and of
its PostgreSQL backend (where the time goes besides the towers), and the peak RSS of `prodmatch embed` run in a
subprocess on N and on 2N products. The worker, HTTP, text-only and model-only runs alternate `--rounds` times
(the machine is shared: medians of the rounds are printed, and each round's shares).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.demo.toymodels import build_clip  # noqa: E402
from prodmatch.embed import queue  # noqa: E402
from prodmatch.embed.encoders import Encoder  # noqa: E402
from prodmatch.embed.images import ImageLimits, load_image  # noqa: E402
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


def write_catalogue(folder: Path, name: str, n: int, photos: list) -> Path:
    """A CSV of `n` products whose images cycle through `photos` (paths or URLs; none: a text-only catalogue).

    The titles depend on the row only, not on the catalogue's name, so every catalogue of `n` has the same texts.
    """
    rng = random.Random(n)
    lines = ["external_id,title,brand,price" + (",image" if photos else "")]
    for i in range(n):
        title = f"{rng.choice(NOUNS)} {rng.choice(COLOURS)} {rng.randrange(1, 100)}"
        image = f",{photos[i % len(photos)]}" if photos else ""
        lines.append(f"{name}-{i},{title},{rng.choice(BRANDS)},{rng.randrange(5, 500)}.99{image}")
    path = folder / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- (a) the worker, with marginal rates ---------------------------------------------------------------------------


class WriteClock:
    """Record when each batch's vectors are written (`embed.queue.write`, which the worker calls), and how many.

    Also the CPU seconds used by then by this process and by the worker's PostgreSQL backend (read from /proc:
    the benchmark's server is local), so a run's CPU per product can be split between the two."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float | None]] = []  # (this process, the backend) at each stamp

    def __enter__(self) -> WriteClock:
        self._write = queue.write

        def write(conn, model_id, rows):
            statuses = self._write(conn, model_id, rows)
            self.stamps.append((time.perf_counter(), len(statuses)))
            self.cpu.append((time.process_time(), _process_cpu(conn.info.backend_pid)))
            return statuses

        queue.write = write
        return self

    def __exit__(self, *exc) -> None:
        queue.write = self._write

    def cpu_per_product(self) -> tuple[float, float | None]:
        """(this process, the PostgreSQL backend) CPU seconds per product after the first batch, as the rates."""
        products = sum(count for _, count in self.stamps[1:])
        (own_0, server_0), (own_1, server_1) = self.cpu[0], self.cpu[-1]
        server = None if server_0 is None or server_1 is None else (server_1 - server_0) / products
        return (own_1 - own_0) / products, server


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a local process so far (None where /proc cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TowerClock:
    """Sum the seconds the worker spends inside the towers (`Encoder.embed_pixels` and `Encoder.embed_texts`)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> TowerClock:
        self._saved = {name: getattr(Encoder, name) for name in ("embed_pixels", "embed_texts")}
        for name, method in self._saved.items():
            setattr(Encoder, name, self._timed(method))
        return self

    def _timed(self, method):
        def timed(encoder, *args, **kwargs):
            started = time.perf_counter()
            try:
                return method(encoder, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed

    def __exit__(self, *exc) -> None:
        for name, method in self._saved.items():
            setattr(Encoder, name, method)


def marginal_rate(stamps: list[tuple[float, int]]) -> float:
    """Products per second after the first batch: what the products after it cost, startup left out."""
    if len(stamps) < 2:
        raise SystemExit("too few batches for a marginal rate: use more --products")
    return sum(count for _, count in stamps[1:]) / (stamps[-1][0] - stamps[0][0])


def worker_run(settings: Settings, catalogue: str, limits: ImageLimits | None = None) -> tuple[float, object]:
    """Embed the catalogue with the CLI's default options; (marginal products/s, summary).

    The summary's `tower_share` is the part of the worker's run spent inside the towers' calls (the rest: the
    model load, the first claim and images, and whatever the model waited for); its `cpu_per_product` is the CPU
    seconds per product of this process and of the worker's PostgreSQL backend, after the first batch."""
    options = EmbedOptions(model=MODEL_NAME, catalog=catalogue, precision=settings.precision)
    if limits is not None:
        options = replace(options, image_limits=limits)
    with WriteClock() as clock, TowerClock() as towers:
        started = time.perf_counter()
        [summary] = embed(settings, options)
        summary.tower_share = towers.seconds / (clock.stamps[-1][0] - started)
    summary.cpu_per_product = clock.cpu_per_product()
    return marginal_rate(clock.stamps), summary


# --- (a-http) images over HTTP ---------------------------------------------------------------------------------

# A child process serving a folder on 127.0.0.1, 100 ms before each answer; it ends when its stdin closes (the
# benchmark ended, however).
SLOW_SERVER = r"""
import functools, http.server, os, sys, threading, time
class Slow(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        time.sleep(float(sys.argv[2]))
        super().do_GET()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Slow, directory=sys.argv[1]))
server.daemon_threads = True
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
print(server.server_address[1], flush=True)
server.serve_forever()
"""
HTTP_DELAY = 0.1


@contextlib.contextmanager
def slow_image_server(folder: Path, delay: float = HTTP_DELAY):
    """The base URL of `folder` served over HTTP from a child process, `delay` seconds per request."""
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVER, str(folder), str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{int(child.stdout.readline())}"
    finally:
        child.stdin.close()
        child.wait(10)


# --- (m) the model alone ----------------------------------------------------------------------------------------


DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def model_only(
    model_dir: Path, photos: list[Path], texts: list[str], batch: int, precision: str
) -> tuple[float, float, float]:
    """(images/s, texts/s, texts/s with the texts sorted by length) of the towers alone in `precision`, marginal.

    Inputs are made first, as the worker's loaders and tokenizer make them; then each tower runs over its
    batches, the first batch as a warm-up (as the worker's first batch is left out of its rate).
    """
    encoder = Encoder.load(str(model_dir), precision=precision)
    limits = ImageLimits(max_side=512, shortest_side=encoder.image_side, roots=(photos[0].parent,))
    pixels = [encoder.preprocess_images([load_image(str(path), limits)]) for path in photos]
    image_batches = [torch.cat(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    image_rate = _timed_rate(encoder.embed_pixels, image_batches)

    def text_tower(tokens: dict) -> None:
        with torch.inference_mode():
            encoder._model.get_text_features(**tokens)

    def rate(ordered: list[str]) -> float:
        return _timed_rate(
            text_tower, [encoder.tokenize(ordered[i : i + batch]) for i in range(0, len(ordered), batch)]
        )

    lengths = {text: len(encoder.tokenize([text])["input_ids"][0]) for text in texts}
    return image_rate, rate(texts), rate(sorted(texts, key=lengths.get))


def _timed_rate(run, batches: list) -> float:
    """Items per second of `run` over `batches`, the first one left out (warm-up)."""
    run(batches[0])
    started = time.perf_counter()
    for item in batches[1:]:
        run(item)
    return sum(len(_first(item)) for item in batches[1:]) / (time.perf_counter() - started)


def _first(item):
    return item["input_ids"] if isinstance(item, dict) else item


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
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds of the worker and model runs"
    )
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
        with slow_image_server(photos_dir) as server:
            urls = [f"{server}/{path.name}" for path in photos]
            with db.connection(settings) as conn:
                model = add_model(conn, str(model_dir), name=MODEL_NAME)
                for r in range(args.rounds):
                    ingest_file(conn, write_catalogue(tmp, f"local-{r}", n, photos), f"local-{r}")
                    ingest_file(conn, write_catalogue(tmp, f"http-{r}", n, urls), f"http-{r}")
                    # Text alone is ~8x faster: 4N products, so its marginal rate spans more than a second.
                    ingest_file(conn, write_catalogue(tmp, f"text-{r}", 4 * n, []), f"text-{r}")
                texts = [
                    render_text(model.text_template, {"title": t, "brand": b})
                    for t, b in conn.execute(
                        "SELECT title, brand FROM prodmatch.products p JOIN prodmatch.catalogs c"
                        " ON c.id = p.catalog_id WHERE c.name = 'local-0' ORDER BY p.id"
                    ).fetchall()
                ]
            http_limits = replace(EmbedOptions().image_limits, allowed_networks=("127.0.0.1/32",))
            # The model-only limit in the precision the worker's "auto" runs here: bf16 on a CPU with bf16
            # instructions, fp32 on one without (where bf16 is emulated and several times slower).
            precision = auto_precision(torch.device("cpu"))
            batch = EmbedOptions().batch_size
            shares = []  # per round: the part of each worker run spent inside the towers
            cpu = []  # per round: CPU s per product of the process and of its backend, image run and text-only run
            rounds = []  # per round: local, http, text-only worker rates; image, text, sorted-text tower rates
            for r in range(args.rounds):
                local, summary = worker_run(settings, f"local-{r}")
                http, http_summary = worker_run(settings, f"http-{r}", http_limits)
                text, text_summary = worker_run(settings, f"text-{r}")
                images_s, texts_s, sorted_s = model_only(model_dir, photos, texts, batch, precision)
                rounds.append((local, http, text, images_s, texts_s, sorted_s))
                shares.append((summary.tower_share, http_summary.tower_share, text_summary.tower_share))
                cpu.append((*summary.cpu_per_product, *text_summary.cpu_per_product))
                if http_summary.image_errors or http_summary.failed:
                    raise SystemExit(f"HTTP run: {http_summary.to_text()}")
        local, http, text, images_s, texts_s, sorted_s = (
            statistics.median(v) for v in zip(*rounds, strict=True)
        )
        model_rate = 1 / (1 / images_s + 1 / max(texts_s, sorted_s))
        text_limit = max(texts_s, sorted_s)

        # The naive loop in a fresh process: this one has loaded models through prodmatch, which tunes the
        # process's allocator (encoders.keep_freed_memory) as a first-draft script would not.
        with db.connection(settings) as conn:
            add_model(conn, str(model_dir), name="naive", precision="fp32")  # registered here, loaded there
        naive_count, naive_seconds = naive_subprocess(url, model_dir, "local-0", args.naive_products)
        naive_rate = naive_count / naive_seconds

        peak = best_matmul_flops(DTYPES[precision])
        fp32_peak = peak if precision == "fp32" else best_matmul_flops(torch.float32)
        image_flops, text_flops, text_tokens = model_flops_per_product(model_dir, texts[:64])
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

        print(f"CPU: {cpu_name()}")
        print(
            f"torch {torch.__version__}, threads {torch.get_num_threads()}; batch size {batch}, "
            f"image threads {EmbedOptions().image_threads}, precision auto -> {precision}"
        )
        print(
            f"catalogue: {n} products, {PHOTO_SIDE}x{PHOTO_SIDE} JPEG photos, text template "
            f"{get_model_template(settings)!r} ({text_tokens:.1f} tokens on average); marginal rates, medians of "
            f"{args.rounds} alternating rounds"
        )
        print()
        print(f"(a) prodmatch embed, end to end   : {local:7.1f} products/s  (images from files)")
        print(
            f"(a-http) the same, images by HTTP : {http:7.1f} products/s  ({HTTP_DELAY * 1000:.0f} ms per image, "
            "local server)"
        )
        print(
            f"(m) model only, {precision}, batch {batch}   : {model_rate:7.1f} products/s  (image tower {images_s:.1f}/s, "
            f"text tower {text_limit:.1f}/s)"
        )
        print(
            f"(t) text only, end to end         : {text:7.1f} products/s  ({4 * n} products without images)"
        )
        print(
            f"(t-m) text tower alone            : {text_limit:7.1f} texts/s  (in catalogue order {texts_s:.1f}/s, "
            f"sorted by length {sorted_s:.1f}/s)"
        )
        print(
            f"(b) naive loop, fp32, 1 by 1      : {naive_rate:7.1f} products/s  ({naive_seconds:.1f} s for "
            f"{naive_count} products)"
        )
        print(
            f"(c) {precision} matmul bound             : {ceiling:7.1f} products/s  (matmul peak {peak / 1e9:.0f} GFLOP/s; "
            f"{image_flops / 1e9:.2f} GFLOP image + {text_flops / 1e9:.2f} GFLOP text per product)"
        )
        print(
            f"(d) fp32 matmul bound             : {fp32_ceiling:7.1f} products/s  (matmul peak "
            f"{fp32_peak / 1e9:.0f} GFLOP/s; {precision} / fp32 = {peak / fp32_peak:.1f}x)"
        )
        print()
        print(
            f"bf16 vs fp32 on 32 photos and titles: lowest cosine {image_agreement:.5f} (image),"
            f" {text_agreement:.5f} (text)"
        )
        print(
            f"(a)/(m) = {local / model_rate:.0%} (target >= 85%)   (t)/(t-m) = {text / text_limit:.0%} (target >= 85%)"
            f"   (a-http)/(a) = {http / local:.0%} (target >= 90%)"
        )
        print(
            f"(m)/(c) = {model_rate / ceiling:.0%}   (a)/(b) = {local / naive_rate:.1f}x"
            f"   (b)/(d) = {naive_rate / fp32_ceiling:.0%}"
        )
        for r, (lo, ht, te, im, tx, so) in enumerate(rounds, 1):
            m = 1 / (1 / im + 1 / max(tx, so))
            print(
                f"  round {r}: (a) {lo:.1f}, (a-http) {ht:.1f}, (m) {m:.1f}, (t) {te:.1f}, (t-m) {max(tx, so):.1f}"
                f" -> (a)/(m) {lo / m:.0%}, (t)/(t-m) {te / max(tx, so):.0%}, (a-http)/(a) {ht / lo:.0%}"
            )
        local_share, http_share, text_share = (statistics.median(v) for v in zip(*shares, strict=True))
        print(
            f"time inside the towers' calls, of each worker run (model load included): {local_share:.0%} (a), "
            f"{http_share:.0%} (a-http), {text_share:.0%} (t)"
        )
        own, server, text_own, text_server = (_median_or_none(v) for v in zip(*cpu, strict=True))
        print(
            f"CPU per product after the first batch (2 cores: 1 s of wall time is 2 s of CPU): worker process"
            f" {own * 1000:.1f} ms, its PostgreSQL backend {_ms(server)} (a); {text_own * 1000:.2f} ms and"
            f" {_ms(text_server)} (t)"
        )
        for size, result in memory:
            print(
                f"subprocess `prodmatch embed` on {size:5d} products: peak RSS {result['peak_rss_mib']:7.0f} MiB, "
                f"{result['products_per_second']:.1f} products/s"
            )


def _median_or_none(values) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ms(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds * 1000:.2f} ms"


def get_model_template(settings: Settings) -> str:
    with db.connection(settings) as conn:
        return get_model(conn, MODEL_NAME).text_template


if __name__ == "__main__":
    main()
