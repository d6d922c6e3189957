"""Helpers for the review tests: a small stored run written straight into the tables, an image server on
127.0.0.1, and a headless Debian chromium driven by Selenium (no browser download)."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def tiny_run(conn: psycopg.Connection, images: dict[str, str] | None = None, n: int = 4) -> dict:
    """Catalogues shop and rival with n products each, a model row, and a link run whose pairs are shop-i ->
    rival-j for every i, j, fused similarity falling with |i - j|. Returns ids by name and the run id."""
    images = images or {}
    ids: dict[str, int] = {}
    for catalog in ("shop", "rival"):
        cid = conn.execute(
            "INSERT INTO prodmatch.catalogs (name) VALUES (%s) RETURNING id", (catalog,)
        ).fetchone()[0]
        for i in range(n):
            ref = f"{catalog}-{i}"
            ids[ref] = conn.execute(
                "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, category, price, currency,"
                " image, attributes) VALUES (%s, %s, %s, %s, %s, %s, 'EUR', %s, %s) RETURNING id",
                (
                    cid,
                    ref,
                    f"{['Kettle', 'Lamp', 'Chair', 'Mug'][i % 4]} {catalog} {i}",
                    "Acme" if i % 2 else "Globex",
                    "Kitchen" if i % 2 else "Home",
                    10 + i * (3 if catalog == "rival" else 1),
                    images.get(ref),
                    Jsonb({"colour": "red" if i % 2 else "blue"}),
                ),
            ).fetchone()[0]
        ids[catalog] = cid
    model = conn.execute(
        "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template)"
        " VALUES ('clip', 'tiny', 'clip', 32, 32, '{title}') RETURNING id"
    ).fetchone()[0]
    run = conn.execute(
        "INSERT INTO prodmatch.match_runs (kind, source_catalog_id, target_catalog_id, model_id, params)"
        " VALUES ('link', %s, %s, %s, %s) RETURNING id",
        (ids["shop"], ids["rival"], model, Jsonb({"k": n})),
    ).fetchone()[0]
    for i in range(n):
        ranked = sorted(range(n), key=lambda j: (abs(i - j), j))
        for rank, j in enumerate(ranked, start=1):
            fused = round(0.95 - 0.2 * abs(i - j) - 0.01 * i, 4)
            conn.execute(
                "INSERT INTO prodmatch.matches (run_id, source_product_id, target_product_id, rank,"
                " fused_similarity, image_similarity, text_similarity) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (run, ids[f"shop-{i}"], ids[f"rival-{j}"], rank, fused, fused + 0.02, fused - 0.05 * (i % 2)),
            )
    conn.commit()
    return {**ids, "run": run}


@contextmanager
def image_server(folder: Path):
    """Serve `folder` over http on 127.0.0.1 (a free port) for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def chromium():
    """A headless chromium (the Debian package) under Selenium, 1280x900."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def screenshot_dir() -> Path:
    """Where page screenshots go: $PRODMATCH_SCREENSHOTS, else tests/review/screenshots (ignored by git)."""
    folder = Path(os.environ.get("PRODMATCH_SCREENSHOTS") or Path(__file__).parent / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
