"""The embedding worker's loop: claim pending products ahead, embed each batch, write it, watch for more.

This module is the loop only: claim the next batches while the current one is encoded, reconnect after a dropped
database connection, stop cleanly on request, refresh planner statistics after big runs, and with `--watch` wait
for NOTIFY prodmatch_pending. The SQL of the queue — claims, leases, writes and releases, and why several workers
never do a product twice — is in `embed.queue`; one batch (load the images, embed, fuse, decide each product's
status) is `embed.batch`. A product whose image fails still gets its text and fused vectors, with the image
error on its row. `embed` opens its own connections, unlike the other stages that take a `conn`, because it must
be able to replace them when the database goes away mid-run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psycopg
from tqdm import tqdm

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.embed import queue
from prodmatch.embed.batch import (
    ClaimedProduct,
    EmbeddingRow,
    ImageLoader,
    LoaderPool,
    cancel_batch,
    encode_batch,
    images_ready,
    start_batch,
)
from prodmatch.embed.encoders import Encoder
from prodmatch.embed.images import ImageLimits
from prodmatch.errors import ConfigError, DatabaseError, DatabaseUnavailable
from prodmatch.store.catalogs import catalog_id
from prodmatch.store.models import Model, get_model, list_models
from prodmatch.store.pooler import require_notifications

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "prodmatch_pending"

# After a claimed batch without a single image, the worker claims this many batches at once: the text tower pads
# each call to its longest text, so a block lets the calls group texts of one length (about 1.2x faster on
# ViT-B/32's titles), and a block pays the claim, write and fusion once for all its batches.
TEXT_BLOCK = 8
# While the work has images, the worker keeps this many batches claimed ahead of the one being encoded, their images
# loading: with one, a batch's 32 downloads and decodes had to finish within one encode (~0.45 s for ViT-B/32 on
# 2 cores), which an image server answering in 100 ms, and decoder threads that get the CPU only between the
# towers' operations, did not (the HTTP run reached 65% of the file run's rate).
IMAGE_LOOKAHEAD = 2


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
    # Reconnects after a dropped database connection, per batch. A watcher (`watch`) never gives up: it is a
    # service, and a database restart or failover of any length must not end it.
    db_retries: int = 5
    lease_seconds: int = 900
    retry_errors: bool = False  # re-queue products whose earlier embedding failed
    watch_poll_seconds: float = 5.0
    image_limits: ImageLimits = field(default_factory=lambda: ImageLimits(max_side=512))
    # Folders local image paths may be read from, besides the images roots of the catalogues' ingests (an
    # application's plain-SQL rows name their own): a path outside every root is refused, never read.
    image_roots: tuple[Path, ...] = ()
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

    def to_text(self) -> str:
        return (
            f"{self.model}: embedded {self.embedded:,}, image errors {self.image_errors:,}, failed {self.failed:,}, "
            f"skipped {self.skipped:,} in {self.seconds:.1f} s ({self.products_per_second:.1f} products/s)"
        )


def embed(
    settings: Settings,
    options: EmbedOptions = EmbedOptions(),
    *,
    stop: threading.Event | None = None,
    encoder_factory: Callable[[Model], Encoder] | None = None,
) -> list[EmbedSummary]:
    """Embed every pending product (of one model or all), or keep doing so with `options.watch` until `stop`."""
    stop = stop or threading.Event()
    models = _models_to_embed(settings, options, stop)
    if models is None:  # stopped while waiting for the database
        return []
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


def _models_to_embed(settings: Settings, options: EmbedOptions, stop: threading.Event) -> list[Model] | None:
    """The models to embed (errors requeued first with `retry_errors`), read with the backoff of a running worker:
    on Citus the coordinator may answer while a worker node is down, and these queries read every shard."""
    attempt = 0
    while True:
        conn = connect_patiently(settings, options, stop)
        if conn is None:  # stopped while waiting for the database
            return None
        try:
            with conn:
                if options.retry_errors:
                    queue.requeue_errors(conn, options.model)
                if options.model:
                    return [get_model(conn, options.model)]
                return [s.model for s in list_models(conn)]
        except (psycopg.OperationalError, psycopg.errors.InternalError) as error:
            if isinstance(error, psycopg.errors.InternalError) and not queue.lost_citus_node(error):
                raise
            if attempt >= options.db_retries and (not options.watch or stop.is_set()):
                raise DatabaseError(f"could not read the embedding queue: {error}") from error
            delay = min(30.0, options.retry_backoff * 2 ** min(attempt, 16))
            attempt += 1
            log.warning("database not ready (%s); trying again in %.1f s", _first_line(error), delay)
            if stop.wait(delay):
                return None


# --- one model --------------------------------------------------------------------------------------------


class _ModelWorker:
    """One worker run for one model: the claim-ahead loop, its connection and its statistics."""

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
        self.listener: psycopg.Connection | None = None  # the LISTEN connection of a watcher
        self.catalog_id: int | None = None
        self._texts_only = False  # the last claimed batch had no image: claim TEXT_BLOCK batches at once
        self.load_image = ImageLoader(
            encoder, options.image_limits, options.image_retries, options.retry_backoff
        )

    def run(self) -> EmbedSummary:
        started = time.perf_counter()
        self.conn = connect_patiently(self.settings, self.options, self.stop, "prodmatch-worker")
        if self.conn is None:  # stopped while waiting for the database
            return self.summary
        # The first queries retry like the later ones: on Citus the coordinator may answer while a worker node is
        # down, and the queue count reads every shard.
        self.catalog_id = self._with_reconnect(self._catalog_id)
        if self.options.watch:
            with contextlib.suppress(DatabaseUnavailable):  # no slot free yet: _wait_for_work listens later
                self.listener = self._listen()
        pool = LoaderPool(self.options.image_threads)
        total = None if self.options.watch else self._with_reconnect(self._pending_count)
        if total is not None and self.options.limit is not None:
            total = min(total, self.options.limit)
        bar = tqdm(
            total=total, unit="product", desc=f"embed {self.model.name}", disable=not self.options.progress
        )
        # The database thread: it writes each batch and claims the next ones while the model encodes, so the model
        # never waits for the database. It is the only user of the connection while a job of it is running.
        database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-db")
        try:
            # Batches claimed ahead, their images loading: IMAGE_LOOKAHEAD while the work has images, so each
            # batch's downloads and decodes have that many encodes' time; one block of text-only work.
            upcoming: deque[list[ClaimedProduct]] = deque(self._claim_ahead(pool, []))
            encoded: list[EmbeddingRow] = []  # the previous batch's rows, written while this batch is encoded
            while True:
                batch = upcoming.popleft() if upcoming else []
                if not batch:
                    bar.update(self._write_encoded(encoded))
                    encoded = []
                    if not self.options.watch or self.stop.is_set() or self._limit_reached(0):
                        break
                    self._refresh_statistics()
                    self._wait_for_work()
                    upcoming.extend(self._claim_ahead(pool, []))
                    continue
                # Prefetch: write the previous batch, then claim and start loading the next ones, while this one
                # is encoded.
                job = database.submit(self._write_and_claim, encoded, pool, [batch, *upcoming])
                try:
                    encoded = self._encode(batch, pool)
                finally:
                    written, claimed = job.result()
                upcoming.extend(claimed)
                bar.update(written)
                bar.set_postfix(errors=self.summary.image_errors + self.summary.failed)
                if encoded is None:  # stopping, and an image still loading: not encoded, given back
                    encoded = []
                    self._release(batch)
                if self.stop.is_set():
                    bar.update(self._write_encoded(encoded))
                    encoded = []
                    while upcoming:
                        self._release(upcoming.popleft())
                    break
            self._refresh_statistics()
        finally:
            database.shutdown(wait=True)
            bar.close()
            # The decoder threads are always joined (see LoaderPool); a stopping worker does not wait for the
            # downloads under way, which may take as long as ImageLimits.total_timeout.
            pool.shutdown(wait=not self.stop.is_set(), timeout=self.options.image_limits.total_timeout + 5)
            self._release_all()
            if self.listener is not None:
                self.listener.close()
            if self.conn is not None:
                self.conn.close()
            self.summary.seconds = round(time.perf_counter() - started, 3)
        return self.summary

    # claiming ------------------------------------------------------------------------------------------------

    def _claim_ahead(self, pool: LoaderPool, held: list[list[ClaimedProduct]]) -> list[list[ClaimedProduct]]:
        """Claim batches (their images start loading) until `held` and the new ones make the lookahead: one
        while the work is text only, IMAGE_LOOKAHEAD while it has images; fewer at the limit or when the queue
        runs dry. `held`: the batches claimed and not yet written (the one being encoded among them)."""
        in_flight = sum(len(batch) for batch in held)
        ahead = max(0, len(held) - 1)  # the first held batch is the one being encoded
        claimed: list[list[ClaimedProduct]] = []
        while ahead + len(claimed) < (1 if self._texts_only else IMAGE_LOOKAHEAD):
            batch = self._claim_and_load(pool, in_flight)
            if not batch:
                break
            claimed.append(batch)
            in_flight += len(batch)
        return claimed

    def _claim_and_load(self, pool: LoaderPool, in_flight: int = 0) -> list[ClaimedProduct]:
        size = self.options.batch_size * (TEXT_BLOCK if self._texts_only else 1)
        if self.options.limit is not None:
            size = min(size, self.options.limit - self._done() - in_flight)
        if size <= 0:
            return []
        products = self._with_reconnect(
            lambda: queue.claim(
                self.conn, self.model.id, self.catalog_id, size, self.worker_name, self.options.lease_seconds
            )
        )
        if products:
            self._with_reconnect(self._refresh_settings)
            self._texts_only = not any(product["image"] for product in products)
        return start_batch(products, self.model.text_template, self.load_image, pool)

    def _refresh_settings(self) -> None:
        """Re-read what may change while a watcher runs: the model's fusion weight (`eval --save` re-fuses
        stored vectors; a batch fused with the old weight would mix two weights) and the images roots."""
        self.model = get_model(self.conn, self.model.name)
        roots = (*self.options.image_roots, *queue.image_roots(self.conn))
        self.conn.commit()
        if roots != self.load_image.limits.roots:
            self.load_image.limits = replace(self.load_image.limits, roots=roots)

    # encoding -------------------------------------------------------------------------------------------------

    def _encode(self, batch: list[ClaimedProduct], pool: LoaderPool) -> list[EmbeddingRow] | None:
        """The batch's rows to write; None when stopping while an image still loads (do not wait for it)."""
        if not images_ready(batch, self.stop):
            return None
        # A model on the CPU encodes with every core: the next batches' images are decoded between encodes.
        hold = pool.paused(self.encoder.device.type == "cpu")
        rows = encode_batch(self.encoder, self.model, batch, self.options.batch_size, while_encoding=hold)
        self.summary.batches += 1
        return rows

    def _write_and_claim(
        self, encoded: list[EmbeddingRow], pool: LoaderPool, held: list[list[ClaimedProduct]]
    ) -> tuple[int, list[list[ClaimedProduct]]]:
        """In the database thread: write the previous batch's rows, then claim the batches the lookahead needs
        (none when stopping; `_claim_and_load` claims none past the limit); (products written, the new batches)."""
        written = self._write_encoded(encoded)
        if self.stop.is_set():
            return written, []
        return written, self._claim_ahead(pool, held)

    def _write_encoded(self, rows: list[EmbeddingRow]) -> int:
        if not rows:
            return 0
        return self._with_reconnect(lambda: self._write(rows), give_up_quietly=True)

    # writing ----------------------------------------------------------------------------------------------------

    def _write(self, rows: list[EmbeddingRow]) -> int:
        statuses = queue.write(self.conn, self.model.id, rows)
        for status in statuses:
            if status in ("done", "pending"):  # pending: the product changed meanwhile and will be redone
                self.summary.embedded += 1
            elif status == "image_error":
                self.summary.image_errors += 1
            else:
                self.summary.failed += 1
        self.summary.skipped += len(rows) - len(statuses)
        return len(statuses)

    def _release(self, batch: list[ClaimedProduct]) -> None:
        cancel_batch(batch)
        if batch:
            ids = [item.product["id"] for item in batch]
            self._with_reconnect(lambda: queue.release(self.conn, self.model.id, ids), give_up_quietly=True)
            self.summary.skipped += len(ids)

    def _release_all(self) -> None:
        if self.conn is None or self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):  # the claims die with the backend anyway
            queue.release_all(self.conn, self.model.id)

    # database ---------------------------------------------------------------------------------------------------

    def _refresh_statistics(self) -> None:
        """ANALYZE what this run changed a lot, so the planner uses the HNSW indexes for queries right after it."""
        written = self.summary.embedded + self.summary.image_errors
        if written == self._written_at_refresh:  # nothing new since the last check (a watcher idles often)
            return
        self._written_at_refresh = written
        try:
            self._with_reconnect(self._analyze)
        except (psycopg.Error, DatabaseError) as error:  # a nicety: autovacuum gets there eventually
            log.warning("could not refresh table statistics: %s", error)
            # A lost connection cannot roll back; the next claim reconnects it.
            with contextlib.suppress(psycopg.Error):
                self.conn.rollback()

    def _analyze(self) -> None:
        # This session's own latest changes reach pg_stat_* only when it next goes idle (PostgreSQL 15+).
        self.conn.execute("SELECT pg_stat_force_next_flush()")
        self.conn.commit()
        db.analyze_if_stale(self.conn)
        self.conn.commit()

    def _connect(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        # A startup parameter, not a SET: behind a transaction-mode pooler a SET would stay on whichever server
        # backend ran it.
        self.conn = db.connect(self.settings, application_name="prodmatch-worker")

    def _with_reconnect(self, action: Callable, *, give_up_quietly: bool = False):
        """Run `action`; on a dropped connection reconnect with backoff and try again, up to db_retries.

        A watcher tries until it is stopped: a database restart must not end a service."""
        attempt = 0
        while True:
            try:
                return action()
            except (psycopg.OperationalError, psycopg.errors.InternalError) as error:
                if isinstance(error, psycopg.errors.InternalError) and not queue.lost_citus_node(error):
                    raise
                if attempt >= self.options.db_retries and (not self.options.watch or self.stop.is_set()):
                    raise DatabaseError(
                        f"lost the database connection and could not get it back: {error}"
                    ) from error
                delay = min(30.0, self.options.retry_backoff * 2 ** min(attempt, 16))
                attempt += 1
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

    def _catalog_id(self) -> int | None:
        if self.options.catalog is None:
            return None
        found = catalog_id(self.conn, self.options.catalog)
        self.conn.commit()
        return found

    def _pending_count(self) -> int:
        return queue.pending_count(self.conn, self.model.id, self.catalog_id)

    def _listen(self) -> psycopg.Connection:
        listener = db.connect(self.settings, autocommit=True)
        try:  # a transaction-mode pooler would swallow every NOTIFY: say so instead of never waking up
            require_notifications(listener, self.settings, "embed --watch")
        except ConfigError:
            listener.close()
            raise
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return listener

    def _wait_for_work(self) -> None:
        """Sleep until a NOTIFY arrives, the poll interval passes, or a stop is requested.

        A lost LISTEN connection (database restart) is opened and LISTENed again, with a pause while the server
        is away; NOTIFYs sent meanwhile are lost, which the poll after this wait covers.
        """
        deadline = time.monotonic() + self.options.watch_poll_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if self.listener is None or self.listener.closed:
                    self.listener = self._listen()
                    return  # poll once: work may have arrived while nobody listened
                for _ in self.listener.notifies(timeout=0.25, stop_after=1):
                    return
            except (psycopg.Error, DatabaseError) as error:
                if self.listener is not None:  # one line when it is lost, not one per try to get it back
                    log.warning("lost the LISTEN connection (%s); listening again", _first_line(error))
                    with contextlib.suppress(psycopg.Error):
                        self.listener.close()
                self.listener = None
                self.stop.wait(min(self.options.retry_backoff, max(0.0, deadline - time.monotonic())))

    def _done(self) -> int:
        s = self.summary
        return s.embedded + s.image_errors + s.failed

    def _limit_reached(self, in_flight: int) -> bool:
        return self.options.limit is not None and self._done() + in_flight >= self.options.limit


def connect_patiently(
    settings: Settings, options: EmbedOptions, stop: threading.Event, application_name: str = "prodmatch"
) -> psycopg.Connection | None:
    """A connection; a watcher (`options.watch`) waits for one while the server is down or has no free connection
    slot (None if stopped meanwhile). A batch run fails at once."""
    if not options.watch:
        return db.connect(settings, application_name=application_name)
    return db.connect_waiting(
        settings, stop, backoff=options.retry_backoff, application_name=application_name
    )


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
