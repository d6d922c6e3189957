"""The embedding worker: claim pending products, embed image and text, fuse, write the vectors, watch for more.

Pending rows of `prodmatch.embeddings` (made by the triggers in `sql/pending.sql` and by `models add`) are
claimed in batches with `SELECT ... FOR UPDATE SKIP LOCKED`; a claim records the worker's database backend, so
several workers — processes on one machine or many — share the work with no product done twice, and the claims
of a worker that died (its backend is gone) or overran its lease are taken over. Images are read and
preprocessed by a thread pool while the model computes the previous batch; each batch is written back in one
transaction with a binary COPY into a temporary table and one UPDATE. A product whose image fails still gets its
text and fused vectors, with the image error on its row. `--watch` waits for NOTIFY prodmatch_pending.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import psycopg
import torch
from psycopg.rows import dict_row
from tqdm import tqdm

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.embed.batch import embed_products
from prodmatch.embed.encoders import Encoder
from prodmatch.embed.images import ImageLimits, load_image
from prodmatch.embed.queue import _BATCH_TABLE_SQL, _CLAIM_SQL, _RELEASE_SQL, _WRITE_SQL
from prodmatch.embed.text import render_text
from prodmatch.errors import ConfigError, DatabaseError, ImageError
from prodmatch.store.catalogs import catalog_id
from prodmatch.store.models import Model, get_model, list_models

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "prodmatch_pending"


@dataclass(frozen=True)
class EmbedOptions:
    """What to embed and how."""

    model: str | None = None  # None: every registered model, one after the other
    catalog: str | None = None
    batch_size: int = 32
    limit: int | None = None
    watch: bool = False
    precision: str = "auto"
    device: str | None = None
    image_threads: int = 4
    image_retries: int = 3  # tries for an image that fails transiently (timeout, HTTP 5xx)
    retry_backoff: float = 0.5  # seconds, doubled on each retry
    db_retries: int = 5  # reconnects after a dropped database connection, per batch
    lease_seconds: int = 900
    retry_errors: bool = False  # re-queue products whose earlier embedding failed
    watch_poll_seconds: float = 5.0
    image_limits: ImageLimits = field(default_factory=lambda: ImageLimits(max_side=512))
    progress: bool = False


@dataclass
class EmbedSummary:
    """What one worker run did for one model."""

    model: str
    embedded: int = 0  # image + text (status done)
    image_errors: int = 0  # text only, image error recorded (status image_error)
    failed: int = 0  # nothing could be embedded (status failed)
    skipped: int = 0  # claimed, then released unprocessed (stop requested) or lost to another worker
    seconds: float = 0.0
    batches: int = 0

    @property
    def products_per_second(self) -> float:
        done = self.embedded + self.image_errors + self.failed
        return done / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "products_per_second": round(self.products_per_second, 2)}


def embed(
    settings: Settings,
    options: EmbedOptions = EmbedOptions(),
    *,
    stop: threading.Event | None = None,
    encoder_factory: Callable[[Model], Encoder] | None = None,
) -> list[EmbedSummary]:
    """Embed every pending product (of one model or all), or keep doing so with `options.watch` until `stop`."""
    stop = stop or threading.Event()
    with db.connection(settings) as conn:
        if options.retry_errors:
            _requeue_errors(conn, options)
        models = [get_model(conn, options.model)] if options.model else [s.model for s in list_models(conn)]
    if not models:
        raise ConfigError("no model is registered yet; add one with: prodmatch models add [MODEL]")
    factory = encoder_factory or (
        lambda m: Encoder.load(
            m.source, revision=m.revision, precision=options.precision, device=options.device
        )
    )
    if options.watch and len(models) > 1:
        raise ConfigError("--watch follows one model; pick it with --model")
    summaries = []
    for model in models:
        summaries.append(_ModelWorker(settings, model, factory(model), options, stop).run())
        if stop.is_set():
            break
    return summaries


# --- one model --------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One claimed product on its way through the batch."""

    product: dict
    text: str
    pixels: torch.Tensor | None = None
    image_error: str | None = None


class _ModelWorker:
    def __init__(
        self, settings: Settings, model: Model, encoder: Encoder, options: EmbedOptions, stop: threading.Event
    ) -> None:
        self.settings = settings
        self.model = model
        self.encoder = encoder
        self.options = options
        self.stop = stop
        self.summary = EmbedSummary(model=model.name)
        self._written_at_refresh = 0  # products written when statistics were last refreshed
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.conn: psycopg.Connection | None = None
        self.catalog_id: int | None = None
        # Decode and shrink each image only to the size the model's preprocessing resizes to: a big JPEG then
        # decodes at 1/2 to 1/8 scale and is resampled once (about 3 ms instead of 15 for an 800x800 photo).
        limits = options.image_limits
        self.image_limits = (
            limits if limits.shortest_side is not None else replace(limits, shortest_side=encoder.image_side)
        )

    def run(self) -> EmbedSummary:
        started = time.perf_counter()
        self._connect()
        self.catalog_id = self._catalog_id()
        listener = self._listen() if self.options.watch else None
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.image_threads), thread_name_prefix="images")
        total = None if self.options.watch else self._pending_count()
        if total is not None and self.options.limit is not None:
            total = min(total, self.options.limit)
        bar = tqdm(
            total=total, unit="product", desc=f"embed {self.model.name}", disable=not self.options.progress
        )
        try:
            batch = self._claim_and_load(pool)
            while True:
                if not batch:
                    if not self.options.watch or self.stop.is_set() or self._limit_reached(0):
                        break
                    self._refresh_statistics()
                    self._wait_for_work(listener)
                    batch = self._claim_and_load(pool)
                    continue
                in_flight = len(batch)
                # Prefetch: claim and start loading the next batch while this one is encoded.
                upcoming = (
                    []
                    if self.stop.is_set() or self._limit_reached(in_flight)
                    else self._claim_and_load(pool, in_flight)
                )
                written = self._process(batch)
                bar.update(written)
                bar.set_postfix(errors=self.summary.image_errors + self.summary.failed)
                batch = upcoming
                if self.stop.is_set():
                    self._release(batch)
                    break
            self._refresh_statistics()
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)
            self._release_all()
            if listener is not None:
                listener.close()
            if self.conn is not None:
                self.conn.close()
            self.summary.seconds = round(time.perf_counter() - started, 3)
        return self.summary

    # claiming ------------------------------------------------------------------------------------------------

    def _claim_and_load(
        self, pool: ThreadPoolExecutor, in_flight: int = 0
    ) -> list[tuple[_Item, Future | None]]:
        size = self.options.batch_size
        if self.options.limit is not None:
            size = min(size, self.options.limit - self._done() - in_flight)
        if size <= 0:
            return []
        products = self._with_reconnect(lambda: self._claim(size))
        items = []
        for product in products:
            item = _Item(product, render_text(self.model.text_template, product))
            future = pool.submit(self._load_pixels, product["image"]) if product["image"] else None
            items.append((item, future))
        return items

    def _claim(self, size: int) -> list[dict]:
        with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                _CLAIM_SQL,
                {
                    "model": self.model.id,
                    "catalog": self.catalog_id,
                    "limit": size,
                    "worker": self.worker_name,
                    "lease": self.options.lease_seconds,
                },
            ).fetchall()

    def _load_pixels(self, ref: str) -> torch.Tensor:
        """Read, decode and preprocess one image in a loader thread; transient failures are retried."""
        for attempt in range(self.options.image_retries):
            try:
                image = load_image(ref, self.image_limits)
                return self.encoder.preprocess_images([image])
            except ImageError as error:
                if not error.transient or attempt == self.options.image_retries - 1:
                    if error.transient:
                        raise ImageError(f"{error} (gave up after {attempt + 1} tries)") from error
                    raise
                time.sleep(self.options.retry_backoff * 2**attempt)
        raise AssertionError("unreachable")

    # encoding -------------------------------------------------------------------------------------------------

    def _process(self, batch: list[tuple[_Item, Future | None]]) -> int:
        items = [item for item, _ in batch]
        for item, future in batch:
            if future is None:
                item.image_error = "no image"
                continue
            try:
                item.pixels = future.result()
            except ImageError as error:
                item.image_error = str(error)
            except Exception as error:  # a decoder bug must not stop the worker: record it on the product
                log.exception("unexpected error reading %s", item.product["image"])
                item.image_error = f"image {item.product['image']!r}: unexpected error: {error}"
        rows = self._encode(items)
        written = self._with_reconnect(lambda: self._write(rows), give_up_quietly=True)
        self.summary.batches += 1
        return written

    def _encode(self, items: list[_Item]) -> list[tuple]:
        vectors = embed_products(
            self.encoder,
            [item.pixels for item in items],
            [item.text for item in items],
            fusion=self.model.fusion,
            image_weight=self.model.image_weight,
        )
        rows = []
        for i, item in enumerate(items):
            image = vectors.image[i] if vectors.has_image(i) else None
            text = vectors.text[i] if vectors.has_text(i) else None
            fused_row = vectors.fused[i] if vectors.has_fused(i) else None
            if fused_row is None:
                status, error = "failed", item.image_error or "nothing to embed"
                if not item.text:
                    error = (
                        f"{error}; no text (template {self.model.text_template!r} is empty for this product)"
                    )
            elif image is None and item.product["image"]:
                status, error = "image_error", item.image_error
            else:
                status, error = "done", None
            rows.append(
                (item.product["id"], image, text, fused_row, status, error, item.product["content_hash"])
            )
        return rows

    # writing ----------------------------------------------------------------------------------------------------

    def _write(self, rows: list[tuple]) -> int:
        with self.conn.transaction():
            self.conn.execute(_BATCH_TABLE_SQL)
            with self.conn.cursor().copy("COPY embed_batch FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector", "vector", "vector", "text", "text", "uuid"])
                for row in rows:
                    copy.write_row(row)
            statuses = [r[0] for r in self.conn.execute(_WRITE_SQL, {"model": self.model.id}).fetchall()]
        for status in statuses:
            if status in ("done", "pending"):  # pending: the product changed meanwhile and will be redone
                self.summary.embedded += 1
            elif status == "image_error":
                self.summary.image_errors += 1
            else:
                self.summary.failed += 1
        self.summary.skipped += len(rows) - len(statuses)
        return len(statuses)

    def _release(self, batch: list[tuple[_Item, Future | None]]) -> None:
        for _, future in batch:
            if future is not None:
                future.cancel()
        if batch:
            ids = [item.product["id"] for item, _ in batch]
            self._with_reconnect(lambda: self._release_ids(ids), give_up_quietly=True)
            self.summary.skipped += len(ids)

    def _release_ids(self, ids: list[int]) -> None:
        with self.conn.transaction():
            self.conn.execute(
                _RELEASE_SQL + " AND product_id = ANY(%(ids)s)", {"model": self.model.id, "ids": ids}
            )

    def _release_all(self) -> None:
        if self.conn is None or self.conn.closed:
            return
        try:
            with self.conn.transaction():
                self.conn.execute(_RELEASE_SQL, {"model": self.model.id})
        except psycopg.Error:
            pass  # the claims die with the backend anyway

    # database ---------------------------------------------------------------------------------------------------

    def _refresh_statistics(self) -> None:
        """ANALYZE what this run changed a lot, so the planner uses the HNSW indexes for queries right after it."""
        written = self.summary.embedded + self.summary.image_errors
        if written == self._written_at_refresh:  # nothing new since the last check (a watcher idles often)
            return
        self._written_at_refresh = written
        try:
            # This session's own latest changes reach pg_stat_* only when it next goes idle (PostgreSQL 15+).
            self.conn.execute("SELECT pg_stat_force_next_flush()")
            self.conn.commit()
            db.analyze_if_stale(self.conn)
            self.conn.commit()
        except psycopg.Error as error:  # statistics are a nicety: autovacuum gets there eventually
            log.warning("could not refresh table statistics: %s", error)
            self.conn.rollback()

    def _connect(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = db.connect(self.settings)
        self.conn.execute("SET application_name = 'prodmatch-worker'")
        self.conn.commit()

    def _with_reconnect(self, action: Callable, *, give_up_quietly: bool = False):
        """Run `action`; on a dropped connection reconnect with backoff and try again, up to db_retries."""
        for attempt in range(self.options.db_retries + 1):
            try:
                return action()
            except psycopg.OperationalError as error:
                if attempt == self.options.db_retries:
                    raise DatabaseError(
                        f"lost the database connection and could not get it back: {error}"
                    ) from error
                delay = min(30.0, self.options.retry_backoff * 2**attempt)
                log.warning("database connection lost (%s); reconnecting in %.1f s", error, delay)
                time.sleep(delay)
                try:
                    self._connect()
                except DatabaseError:
                    continue
                if give_up_quietly:
                    # The batch's claims belonged to the old backend: they are free again and will be
                    # claimed afresh, so nothing is written twice.
                    return 0
        return None

    def _catalog_id(self) -> int | None:
        if self.options.catalog is None:
            return None
        found = catalog_id(self.conn, self.options.catalog)
        self.conn.commit()
        return found

    def _pending_count(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
            " WHERE e.model_id = %(model)s AND e.status = 'pending'"
            " AND (%(catalog)s::bigint IS NULL OR p.catalog_id = %(catalog)s)",
            {"model": self.model.id, "catalog": self.catalog_id},
        ).fetchone()
        self.conn.commit()
        return row[0]

    def _listen(self) -> psycopg.Connection:
        listener = db.connect(self.settings, autocommit=True)
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return listener

    def _wait_for_work(self, listener: psycopg.Connection) -> None:
        """Sleep until a NOTIFY arrives, the poll interval passes, or a stop is requested."""
        deadline = time.monotonic() + self.options.watch_poll_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            for _ in listener.notifies(timeout=0.25, stop_after=1):
                return

    def _done(self) -> int:
        s = self.summary
        return s.embedded + s.image_errors + s.failed

    def _limit_reached(self, in_flight: int) -> bool:
        return self.options.limit is not None and self._done() + in_flight >= self.options.limit


def _requeue_errors(conn: psycopg.Connection, options: EmbedOptions) -> None:
    conn.execute(
        "UPDATE prodmatch.embeddings e SET status = 'pending'"
        " FROM prodmatch.models m WHERE m.id = e.model_id AND e.status IN ('image_error', 'failed')"
        " AND (%(model)s::text IS NULL OR m.name = %(model)s)",
        {"model": options.model},
    )
    conn.commit()
