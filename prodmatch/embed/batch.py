"""One batch of products into image, text and fused vectors: the single place products become vectors.

`embed_products` is the core: preprocessed pixels and rendered texts in, image / text / fused vectors out (NaN
rows where missing). Fine-tuning (`quality.finetune`) calls it to measure its hold-out before and after training,
so it sees exactly the vectors the database would hold. Around it, one worker batch: `start_batch` renders the
texts and starts loading images (`ImageLoader`: `embed.images` plus the encoder's preprocessing, with retries)
while the previous batch is encoded, and `encode_batch` waits for the images, embeds, fuses (`embed.fusion`) and
decides each product's status (`embedding_status`), giving the `EmbeddingRow`s that `embed.queue.write` stores.
The loop around batches (claiming, reconnecting, watching) is `embed.worker`'s. No database here.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

import numpy as np
import torch

from prodmatch.embed.encoders import Encoder
from prodmatch.embed.fusion import fuse
from prodmatch.embed.images import ImageLimits, decode_image, read_image_bytes
from prodmatch.embed.text import render_text
from prodmatch.errors import ImageError
from prodmatch.store.models import Model

log = logging.getLogger("prodmatch.embed.worker")  # the worker's log: batches run inside it


@dataclass(frozen=True)
class ProductVectors:
    """(n, d) float32 image and text vectors and (n, fused d) fused vectors; a row of NaN where one is missing."""

    image: np.ndarray
    text: np.ndarray
    fused: np.ndarray

    def has_image(self, i: int) -> bool:
        return not np.isnan(self.image[i]).any()

    def has_text(self, i: int) -> bool:
        return not np.isnan(self.text[i]).any()

    def has_fused(self, i: int) -> bool:
        return not np.isnan(self.fused[i]).any()


def embed_products(
    encoder: Encoder,
    pixels: list[torch.Tensor | None],
    texts: list[str],
    *,
    fusion: str,
    image_weight: float,
    batch_size: int | None = None,
) -> ProductVectors:
    """Vectors for products given their preprocessed pixels (None: no usable image) and rendered texts ("": none).

    Each pixel tensor is one image as `encoder.preprocess_images` makes it, (channels, height, width) or with a
    leading batch dimension of 1. Images and texts each go through the model in one call, or with `batch_size` in
    calls of at most that many (the texts grouped by token length, see `Encoder.embed_texts`).
    """
    if len(pixels) != len(texts):
        raise ValueError(f"{len(pixels)} pixel tensors for {len(texts)} texts")
    width = encoder.info.dimension
    image = np.full((len(texts), width), np.nan, dtype=np.float32)
    text = np.full((len(texts), width), np.nan, dtype=np.float32)
    with_image = [i for i, p in enumerate(pixels) if p is not None]
    with_text = [i for i, t in enumerate(texts) if t]
    step = batch_size or max(1, len(with_image))
    for start in range(0, len(with_image), step):
        rows = with_image[start : start + step]
        image[rows] = encoder.embed_pixels(
            torch.cat([pixels[i].reshape(1, *pixels[i].shape[-3:]) for i in rows])
        )
    if with_text:
        text[with_text] = encoder.embed_texts([texts[i] for i in with_text], batch_size=batch_size)
    fused = fuse(image, text, method=fusion, image_weight=image_weight)
    return ProductVectors(image=image, text=text, fused=fused)


# --- one claimed batch, from products to rows to write ------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingRow:
    """What the worker writes for one product: the row `embed.queue.write` copies into `prodmatch.embeddings`."""

    product_id: int
    image_vector: np.ndarray | None
    text_vector: np.ndarray | None
    fused_vector: np.ndarray | None
    status: str  # "done", "image_error" or "failed" (see `embedding_status`)
    error: str | None
    content_hash: object  # the product's content hash when it was claimed (a UUID)

    # The binary COPY types of the fields above, in order (the columns of embed.queue.BATCH_TABLE_SQL).
    COPY_TYPES = ("int8", "vector", "vector", "vector", "text", "text", "uuid")

    def as_copy_row(self) -> tuple:
        return (
            self.product_id,
            self.image_vector,
            self.text_vector,
            self.fused_vector,
            self.status,
            self.error,
            self.content_hash,
        )


def embedding_status(
    *,
    fused_ok: bool,
    image_ok: bool,
    has_image_ref: bool,
    text: str,
    image_error: str | None,
    template: str,
) -> tuple[str, str | None]:
    """(status, error) of a product after encoding; pure, so the rules are testable without a model or database.

    - no fused vector (neither image nor text could be embedded): "failed", with the image's error or "nothing
      to embed", and a note when the model's text template renders empty for this product;
    - a fused vector but the product's image reference could not be embedded: "image_error", with its error;
      the text (and fused) vectors are stored and searchable;
    - otherwise "done": image and text, or text alone for a product with no image reference.
    """
    if not fused_ok:
        error = image_error or "nothing to embed"
        if not text:
            error = f"{error}; no text (template {template!r} is empty for this product)"
        return "failed", error
    if not image_ok and has_image_ref:
        return "image_error", image_error
    return "done", None


class ImageFetcher:
    """Read one image's bytes, retrying transient failures (timeout, HTTP 5xx, ...) after a back-off.

    It holds nothing of the model, so a `LoaderPool` fetch thread never holds the last reference to a torch object
    (see `LoaderPool`). Only the reading is retried: decoding fails the same way every time (no decoding error is
    transient).
    """

    def __init__(self, limits: ImageLimits, retries: int, backoff: float) -> None:
        self.limits = limits
        self.retries = retries
        self.backoff = backoff  # seconds before the first retry, doubled on each next one

    @property
    def deadline(self) -> float:
        """Seconds a batch waits for one image at most: every try's total deadline plus the back-offs."""
        return self.retries * self.limits.total_timeout + self.backoff * (2**self.retries) + 5.0

    def __call__(self, ref: str) -> bytes:
        for attempt in range(self.retries):
            try:
                return read_image_bytes(ref, self.limits)
            except ImageError as error:
                if not error.transient or attempt == self.retries - 1:
                    if error.transient:
                        raise ImageError(f"{error} (gave up after {attempt + 1} tries)") from error
                    raise
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")


class ImageLoader:
    """Read, decode and preprocess one product image, retrying transient failures: `fetch`, then `decode`."""

    def __init__(self, encoder: Encoder, limits: ImageLimits, retries: int, backoff: float) -> None:
        self.encoder = encoder
        # Decode and shrink each image only to the size the model's preprocessing resizes to: a big JPEG then
        # decodes at 1/2 to 1/8 scale and is resampled once (about 3 ms instead of 15 for an 800x800 photo).
        if limits.shortest_side is None:
            limits = replace(limits, shortest_side=encoder.image_side)
        self.fetch = ImageFetcher(limits, retries, backoff)

    @property
    def limits(self) -> ImageLimits:
        return self.fetch.limits

    @limits.setter
    def limits(self, limits: ImageLimits) -> None:
        self.fetch.limits = limits

    @property
    def deadline(self) -> float:
        return self.fetch.deadline

    def decode(self, data: bytes, ref: str) -> torch.Tensor:
        """The model's pixels for the image bytes of `ref`."""
        image = decode_image(data, self.limits, source=ref)
        return self.encoder.preprocess_images([image])


class LoaderPool:
    """Threads that load the batches' images: many fetch threads that only read bytes, a few that decode.

    `threads` decoder threads decode and preprocess, and `FETCHES_PER_DECODER` times as many fetch threads read
    the bytes: an image server that takes 100 ms to answer would otherwise leave the decoders, and then the model,
    waiting (4 threads fetch 40 images/s from it; ViT-B/32 embeds 70-80/s on 2 cores). A waiting fetch costs no
    CPU, so the fetches of the next claimed batch all wait side by side while the model encodes this one.

    Why two kinds of thread: a worker told to stop (SIGTERM) must not wait for a download stuck on a slow server
    (it ends only by its own total deadline), so fetch threads are daemon threads, which the interpreter does not
    wait for at exit. But a daemon thread that runs any torch code while the interpreter exits aborts the process
    ("terminate called without an active exception", exit -6): Python 3.11-3.13 end such a thread with
    `pthread_exit` when it asks for the GIL back, and the unwinding stops at a C++ frame. Freeing a tensor is
    torch code too (a core dump showed a fetch thread, as it ended, dropping the last reference to a future that
    held its decoded pixels). So fetch threads never see a future, the model or a tensor: they get a number, a
    reader (`ImageFetcher`) and a reference, and hand back the bytes or the error's text; the decoder threads,
    ordinary threads that `shutdown` joins (and the interpreter before it exits), do everything else.
    """

    FETCHES_PER_DECODER = 8

    def __init__(self, threads: int) -> None:
        self._fetches: queue.SimpleQueue = queue.SimpleQueue()  # (number, reader, reference)
        self._decodes: queue.SimpleQueue = queue.SimpleQueue()  # (number, reference, bytes, error)
        self._pending: dict[int, tuple[Future, ImageLoader]] = {}  # by number: what the bytes are for
        self._numbers = itertools.count()
        self._closed = threading.Event()
        # Set while decoding may run; cleared while a CPU model encodes (see `paused`).
        self._decoding_allowed = threading.Event()
        self._decoding_allowed.set()
        self._fetchers = [
            threading.Thread(
                target=_fetch_loop,
                args=(self._fetches, self._decodes, self._closed),
                name=f"image-fetch-{i}",
                daemon=True,
            )
            for i in range(max(1, threads) * self.FETCHES_PER_DECODER)
        ]
        self._decoders = [
            threading.Thread(target=self._decode_loop, name=f"image-decode-{i}")
            for i in range(max(1, threads))
        ]
        for thread in (*self._fetchers, *self._decoders):
            thread.start()

    def submit(self, load: ImageLoader, ref: str) -> Future:
        """Fetch the image `ref` in a fetch thread and decode it in a decoder thread; its pixels (or error) in
        the future. Cancelling the future before its decoding starts skips the decoding."""
        future: Future = Future()
        number = next(self._numbers)
        self._pending[number] = (future, load)
        self._fetches.put((number, load.fetch, ref))
        return future

    @contextlib.contextmanager
    def paused(self, pause: bool = True) -> Iterator[None]:
        """Hold decoding back for the block (a decode under way finishes its image); fetches go on.

        For a model on the CPU: its towers use every core with one OpenMP thread each, and an operation ends only
        when its slowest thread does, so a decoder thread that takes a core from one of them stalls them all. The
        images are decoded between encodes instead, on all the cores, while their bytes keep arriving during
        them. `pause=False` (a model on a GPU, which leaves the CPU free) does nothing."""
        if not pause:
            yield
            return
        self._decoding_allowed.clear()
        try:
            yield
        finally:
            self._decoding_allowed.set()

    def shutdown(self, *, wait: bool = False, timeout: float = 60.0) -> None:
        """Stop: cancel the images not yet decoded and join the decoder threads; the fetch threads end too.

        With `wait`, the fetch threads are joined as well (at most `timeout` s in all): a worker that ran out of
        work has no download under way. A worker told to stop does not wait for its downloads: a fetch that ends
        afterwards finds the pool closed and drops its bytes.
        """
        self._closed.set()
        self._decoding_allowed.set()
        _drain(self._fetches)
        _drain(self._decodes)
        for _ in self._fetchers:
            self._fetches.put(None)
        for _ in self._decoders:
            self._decodes.put(None)
        deadline = time.monotonic() + timeout
        for thread in (*self._decoders, *(self._fetchers if wait else ())):
            thread.join(max(0.0, deadline - time.monotonic()))
        for future, _ in self._pending.values():
            future.cancel()
        self._pending.clear()

    def _decode_loop(self) -> None:
        while (item := self._decodes.get()) is not None:
            self._decoding_allowed.wait()
            number, ref, data, error = item
            future, load = self._pending.pop(number, (None, None))
            if future is None or not future.set_running_or_notify_cancel():
                continue  # the pool was shut down, or the batch given back, meanwhile
            if error is not None:
                message, transient = error
                future.set_exception(ImageError(message, transient=transient))
                continue
            try:
                future.set_result(load.decode(data, ref))
            except BaseException as failure:  # handed to whoever waits on the future
                future.set_exception(failure)


def _fetch_loop(fetches: queue.SimpleQueue, decodes: queue.SimpleQueue, closed: threading.Event) -> None:
    """A LoaderPool fetch thread: read each image's bytes and hand them, or what went wrong, to the decoders.

    What went wrong travels as text, not as the exception: the waiting thread that raises it again would hang its
    own frames (tensors among their locals) on the exception's traceback, which this thread would still hold.
    """
    while (item := fetches.get()) is not None:
        number, fetch, ref = item
        try:
            data, error = fetch(ref), None
        except ImageError as failure:
            data, error = None, (str(failure), failure.transient)
        except Exception as failure:  # a reader bug must not stop the worker: recorded on the product
            log.exception("unexpected error reading %s", ref)
            data, error = None, (f"image {ref!r}: unexpected error: {failure}", False)
        if not closed.is_set():
            decodes.put((number, ref, data, error))


def _drain(work: queue.SimpleQueue) -> None:
    """Take every waiting item off `work`."""
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return


@dataclass(frozen=True)
class ClaimedProduct:
    """A claimed product on its way through a batch: its fields, rendered text and image being loaded."""

    product: dict  # the columns embed.queue.CLAIM_SQL returns
    text: str
    pixels: Future | None  # the loader's result; None when the product has no image reference
    deadline: float = 300.0  # seconds to wait for `pixels` before recording an image error


def start_batch(
    products: list[dict], template: str, load: ImageLoader, pool: LoaderPool
) -> list[ClaimedProduct]:
    """Render each product's text and start loading its image in `pool`, while an earlier batch is encoded."""
    return [
        ClaimedProduct(
            product,
            render_text(template, product),
            pool.submit(load, product["image"]) if product["image"] else None,
            load.deadline,
        )
        for product in products
    ]


def cancel_batch(batch: list[ClaimedProduct]) -> None:
    """Stop loading the images of a batch that will not be encoded."""
    for item in batch:
        if item.pixels is not None:
            item.pixels.cancel()


def images_ready(batch: list[ClaimedProduct], stop: threading.Event) -> bool:
    """Wait until every image of the batch is loaded or past its deadline: True; False as soon as `stop` is set
    while an image is still loading (a stopping worker releases such a batch instead of waiting for it)."""
    loading = {item.pixels for item in batch if item.pixels is not None}
    end = time.monotonic() + max((item.deadline for item in batch), default=0.0)
    while loading and time.monotonic() < end:
        if stop.is_set():
            return False
        _, loading = wait(loading, timeout=0.25, return_when=FIRST_COMPLETED)
    return True


def encode_batch(
    encoder: Encoder,
    model: Model,
    batch: list[ClaimedProduct],
    batch_size: int | None = None,
    while_encoding: contextlib.AbstractContextManager | None = None,
) -> list[EmbeddingRow]:
    """Wait for the batch's images, embed and fuse, and decide each product's status: the rows to write.

    A claimed batch bigger than `batch_size` (a block of text-only products, see `embed.worker`) goes through the
    model in calls of at most `batch_size`, its texts grouped by token length. `while_encoding` is entered around
    the model's calls only, after the images are in (the worker's `LoaderPool.paused`)."""
    pixels, image_errors = zip(*(_pixels(item) for item in batch), strict=True) if batch else ((), ())
    texts = [item.text for item in batch]
    with while_encoding or contextlib.nullcontext():
        vectors = embed_products(
            encoder,
            list(pixels),
            texts,
            fusion=model.fusion,
            image_weight=model.image_weight,
            batch_size=batch_size,
        )
    rows = []
    for i, item in enumerate(batch):
        status, error = embedding_status(
            fused_ok=vectors.has_fused(i),
            image_ok=vectors.has_image(i),
            has_image_ref=bool(item.product["image"]),
            text=item.text,
            image_error=image_errors[i],
            template=model.text_template,
        )
        rows.append(
            EmbeddingRow(
                product_id=item.product["id"],
                image_vector=vectors.image[i] if vectors.has_image(i) else None,
                text_vector=vectors.text[i] if vectors.has_text(i) else None,
                fused_vector=vectors.fused[i] if vectors.has_fused(i) else None,
                status=status,
                error=error,
                content_hash=item.product["content_hash"],
            )
        )
    return rows


def _pixels(item: ClaimedProduct) -> tuple[torch.Tensor | None, str | None]:
    """The product's pixels, or None and why not."""
    if item.pixels is None:
        return None, "no image"
    try:
        return item.pixels.result(timeout=item.deadline), None
    except FutureTimeout:
        item.pixels.cancel()
        return None, f"image {item.product['image']!r}: not loaded within {item.deadline:.0f} s"
    except ImageError as error:
        return None, str(error)
    except Exception as error:  # a decoder bug must not stop the worker: record it on the product
        log.exception("unexpected error reading %s", item.product["image"])
        return None, f"image {item.product['image']!r}: unexpected error: {error}"
