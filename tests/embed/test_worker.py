"""The embedding worker: vectors, bad images, concurrency, crashes, --watch, staleness, models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from builders import product_image, slow_picture_server, write_catalog
from click.testing import CliRunner
from PIL import Image

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.encoders import Encoder
from prodmatch.embed.images import ImageLimits
from prodmatch.embed.registry import add_model
from prodmatch.embed.text import render_text
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.errors import ConfigError
from prodmatch.ingest.load import ingest_file
from prodmatch.store.models import drop_model, get_model, list_models

LOOPBACK_ALLOWED = ImageLimits(max_side=512, allowed_networks=("127.0.0.1",))  # the test image server


def vectors(conn, catalog: str, model_id: int) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT p.external_id, coalesce(e.image_vector, e.image_half::vector),"
        " coalesce(e.text_vector, e.text_half::vector), coalesce(e.fused_vector, e.fused_half::vector),"
        " e.status, e.error, e.attempts"
        " FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
        " JOIN prodmatch.catalogs c ON c.id = p.catalog_id WHERE c.name = %s AND e.model_id = %s",
        (catalog, model_id),
    ).fetchall()
    keys = ("image", "text", "fused", "status", "error", "attempts")
    as_array = [lambda v: None if v is None else v.to_numpy()] * 3 + [lambda v: v] * 3
    return {r[0]: {k: f(v) for k, f, v in zip(keys, as_array, r[1:], strict=True)} for r in rows}


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_same_product_in_two_catalogues_gets_the_same_vectors(settings, tmp_path, family, request):
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    with db.connection(settings) as conn:
        model = add_model(
            conn, str(model_dir), name=family, fusion="concat", image_weight=0.6, precision="fp32"
        )
        ingest_file(conn, write_catalog(tmp_path, "shop", 12), "shop")
        ingest_file(conn, write_catalog(tmp_path, "rival", 12), "rival")  # same images and titles
    [summary] = embed(settings, EmbedOptions(batch_size=5))
    assert (summary.embedded, summary.image_errors, summary.failed) == (24, 0, 0)
    with db.connection(settings) as conn:
        shop, rival = vectors(conn, "shop", model.id), vectors(conn, "rival", model.id)
    assert model.fused_dimension == 2 * model.dimension
    for i in range(12):
        a, b = shop[f"shop-{i}"], rival[f"rival-{i}"]
        for space in ("image", "text", "fused"):
            assert len(a[space]) == (model.fused_dimension if space == "fused" else model.dimension)
            assert cosine(a[space], b[space]) >= 0.999
    # different products get different vectors
    assert cosine(shop["shop-0"]["image"], shop["shop-1"]["image"]) < 0.999
    assert cosine(shop["shop-0"]["text"], shop["shop-1"]["text"]) < 0.999
    # concat fusion: fused cosine is the weighted mean of the two modality cosines
    a, b = shop["shop-0"], shop["shop-3"]
    expected = 0.6 * cosine(a["image"], b["image"]) + 0.4 * cosine(a["text"], b["text"])
    assert cosine(a["fused"], b["fused"]) == pytest.approx(expected, abs=1e-4)


BAD_IMAGES = {
    "zero_bytes": (lambda p: p.write_bytes(b""), "image_error", "empty"),
    "truncated_jpeg": (lambda p: p.write_bytes(_jpeg_bytes()[:300]), "image_error", None),
    "html_page": (
        lambda p: p.write_text("<!DOCTYPE html><html><title>Not found</title></html>"),
        "image_error",
        "HTML",
    ),
    "garbage": (lambda p: p.write_bytes(os.urandom(2000)), "image_error", None),
    "missing_file": (lambda p: None, "image_error", None),
    "cmyk": (lambda p: Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(p, "JPEG"), "done", None),
    "palette_alpha": (lambda p: _palette_with_transparency(p), "done", None),
    "sixteen_bit": (lambda p: Image.new("I;16", (64, 64), 40000).save(p, "PNG"), "done", None),
    "animated_gif": (lambda p: _animated_gif(p), "done", None),
    "webp": (lambda p: Image.new("RGB", (64, 64), "red").save(p, "WEBP"), "done", None),
    "exif_rotated": (lambda p: _exif_rotated(p), "done", None),
    "bomb_header": (lambda p: _bomb_png(p), "image_error", "decompression bomb"),
}


def _jpeg_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "blue").save(buffer, "JPEG")
    return buffer.getvalue()


def _palette_with_transparency(path: Path) -> None:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.save(path, "PNG", transparency=0)


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue")]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated(path: Path) -> None:
    image = Image.new("RGB", (80, 40), "green")
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, "JPEG", exif=exif.tobytes())


def _bomb_png(path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_every_bad_image_ends_as_a_recorded_error_or_a_correct_decode(settings, clip_model, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    lines = ["external_id,title,image"]
    for name, (make, _, _) in BAD_IMAGES.items():
        path = folder / f"{name}.img"
        make(path)
        lines.append(f"{name},Product {name},{path}")
    lines += ["ftp_url,Product ftp,ftp://example.com/a.jpg", "no_image,Product without image,"]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with db.connection(settings) as conn:
        ingest_file(conn, tmp_path / "bad.csv", "shop")
    [summary] = embed(settings, EmbedOptions(batch_size=4))
    with db.connection(settings) as conn:
        got = vectors(conn, "shop", clip_model.id)
    expected_errors = sum(1 for _, status, _ in BAD_IMAGES.values() if status == "image_error") + 1
    assert summary.image_errors == expected_errors and summary.failed == 0
    assert summary.embedded == len(got) - expected_errors
    for name, (_, status, fragment) in BAD_IMAGES.items():
        row = got[name]
        assert row["status"] == status, (name, row["error"])
        assert row["text"] is not None and row["fused"] is not None  # text still embedded
        if status == "image_error":
            assert (
                row["image"] is None and row["error"] and name.split("_")[0] in row["error"] or row["error"]
            )
            if fragment:
                assert fragment.lower() in row["error"].lower(), row["error"]
        else:
            assert row["image"] is not None and row["error"] is None
    assert got["ftp_url"]["status"] == "image_error" and "scheme" in got["ftp_url"]["error"]
    assert got["no_image"]["status"] == "done" and got["no_image"]["image"] is None
    # without an image the fused vector is the text vector (mean fusion, documented)
    assert cosine(got["no_image"]["fused"], got["no_image"]["text"]) == pytest.approx(1.0, abs=1e-5)
    # the errors show in `db status`
    report = db.status(settings)
    assert report.embedding_status["clip"]["image_error"] == expected_errors
    assert any(e["external_id"] == "zero_bytes" for e in report.recent_errors)


@pytest.fixture
def slow_image_server(tmp_path):
    with slow_picture_server(tmp_path / "served") as url:
        yield url


def _slow_catalog(settings, tmp_path, base_url: str, n: int, name: str = "shop") -> None:
    csv = write_catalog(tmp_path, name, n, image_ref=lambda i: f"{base_url}/{i % 8}.jpg")
    with db.connection(settings) as conn:
        ingest_file(conn, csv, name)


def _counts(settings, model_id: int) -> dict[str, int]:
    with db.connection(settings) as conn:
        return dict(
            conn.execute(
                "SELECT status, count(*) FROM prodmatch.embeddings WHERE model_id = %s GROUP BY 1",
                (model_id,),
            ).fetchall()
        )


def _worker_process(settings, *args: str) -> subprocess.Popen:
    # The test image server listens on 127.0.0.1, which the worker refuses unless allowed.
    env = {
        **os.environ,
        "PRODMATCH_DATABASE_URL": settings.database_url,
        "PRODMATCH_IMAGE_ALLOW": "127.0.0.1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "prodmatch.cli", "embed", "--json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _attempts(settings, model_id: int) -> list[int]:
    with db.connection(settings) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT attempts FROM prodmatch.embeddings WHERE model_id = %s", (model_id,)
            )
        ]


def test_worker_killed_mid_run_then_restarted_embeds_every_product_exactly_once(
    settings, clip_model, tmp_path, slow_image_server
):
    n = 160
    _slow_catalog(settings, tmp_path, slow_image_server, n)
    worker = _worker_process(settings, "--batch-size", "8", "--image-threads", "2")
    deadline = time.monotonic() + 60
    while _counts(settings, clip_model.id).get("done", 0) < 16 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    done_before = _counts(settings, clip_model.id).get("done", 0)
    assert 0 < done_before < n, "the kill must land mid-run"
    restart = _worker_process(settings, "--batch-size", "16", "--image-threads", "8")
    out, err = restart.communicate(timeout=120)
    assert restart.returncode == 0, err
    summary = json.loads(out)
    assert summary["embedded"] == n - done_before  # the restart did only what was left
    assert _counts(settings, clip_model.id) == {"done": n}
    assert sorted(set(_attempts(settings, clip_model.id))) == [1]  # nobody wrote a product twice


def _waiting_workers(settings) -> int:
    with db.connection(settings) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'prodmatch-worker'"
            " AND wait_event_type = 'Lock'"
        ).fetchone()[0]


def test_two_concurrent_workers_share_the_work_without_duplicates(
    settings, clip_model, tmp_path, slow_image_server
):
    n = 120
    _slow_catalog(settings, tmp_path, slow_image_server, n)
    # Both workers wait at the queue until both are there: a worker slow to start (a busy machine) must not find
    # the work already gone, which would test the machine's load and not the claims.
    with db.connection(settings) as gate:
        gate.execute("LOCK TABLE prodmatch.embeddings IN EXCLUSIVE MODE")
        workers = [_worker_process(settings, "--batch-size", "6", "--image-threads", "2") for _ in range(2)]
        deadline = time.monotonic() + 90
        while _waiting_workers(settings) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = _waiting_workers(settings)
    results = [w.communicate(timeout=120) for w in workers]
    assert waiting == 2
    assert all(w.returncode == 0 for w in workers), [r[1] for r in results]
    embedded = [json.loads(out)["embedded"] for out, _ in results]
    assert sum(embedded) == n and all(e > 0 for e in embedded), embedded
    assert _counts(settings, clip_model.id) == {"done": n}
    assert sorted(set(_attempts(settings, clip_model.id))) == [1]


def test_sigterm_stops_cleanly_and_releases_claims(settings, clip_model, tmp_path, slow_image_server):
    _slow_catalog(settings, tmp_path, slow_image_server, 200)
    worker = _worker_process(settings, "--batch-size", "8", "--image-threads", "2")
    while _counts(settings, clip_model.id).get("done", 0) < 8:
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    summary = json.loads(out)
    counts = _counts(settings, clip_model.id)
    assert counts["done"] == summary["embedded"] < 200
    with db.connection(settings) as conn:
        held = conn.execute(
            "SELECT count(*) FROM prodmatch.embeddings WHERE claimed_pid IS NOT NULL"
        ).fetchone()[0]
    assert held == 0


def test_watch_picks_up_a_row_inserted_by_plain_sql(settings, clip_model, tmp_path):
    stop = threading.Event()
    summaries = []
    options = EmbedOptions(
        model="clip", watch=True, watch_poll_seconds=120, image_roots=(tmp_path.resolve(),)
    )  # only NOTIFY can wake it in time; the application's images live under tmp_path
    thread = threading.Thread(target=lambda: summaries.extend(embed(settings, options, stop=stop)))
    thread.start()
    try:
        time.sleep(1.0)  # let it find nothing and start waiting
        image = product_image(tmp_path / "new.jpg", 3)
        with db.connection(settings) as conn:
            conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('app')")
            conn.execute(
                "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, image)"
                " SELECT id, 'APP-1', 'Kettle', 'Bosch', %s FROM prodmatch.catalogs WHERE name = 'app'",
                (str(image),),
            )
        deadline = time.monotonic() + 20
        while _counts(settings, clip_model.id).get("done", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _counts(settings, clip_model.id) == {"done": 1}
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert summaries[0].embedded == 1


def test_dropped_database_connection_is_retried(settings, clip_model, tmp_path, slow_image_server):
    n = 80
    _slow_catalog(settings, tmp_path, slow_image_server, n)
    result = []
    options = EmbedOptions(batch_size=8, image_threads=2, retry_backoff=0.05, image_limits=LOOPBACK_ALLOWED)
    thread = threading.Thread(target=lambda: result.extend(embed(settings, options)))
    thread.start()
    while _counts(settings, clip_model.id).get("done", 0) < 8:
        time.sleep(0.05)
    with db.connection(settings) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'prodmatch-worker'"
        ).fetchone()[0]
    thread.join(timeout=120)
    assert killed == 1 and not thread.is_alive()
    assert _counts(settings, clip_model.id) == {"done": n}
    assert sorted(set(_attempts(settings, clip_model.id))) == [1]


def test_big_photos_are_shrunk_to_the_model_input_without_changing_their_vectors(
    settings, clip_model, tiny_clip_dir, tmp_path
):
    # 800x600 JPEGs: the worker decodes them at 1/8 scale and resamples once, to the tiny model's 32 pixels.
    lines = ["external_id,title,image"]
    for i in range(6):
        path = product_image(tmp_path / f"big-{i}.jpg", i, size=(800, 600))
        lines.append(f"big-{i},Big photo {i},{path}")
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    with db.connection(settings) as conn:
        ingest_file(conn, tmp_path / "big.csv", "shop")
    [summary] = embed(settings, EmbedOptions(batch_size=4))
    assert summary.embedded == 6
    encoder = Encoder.load(str(tiny_clip_dir), precision="fp32")
    with db.connection(settings) as conn:
        got = vectors(conn, "shop", clip_model.id)
    for i in range(6):
        with Image.open(tmp_path / f"big-{i}.jpg") as photo:
            full_size = encoder.embed_images([photo.convert("RGB")])[0]  # decoded at 800x600, resized once
        assert cosine(got[f"big-{i}"]["image"], full_size) > 0.9999


def test_changed_product_is_re_embedded_and_new_model_queues_everything(
    settings, clip_model, tiny_siglip_dir, tmp_path
):
    with db.connection(settings) as conn:
        ingest_file(conn, write_catalog(tmp_path, "shop", 4), "shop")
    embed(settings)
    with db.connection(settings) as conn:
        before = vectors(conn, "shop", clip_model.id)["shop-0"]
        conn.execute(
            "UPDATE prodmatch.products SET title = 'Completely different' WHERE external_id = 'shop-0'"
        )
        conn.commit()
        assert vectors(conn, "shop", clip_model.id)["shop-0"]["status"] == "pending"
        siglip = add_model(conn, str(tiny_siglip_dir), name="siglip", precision="fp32")
        conn.commit()
        assert _counts(settings, siglip.id) == {"pending": 4}
    [clip_summary] = embed(settings, EmbedOptions(model="clip"))
    assert clip_summary.embedded == 1
    with db.connection(settings) as conn:
        after = vectors(conn, "shop", clip_model.id)["shop-0"]
        assert (
            after["status"] == "done" and after["attempts"] == 1
        )  # attempts count tries of the current content
        assert cosine(before["text"], after["text"]) < 0.999
        assert cosine(before["image"], after["image"]) > 0.999
        drop_model(conn, "siglip")
        assert [s.model.name for s in list_models(conn)] == ["clip"]
        assert not conn.execute(
            "SELECT 1 FROM pg_indexes WHERE indexname LIKE 'embeddings_model_%%_hnsw' AND indexname LIKE %s",
            (f"%model_{siglip.id}_%",),
        ).fetchall()
        # the clip vectors are untouched by the other model's life
        assert vectors(conn, "shop", clip_model.id)["shop-1"]["status"] == "done"


def test_text_template_and_long_descriptions(settings, tiny_clip_dir, tmp_path):
    with db.connection(settings) as conn:
        model = add_model(
            conn,
            str(tiny_clip_dir),
            name="t",
            text_template="{brand} {title} {attributes.colour} {description}",
        )
        csv = tmp_path / "long.csv"
        csv.write_text(
            "external_id,title,brand,description,colour\nL1,Lamp,IKEA," + "very long text " * 800 + ",red\n"
        )
        ingest_file(conn, csv, "shop")
    [summary] = embed(settings)
    assert summary.embedded == 1
    assert render_text(
        model.text_template, {"brand": "IKEA", "title": "Lamp", "attributes": {"colour": "red"}}
    ) == ("IKEA Lamp red")
    with pytest.raises(ConfigError, match="unknown field"), db.connection(settings) as conn:
        add_model(conn, str(tiny_clip_dir), name="bad", text_template="{brand} {nonsense}")


def test_cli_models_and_embed(settings, tiny_clip_dir, tmp_path):
    runner = CliRunner()
    base = ["--database-url", settings.database_url]
    csv = write_catalog(tmp_path, "shop", 6)
    assert runner.invoke(main, [*base, "ingest", str(csv), "--catalog", "shop", "--json"]).exit_code == 0
    added = runner.invoke(
        main, [*base, "models", "add", str(tiny_clip_dir), "--name", "tiny", "--fusion", "concat"]
    )
    assert added.exit_code == 0, added.output
    listed = json.loads(runner.invoke(main, [*base, "models", "list", "--json"]).stdout)
    assert listed[0]["name"] == "tiny" and listed[0]["fused_dimension"] == 2 * listed[0]["dimension"]
    assert listed[0]["embeddings"] == {"pending": 6}
    result = runner.invoke(main, [*base, "embed", "--model", "tiny", "--limit", "4", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["embedded"] == 4 and {"failed", "skipped", "seconds", "products_per_second"} <= set(
        summary
    )
    rest = json.loads(runner.invoke(main, [*base, "embed", "--json"]).stdout)
    assert rest["embedded"] == 2
    assert runner.invoke(main, [*base, "models", "drop", "tiny"]).exit_code == 0
    with db.connection(settings) as conn, pytest.raises(ConfigError, match="no model is registered"):
        get_model(conn)


def test_unloadable_model_says_how_to_pass_a_local_folder(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    base = ["--database-url", settings.database_url]
    for source in (str(tmp_path / "no-such-folder"), "someone/not-a-real-model"):
        result = runner.invoke(main, [*base, "models", "add", source])
        assert result.exit_code == 1
        assert "local" in result.output.lower() and "Traceback" not in result.output


def test_a_big_run_leaves_fresh_planner_statistics(settings, clip_model):
    # 1,500 text-only products (no image): enough change for analyze_if_stale (over 1,000 rows and 10%).
    with db.connection(settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('bulk')")
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
            " SELECT c.id, 'B' || i, 'item ' || i FROM prodmatch.catalogs c, generate_series(1, 1500) i"
            " WHERE c.name = 'bulk'"
        )
        conn.commit()
        conn.execute("ANALYZE prodmatch.embeddings")  # the pending rows are known; the vectors are not yet
        conn.commit()
        before = conn.execute(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relid = 'prodmatch.embeddings'::regclass"
        ).fetchone()[0]
    [summary] = embed(settings, EmbedOptions(model="clip", batch_size=256))
    assert summary.embedded == 1500
    with db.connection(settings) as conn:
        after, modified = conn.execute(
            "SELECT last_analyze, n_mod_since_analyze FROM pg_stat_user_tables"
            " WHERE relid = 'prodmatch.embeddings'::regclass"
        ).fetchone()
    assert before is not None and after > before and modified < 1000


class _Concurrency:
    """Counts how many calls of a wrapped function run at once (the most, over the test)."""

    def __init__(self, function, pause: float) -> None:
        self.function, self.pause = function, pause
        self.now = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.pause)
            return self.function(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def test_loader_pool_fetches_more_images_at_a_time_than_it_decodes(tiny_clip_dir, tmp_path, monkeypatch):
    # Fetches wait side by side, FETCHES_PER_DECODER per decoder thread, and decodes never exceed the decoders.
    from prodmatch.embed import batch as batch_module

    path = product_image(tmp_path / "p.jpg", 0)
    data = path.read_bytes()
    fetches = _Concurrency(lambda ref, limits: data, pause=0.3)
    decodes = _Concurrency(batch_module.decode_image, pause=0.02)
    monkeypatch.setattr(batch_module, "read_image_bytes", fetches)
    monkeypatch.setattr(batch_module, "decode_image", decodes)
    encoder = Encoder.load(str(tiny_clip_dir), precision="fp32")
    load = batch_module.ImageLoader(encoder, ImageLimits(), retries=1, backoff=0.0)
    pool = batch_module.LoaderPool(2)
    try:
        futures = [pool.submit(load, f"http://images.example/{i}.jpg") for i in range(16)]
        pixels = [future.result(timeout=60) for future in futures]
    finally:
        pool.shutdown(wait=True)
    assert all(p.shape == pixels[0].shape for p in pixels)
    assert fetches.most == 2 * batch_module.LoaderPool.FETCHES_PER_DECODER
    assert decodes.most <= 2


def test_a_paused_pool_fetches_but_decodes_only_once_resumed():
    # While a CPU model encodes, the worker holds decoding back (the towers use every core); bytes still arrive.
    from prodmatch.embed.batch import LoaderPool

    fetched, decoded = [], []

    class Load:
        def fetch(self, ref):
            fetched.append(ref)
            return ref.encode()

        def decode(self, data, ref):
            decoded.append(ref)
            return data.decode()

    pool = LoaderPool(2)
    try:
        with pool.paused():
            futures = [pool.submit(Load(), str(i)) for i in range(6)]
            deadline = time.monotonic() + 10
            while len(fetched) < 6 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            assert sorted(fetched) == [str(i) for i in range(6)] and decoded == []
            assert not any(future.done() for future in futures)
        assert [future.result(timeout=10) for future in futures] == [str(i) for i in range(6)]
        with pool.paused(False):  # a model on a GPU: nothing held back
            assert pool.submit(Load(), "7").result(timeout=10) == "7"
        with pool.paused():  # shutting down while paused lets the decoders end
            late = pool.submit(Load(), "8")
            time.sleep(0.1)
            pool.shutdown(wait=True, timeout=10)
        assert late.cancelled() or late.result(timeout=1) == "8"
    finally:
        pool.shutdown(wait=True, timeout=10)


# A child process whose loader pool is stopped while downloads are still under way and decodes (all torch) run;
# the fetches end while the interpreter exits.
_STOPPED_POOL = """
import time
import numpy as np
import torch
from prodmatch.embed.batch import LoaderPool

class Load:
    def fetch(self, ref):
        time.sleep(float(ref))
        return b""

    def decode(self, data, ref):
        a = torch.randn(128, 128)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            a @ a
        return torch.from_numpy(np.zeros((3, 64, 64), dtype=np.float32))

pool = LoaderPool(2)
futures = [pool.submit(Load(), str(0.02 * i)) for i in range(48)]
time.sleep(0.25)
pool.shutdown(wait=False)
"""


def test_a_pool_stopped_mid_download_never_aborts_the_exiting_process():
    # A daemon thread that runs torch code (freeing a tensor included) while the interpreter exits aborts the
    # process ("terminate called without an active exception", exit -6), as a worker stopped by SIGTERM did now
    # and then. With the decoder threads made daemon threads and not joined, this child aborted 6 times in 6.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for _ in range(3):
        child = subprocess.run(
            [sys.executable, "-c", _STOPPED_POOL], env=env, capture_output=True, text=True, timeout=60
        )
        assert child.returncode == 0, child.stderr


def test_each_batch_is_written_by_the_database_thread_while_the_next_is_encoded(
    settings, clip_model, tmp_path, monkeypatch
):
    from prodmatch.embed import queue, worker

    with db.connection(settings) as conn:
        ingest_file(conn, write_catalog(tmp_path, "shop", 12), "shop")
    spans: dict[str, list] = {"write": [], "encode": []}

    def timed(kind: str, function, pause: float = 0.0):
        def run(*args, **kwargs):
            started = time.monotonic()
            time.sleep(pause)
            result = function(*args, **kwargs)
            spans[kind].append((started, time.monotonic(), threading.current_thread().name))
            return result

        return run

    monkeypatch.setattr(queue, "write", timed("write", queue.write, pause=0.3))
    monkeypatch.setattr(worker, "encode_batch", timed("encode", worker.encode_batch, pause=0.3))
    [summary] = embed(settings, EmbedOptions(batch_size=4))

    assert (summary.embedded, summary.batches) == (12, 3)
    assert _counts(settings, clip_model.id) == {"done": 12}
    writes, encodes = sorted(spans["write"]), sorted(spans["encode"])
    # Every write but the last (nothing left to encode then) runs in the database thread ...
    assert [name.split("_")[0] for _, _, name in writes] == ["embed-db", "embed-db", "MainThread"]
    # ... batch 1's while batch 2 is encoded, and batch 2's while batch 3 is.
    for (write_start, write_end, _), (encode_start, encode_end, _) in zip(writes, encodes[1:], strict=False):
        assert write_start < encode_end and encode_start < write_end


def test_image_batches_are_claimed_two_ahead_of_the_one_encoded_and_stop_at_the_limit(
    settings, clip_model, tmp_path, monkeypatch
):
    from prodmatch.embed import queue, worker

    with db.connection(settings) as conn:
        ingest_file(conn, write_catalog(tmp_path, "shop", 20), "shop")
    claims, encodes = [], []
    claim, encode = queue.claim, worker.encode_batch
    monkeypatch.setattr(
        queue,
        "claim",
        lambda conn, m, c, size, *a: claims.append((time.monotonic(), size)) or claim(conn, m, c, size, *a),
    )

    def slow_encode(*args, **kwargs):
        started = time.monotonic()
        time.sleep(0.3)
        rows = encode(*args, **kwargs)
        encodes.append((started, time.monotonic()))
        return rows

    monkeypatch.setattr(worker, "encode_batch", slow_encode)
    [first] = embed(settings, EmbedOptions(batch_size=4, limit=18))  # stops mid-catalogue

    assert (first.embedded, first.batches) == (18, 5)
    # Batches of 4 claimed ahead, the last one cut to the limit: nothing claimed past it ...
    assert [size for _, size in claims] == [4, 4, 4, 4, 2]
    assert worker.IMAGE_LOOKAHEAD == 2
    # ... and the batch after next claimed (its images loading) while the first is encoded.
    assert claims[2][0] < encodes[0][1]
    assert _counts(settings, clip_model.id) == {"done": 18, "pending": 2}
    [rest] = embed(settings, EmbedOptions(batch_size=4))  # a resumed run does the rest
    assert (rest.embedded, rest.skipped) == (2, 0)
    assert _counts(settings, clip_model.id) == {"done": 20}
    assert set(_attempts(settings, clip_model.id)) == {1}


def test_text_only_products_are_claimed_in_blocks_grouped_by_length_and_resume(
    settings, clip_model, tiny_clip_dir, tmp_path, monkeypatch
):
    # Titles of 1 to 9 words, so the length groups differ from the catalogue's order.
    title = lambda i: " ".join(["word"] * (1 + i * 5 % 9)) + f" item {i}"  # noqa: E731
    csv = write_catalog(tmp_path, "texts", 60, image_ref=lambda i: "", title=title)
    with db.connection(settings) as conn:
        ingest_file(conn, csv, "texts")
    from prodmatch.embed import queue, worker

    sizes = []
    claim = queue.claim
    monkeypatch.setattr(
        queue, "claim", lambda conn, m, c, size, *a: sizes.append(size) or claim(conn, m, c, size, *a)
    )
    [first] = embed(settings, EmbedOptions(batch_size=4, limit=30))  # stops mid-catalogue
    assert first.embedded == 30
    assert sizes[:2] == [4, min(4 * worker.TEXT_BLOCK, 30 - 4)]  # a block after the first batch, to the limit
    [rest] = embed(settings, EmbedOptions(batch_size=4))  # the rest, claims and all, as a resumed run
    assert rest.embedded == 30
    assert _counts(settings, clip_model.id) == {"done": 60}
    assert set(_attempts(settings, clip_model.id)) == {1}
    # Each text's vector is the one it gets alone, whichever block and length group it was embedded in.
    encoder = Encoder.load(str(tiny_clip_dir))  # the worker's precision ("auto")
    with db.connection(settings) as conn:
        stored = vectors(conn, "texts", clip_model.id)
        template = get_model(conn, "clip").text_template
    for i in range(60):
        text = render_text(template, {"title": title(i), "brand": f"Brand{i % 5}"})
        alone = encoder.embed_texts([text])[0]
        assert stored[f"texts-{i}"]["image"] is None
        assert cosine(stored[f"texts-{i}"]["text"], alone) >= 0.9999, i


def test_texts_in_length_groups_get_the_vectors_they_get_alone(tiny_clip_dir):
    encoder = Encoder.load(str(tiny_clip_dir), precision="bf16")
    texts = [" ".join(["red"] * (1 + i * 7 % 13)) + f" shoe {i}" for i in range(40)]
    grouped = encoder.embed_texts(texts, batch_size=8)
    together = encoder.embed_texts(texts)
    for i, text in enumerate(texts):
        alone = encoder.embed_texts([text])[0]
        assert cosine(grouped[i], alone) >= 0.9999, i
        assert cosine(together[i], alone) >= 0.9999, i
    assert cosine(grouped[0], grouped[1]) < 0.999  # the rows are not all the same vector
