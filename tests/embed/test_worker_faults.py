"""The embedding worker under faults: database restarts (batch and --watch, idle and busy), a fusion weight
changed under a running watcher, a slow-loris image server, and SIGTERM while a download hangs.

The restarts use a server of this module's own (tests/faultdb.py), never the session's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from builders import product_image, slow_picture_server, write_catalog
from faultdb import RestartableServer, settings_for

from prodmatch import store as db
from prodmatch.embed.fusion import fuse
from prodmatch.embed.images import ImageLimits
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.ingest.load import ingest_file
from prodmatch.quality.evaluate import refuse
from prodmatch.store.models import get_model

LOOPBACK = ImageLimits(max_side=512, allowed_networks=("127.0.0.1",))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    restartable = RestartableServer(tmp_path_factory.mktemp("faults-embed"))
    yield restartable
    restartable.stop()


@pytest.fixture
def fsettings(server, tmp_path):
    return settings_for(server, tmp_path)


@pytest.fixture
def model(fsettings, tiny_clip_dir):
    with db.connection(fsettings) as conn:
        return add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")


@pytest.fixture
def image_server(tmp_path):
    """Serves 8 product pictures on 127.0.0.1, each after 50 ms, so a run lasts long enough to be hit."""
    with slow_picture_server(tmp_path / "served") as url:
        yield url


@pytest.fixture
def slow_loris():
    """A server that answers 200 with a 1 MB body, then sends one byte a second, for a minute at most."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.5)
    stop = threading.Event()

    def drip(client: socket.socket) -> None:
        try:
            client.recv(65536)
            client.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n")
            for _ in range(60):
                if stop.wait(1.0):
                    break
                client.sendall(b"x")
        except OSError:
            pass
        finally:
            client.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=drip, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def _ingest(settings, path: Path, name: str) -> None:
    with db.connection(settings) as conn:
        ingest_file(conn, path, name)


def _rows(settings, model_id: int) -> dict[str, tuple[str, int]]:
    """external_id -> (status, attempts)."""
    with db.connection(settings) as conn:
        return {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT p.external_id, e.status, e.attempts FROM prodmatch.embeddings e"
                " JOIN prodmatch.products p ON p.id = e.product_id WHERE e.model_id = %s",
                (model_id,),
            )
        }


def _done(settings, model_id: int) -> int:
    return sum(status == "done" for status, _ in _rows(settings, model_id).values())


def _wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _insert_app_product(settings, external_id: str, image: Path) -> None:
    """What an application does: a plain-SQL INSERT (the trigger queues it and sends NOTIFY)."""
    with db.connection(settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('app') ON CONFLICT DO NOTHING")
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, image)"
            " SELECT id, %s, 'Kettle', 'Bosch', %s FROM prodmatch.catalogs WHERE name = 'app'",
            (external_id, str(image)),
        )


class _Watcher:
    """`embed --watch` in a thread, stopped and joined at the end."""

    def __init__(self, settings, options: EmbedOptions) -> None:
        self.stop = threading.Event()
        self.summaries: list = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(settings, options), daemon=True)
        self.thread.start()

    def _run(self, settings, options) -> None:
        try:
            self.summaries.extend(embed(settings, options, stop=self.stop))
        except BaseException as error:  # the test asserts there was none
            self.errors.append(error)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert not self.errors, self.errors


def test_idle_watcher_survives_a_restart_and_embeds_what_comes_after(server, fsettings, model, tmp_path):
    options = EmbedOptions(
        model="clip", watch=True, watch_poll_seconds=1.0, retry_backoff=0.1, image_roots=(tmp_path.resolve(),)
    )
    watcher = _Watcher(fsettings, options)
    try:
        _insert_app_product(fsettings, "APP-0", product_image(tmp_path / "0.jpg", 0))
        _wait_for(lambda: _done(fsettings, model.id) == 1)
        time.sleep(1.5)  # idle: waiting on its LISTEN connection (and past one statistics refresh)
        server.restart()
        time.sleep(1.5)  # the watcher notices and listens again
        assert watcher.thread.is_alive(), watcher.errors
        _insert_app_product(fsettings, "APP-1", product_image(tmp_path / "1.jpg", 1))
        _wait_for(lambda: _done(fsettings, model.id) == 2, 30)
        server.restart()  # a second restart: the re-opened LISTEN connection is watched the same way
        _insert_app_product(fsettings, "APP-2", product_image(tmp_path / "2.jpg", 2))
        _wait_for(lambda: _done(fsettings, model.id) == 3, 30)
    finally:
        watcher.finish()
    assert _rows(fsettings, model.id) == {f"APP-{i}": ("done", 1) for i in range(3)}
    assert watcher.summaries[0].embedded == 3


def test_busy_watcher_survives_a_restart_without_losing_or_repeating_a_product(
    server, fsettings, model, tmp_path, image_server
):
    n = 120
    _ingest(
        fsettings,
        write_catalog(tmp_path, "shop", n, image_ref=lambda i: f"{image_server}/{i % 8}.jpg"),
        "shop",
    )
    options = EmbedOptions(
        model="clip",
        watch=True,
        batch_size=8,
        image_threads=2,
        watch_poll_seconds=1.0,
        retry_backoff=0.1,
        image_limits=LOOPBACK,
        image_roots=(tmp_path.resolve(),),
    )
    watcher = _Watcher(fsettings, options)
    try:
        _wait_for(lambda: _done(fsettings, model.id) >= 16)
        server.restart()
        _wait_for(lambda: _done(fsettings, model.id) == n, 90)
        _insert_app_product(fsettings, "APP-1", product_image(tmp_path / "app.jpg", 1))
        _wait_for(lambda: _done(fsettings, model.id) == n + 1, 30)
    finally:
        watcher.finish()
    rows = _rows(fsettings, model.id)
    assert len(rows) == n + 1
    assert {attempts for _, attempts in rows.values()} == {1}  # nobody wrote a product twice


def test_batch_embed_survives_a_restart_mid_run(server, fsettings, model, tmp_path, image_server):
    n = 120
    _ingest(
        fsettings,
        write_catalog(tmp_path, "shop", n, image_ref=lambda i: f"{image_server}/{i % 8}.jpg"),
        "shop",
    )
    started = threading.Event()
    result: list = []
    options = EmbedOptions(batch_size=8, image_threads=2, retry_backoff=0.1, image_limits=LOOPBACK)
    thread = threading.Thread(target=lambda: result.extend(embed(fsettings, options)), daemon=True)
    thread.start()
    _wait_for(lambda: _done(fsettings, model.id) >= 16)
    started.set()
    server.restart()
    thread.join(timeout=120)
    assert not thread.is_alive() and result
    rows = _rows(fsettings, model.id)
    assert sorted(rows) == sorted(f"shop-{i}" for i in range(n))
    assert set(rows.values()) == {("done", 1)}
    assert result[0].embedded + result[0].skipped >= n  # the lost batch was skipped, then done afresh


def test_running_watcher_fuses_with_a_weight_changed_under_it(server, fsettings, model, tmp_path):
    options = EmbedOptions(
        model="clip", watch=True, watch_poll_seconds=0.5, image_roots=(tmp_path.resolve(),)
    )
    watcher = _Watcher(fsettings, options)
    try:
        _insert_app_product(fsettings, "APP-0", product_image(tmp_path / "0.jpg", 0))
        _wait_for(lambda: _done(fsettings, model.id) == 1)
        with db.connection(fsettings) as conn:  # what `eval --save` does when it recommends another weight
            refuse(conn, get_model(conn, "clip"), 0.9)
        _insert_app_product(fsettings, "APP-1", product_image(tmp_path / "1.jpg", 1))
        _wait_for(lambda: _done(fsettings, model.id) == 2)
    finally:
        watcher.finish()
    with db.connection(fsettings) as conn:
        image, text, fused = conn.execute(
            "SELECT coalesce(e.image_vector, e.image_half::vector), coalesce(e.text_vector, e.text_half::vector),"
            " coalesce(e.fused_vector, e.fused_half::vector) FROM prodmatch.embeddings e"
            " JOIN prodmatch.products p ON p.id = e.product_id WHERE p.external_id = 'APP-1'"
        ).fetchone()
        weight = get_model(conn, "clip").image_weight
    assert weight == pytest.approx(0.9) and model.image_weight != pytest.approx(0.9)
    image, text, fused = (v.to_numpy() for v in (image, text, fused))
    expected = fuse(
        image, text, method=model.fusion, image_weight=0.9
    )  # halfvec storage: compare at 2-byte precision
    stale = fuse(image, text, method=model.fusion, image_weight=model.image_weight)
    assert np.allclose(fused, expected, atol=5e-3)
    assert not np.allclose(fused, stale, atol=5e-3)


def test_slow_loris_image_becomes_an_image_error_and_the_rest_are_embedded(
    fsettings, model, tmp_path, slow_loris
):
    n = 12
    refs = lambda i: f"{slow_loris}/stuck.jpg" if i == 3 else f"images/{i}.jpg"  # noqa: E731
    _ingest(fsettings, write_catalog(tmp_path, "shop", n, image_ref=refs), "shop")
    limits = ImageLimits(max_side=512, allowed_networks=("127.0.0.1",), total_timeout=1.5, read_timeout=5)
    options = EmbedOptions(
        batch_size=4, image_limits=limits, image_retries=1, image_roots=(tmp_path.resolve(),)
    )
    started = time.perf_counter()
    summary = embed(fsettings, options)[0]
    seconds = time.perf_counter() - started
    rows = _rows(fsettings, model.id)
    assert rows.pop("shop-3")[0] == "image_error"
    assert set(rows.values()) == {("done", 1)}
    assert summary.embedded == n - 1 and summary.image_errors == 1
    assert seconds < 40, (
        seconds
    )  # cut by the total deadline, not after the minute of drip (margin: a busy machine)
    with db.connection(fsettings) as conn:
        error = conn.execute(
            "SELECT e.error FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
            " WHERE p.external_id = 'shop-3'"
        ).fetchone()[0]
    assert "x" * 3 not in error  # says what happened, never what the server sent


def test_sigterm_ends_a_watcher_stuck_on_a_slow_loris_and_releases_its_claims(
    fsettings, model, tmp_path, slow_loris
):
    _ingest(
        fsettings, write_catalog(tmp_path, "shop", 6, image_ref=lambda i: f"{slow_loris}/{i}.jpg"), "shop"
    )
    env = {
        **os.environ,
        "PRODMATCH_DATABASE_URL": fsettings.database_url,
        "PRODMATCH_IMAGE_ALLOW": "127.0.0.1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prodmatch.cli",
            "embed",
            "--watch",
            "--model",
            "clip",
            "--json",
            "--batch-size",
            "6",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def claimed() -> int:
            with db.connection(fsettings) as conn:
                return conn.execute(
                    "SELECT count(*) FROM prodmatch.embeddings WHERE claimed_pid IS NOT NULL"
                ).fetchone()[0]

        _wait_for(lambda: claimed() == 6, 60)  # every product claimed, its download dripping
        time.sleep(1.0)
        sent = time.perf_counter()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        seconds = time.perf_counter() - sent
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert seconds < 20, seconds  # without waiting for the downloads' 30 s deadline (margin: a busy machine)
    assert claimed() == 0
    assert json.loads(out)["embedded"] == 0
    assert set(_rows(fsettings, model.id).values()) == {("pending", 0)}
