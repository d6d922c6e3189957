"""The review app in a real browser (Debian chromium, headless, through Selenium): a small demo catalogue pair is
ingested, embedded with the tiny CLIP and linked; the app serves it on a free 127.0.0.1 port. Every page is
screenshotted into $PRODMATCH_SCREENSHOTS (default tests/review/screenshots)."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from db_fixtures import create_database, drop_database
from PIL import Image
from review_world import chromium, image_server, screenshot_dir
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from prodmatch import match as matching
from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.config import Settings
from prodmatch.demo.catalogues import generate
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.ingest.load import ingest_file
from prodmatch.review import ReviewOptions, create_app
from prodmatch.review.server import BackgroundServer


@dataclass(frozen=True)
class World:
    settings: Settings
    run_id: int
    url_product: int  # a competitor product whose image is an http URL on the local image server
    local_product: int  # a shop product whose image is a local file
    no_image_product: int


@pytest.fixture(scope="module")
def world(pg_server, template_url, tiny_clip_dir, tmp_path_factory):
    url = create_database(pg_server, "review_browser")
    settings = Settings(database_url=url, home=tmp_path_factory.mktemp("home"))
    files = generate(tmp_path_factory.mktemp("demo"), size=10, image_size=192)
    with image_server(files.folder) as base, db.connection(settings) as conn:
        add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
        ingest_file(conn, files.shop, files.shop_catalog)
        ingest_file(conn, files.competitor, files.competitor_catalog)
        (url_product, image), (no_image_product,) = (
            conn.execute(
                "SELECT p.id, p.image FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                " WHERE c.name = %s AND p.image IS NOT NULL ORDER BY p.id LIMIT 1",
                (files.competitor_catalog,),
            ).fetchone(),
            conn.execute(
                "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                " WHERE c.name = %s ORDER BY p.id DESC LIMIT 1",
                (files.shop_catalog,),
            ).fetchone(),
        )
        relative = Path(image).relative_to(files.folder).as_posix()
        conn.execute(
            "UPDATE prodmatch.products SET image = %s WHERE id = %s", (f"{base}/{relative}", url_product)
        )
        conn.execute("UPDATE prodmatch.products SET image = NULL WHERE id = %s", (no_image_product,))
        local_product = conn.execute(
            "SELECT min(p.id) FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
            " WHERE c.name = %s AND p.image LIKE '/%%'",
            (files.shop_catalog,),
        ).fetchone()[0]
        conn.commit()
        embed(settings, EmbedOptions(batch_size=32))
        run = matching.link(conn, files.shop_catalog, files.competitor_catalog, k=3)
        conn.commit()
        yield World(settings, run.run_id, url_product, local_product, no_image_product)
    drop_database(pg_server, "review_browser")


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def fresh(world):
    with db.connection(world.settings) as conn:
        conn.execute("DELETE FROM prodmatch.labels")
    return world


def _serve(world: World, retrain=None, **options) -> BackgroundServer:
    defaults = {"user": "tester", "allow_private_images": True, "retrain_every": 100}
    return BackgroundServer(create_app(world.settings, ReviewOptions(**{**defaults, **options}), retrain))


def _shot(browser, name: str, full: bool = False) -> None:
    """Screenshot the window (or, with full, the whole page up to 1,600 px tall) as a 256-colour PNG."""
    size = browser.get_window_size()
    if full:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        chrome = size["height"] - browser.execute_script("return window.innerHeight")
        browser.set_window_size(size["width"], min(1600, height + chrome))
    png = browser.get_screenshot_as_png()
    if full:
        browser.set_window_size(size["width"], size["height"])
    with Image.open(io.BytesIO(png)) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(screenshot_dir() / f"{name}.png", optimize=True)


def _shown_pair(browser) -> tuple[int, int]:
    pair = browser.find_element(By.ID, "pair")
    return int(pair.get_attribute("data-source")), int(pair.get_attribute("data-target"))


def _press(browser, key: str) -> None:
    """Press a key on the page and wait for the next page to load."""
    _then_wait(browser, lambda: browser.find_element(By.TAG_NAME, "body").send_keys(key))


def _click(browser, css: str) -> None:
    """Click an element and wait for the page it leads to."""
    _then_wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, css).click())


def _then_wait(browser, action) -> None:
    old = browser.find_element(By.TAG_NAME, "html")
    action()
    # Generous waits: they end as soon as the page is there, and a busy 2-core machine can take seconds to render.
    WebDriverWait(browser, 30).until(lambda b: _stale(old))
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")


def _stale(element) -> bool:
    try:
        element.tag_name  # noqa: B018  (touching a replaced page's element raises)
        return False
    except Exception:
        return True


def _labels(world: World) -> list[tuple]:
    with db.connection(world.settings) as conn:
        return conn.execute(
            "SELECT source_product_id, target_product_id, label, labelled_by, run_id, is_current"
            " FROM prodmatch.labels ORDER BY id"
        ).fetchall()


def _images_loaded(browser) -> list[int]:
    """naturalWidth of every <img> on the page once loaded (0 = broken)."""
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return Array.from(document.images).every(i => i.complete)")
    )
    return browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")


def test_label_pairs_with_the_keyboard_and_undo(fresh, browser):
    with _serve(fresh) as server:
        browser.get(server.url + "/label")
        assert "Same product?" in browser.page_source
        assert all(width > 0 for width in _images_loaded(browser))
        _shot(browser, "label")
        answered = []
        for key, label in (("y", "match"), ("n", "non-match"), ("u", "unsure")):
            pair = _shown_pair(browser)
            _press(browser, key)
            answered.append((*pair, label, "tester", fresh.run_id, True))
            assert _labels(fresh) == answered
            assert _shown_pair(browser) not in [a[:2] for a in answered]  # never a labelled pair again
        assert browser.find_element(By.ID, "count-labelled").text == "3"
        assert browser.find_element(By.ID, "count-matches").text == "1"
        _press(browser, "z")
        assert _labels(fresh) == answered[:2]
        assert _shown_pair(browser) == answered[2][:2]  # the undone pair comes back to be answered again
        _press(browser, "b")
        assert "blind" in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
        assert not browser.find_elements(By.ID, "probability")
        _shot(browser, "label-blind")
        _press(browser, "b")
        assert browser.find_elements(By.ID, "probability")


def test_the_next_pair_changes_after_a_retrain(fresh, browser):
    calls: list[int] = []
    wanted: dict[str, tuple[int, int]] = {}

    def retrain(conn) -> dict:
        labelled = conn.execute("SELECT count(*) FROM prodmatch.labels WHERE is_current").fetchone()[0]
        calls.append(labelled)
        # A stand-in for the learned matcher: certain about every pair but one, which sits on the threshold.
        return {
            "f1": 0.5 + 0.1 * len(calls),
            "threshold": 0.4,
            "score": lambda pairs: [
                0.4 if (p.source_product_id, p.target_product_id) == wanted["pair"] else 0.99 for p in pairs
            ],
        }

    with _serve(fresh, retrain, retrain_every=2, random_share=0.0) as server:
        browser.get(server.url + "/label")
        _press(browser, "y")
        before = _shown_pair(browser)
        with db.connection(fresh.settings) as conn:
            labelled = {
                tuple(r)
                for r in conn.execute("SELECT source_product_id, target_product_id FROM prodmatch.labels")
            }
            wanted["pair"] = next(
                tuple(r)
                for r in conn.execute(
                    "SELECT source_product_id, target_product_id FROM prodmatch.matches WHERE run_id = %s"
                    " ORDER BY fused_similarity DESC",
                    (fresh.run_id,),
                )
                if tuple(r) not in labelled and tuple(r) != before
            )
        _press(browser, "n")  # the second new label starts the retraining in the background
        _wait_for_history(server.url, 1)
        assert calls == [2]
        browser.get(server.url + "/label")
        assert _shown_pair(browser) == wanted["pair"]
        assert browser.find_element(By.ID, "probability").text == "40%"
        history = browser.find_element(By.ID, "f1-history").text
        assert "0.600" in history
        _press(browser, "y")
        _press(browser, "n")  # two more labels: a second retraining, and the F1 history has a line to draw
        _wait_for_history(server.url, 2)
        browser.get(server.url + "/label")
        assert calls == [2, 4]
        assert "0.700" in browser.find_element(By.ID, "f1-history").text
        assert browser.find_elements(By.CSS_SELECTOR, "svg.spark polyline")
        _shot(browser, "label-after-retrain")


def _wait_for_history(url: str, entries: int) -> None:
    deadline = time.monotonic() + 60  # a retraining takes seconds, more on a busy machine
    while len(json.loads(urllib.request.urlopen(url + "/retrain-status").read())["history"]) < entries:
        assert time.monotonic() < deadline, "the retraining did not finish"
        time.sleep(0.1)


def test_images_from_a_local_file_and_a_url_and_nothing_else(fresh, browser):
    with _serve(fresh) as server:
        for product in (fresh.url_product, fresh.local_product):
            browser.get(f"{server.url}/product/{product}")
            widths = _images_loaded(browser)
            assert widths and all(width > 0 for width in widths), product
        assert "http://127.0.0.1" in _stored_image(fresh, fresh.url_product)
        rows = browser.find_elements(By.CSS_SELECTOR, "#run-pairs tbody tr")
        assert len(rows) == _pairs_with(fresh, fresh.local_product) > 0
        _shot(browser, "product", full=True)
        browser.get(f"{server.url}/product/{fresh.no_image_product}")
        assert "no image" in browser.find_element(By.CLASS_NAME, "picture").text
        for path in ("/thumb/987654321", f"/thumb/{fresh.no_image_product}", "/thumb/..%2F..%2Fetc%2Fpasswd"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.url + path)
            assert refused.value.code == 404, path
        browser.get(server.url + "/thumb/987654321")
        assert "Not found" in browser.page_source
        _shot(browser, "error")
    with _serve(fresh, allow_private_images=False) as server:
        # Without the allowance the loader's own rules decide; a local file is always fine.
        browser.get(f"{server.url}/thumb/{fresh.local_product}")
        assert browser.execute_script("return document.images.length && document.images[0].naturalWidth") > 0


def _pairs_with(world: World, product: int) -> int:
    with db.connection(world.settings) as conn:
        return conn.execute(
            "SELECT count(*) FROM prodmatch.matches WHERE run_id = %s AND %s IN (source_product_id, target_product_id)",
            (world.run_id, product),
        ).fetchone()[0]


def _stored_image(world: World, product: int) -> str:
    with db.connection(world.settings) as conn:
        return conn.execute("SELECT image FROM prodmatch.products WHERE id = %s", (product,)).fetchone()[0]


def test_browse_filters_sorts_and_pages(fresh, browser):
    with db.connection(fresh.settings) as conn:
        accepted = conn.execute(
            "SELECT count(*) FROM prodmatch.matches WHERE run_id = %s AND accepted", (fresh.run_id,)
        ).fetchone()[0]
    with _serve(fresh) as server:
        browser.get(server.url + "/browse?status=accepted&per_page=5")
        rows = browser.find_elements(By.CSS_SELECTOR, "#pairs-table tbody tr")
        assert len(rows) == min(5, accepted)
        assert f"{accepted} pairs match the filters" in browser.page_source
        assert f"page 1 of {-(-accepted // 5)}" in browser.page_source
        browser.get(server.url + "/browse")
        _click(browser, "th a.sort[href*='sort=image']")
        assert "sort=image" in browser.current_url
        values = [
            float(td.text)
            for td in browser.find_elements(By.CSS_SELECTOR, "#pairs-table tbody tr td:nth-child(6)")
            if td.text != "–"
        ]
        assert values == sorted(values, reverse=True) and len(values) > 5
        assert all(width > 0 for width in _images_loaded(browser)[:10])
        _shot(browser, "browse")
        browser.get(server.url + "/browse?min=2")
        assert "No pairs match these filters." in browser.page_source


def test_a_network_bind_asks_for_the_token_in_the_page(fresh, browser):
    # Built as if listening on 0.0.0.0, served on 127.0.0.1 only: the guard sees a non-local bind.
    with _serve(fresh, host="0.0.0.0", token="letmein") as server:
        browser.get(server.url + "/browse")
        assert "/login" in browser.current_url
        _shot(browser, "login")
        browser.find_element(By.NAME, "token").send_keys("wrong")
        _click(browser, "form button")
        assert "not the one this server printed" in browser.page_source
        browser.find_element(By.NAME, "token").send_keys("letmein")
        browser.find_element(By.NAME, "name").send_keys("Ann")
        _click(browser, "form button")
        assert browser.current_url.endswith("/browse")
        assert "labelling as Ann" in browser.find_element(By.CLASS_NAME, "user").text
    browser.delete_all_cookies()


def test_static_export_is_one_self_contained_page(fresh, browser, tmp_path):
    out = tmp_path / "export"
    args = ["--database-url", fresh.settings.database_url, "review", "--run", str(fresh.run_id)]
    result = CliRunner().invoke(main, [*args, "--export", str(out), "--limit", "6", "--allow-private-images"])
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    assert page.count('<section class="card export-pair">') == 6
    assert "data:image/" in page and "/thumb/" not in page and 'src="http' not in page
    browser.get((out / "index.html").as_uri())
    assert all(width > 0 for width in _images_loaded(browser))
    _shot(browser, "export")


@pytest.fixture(scope="module", autouse=True)
def _keep_docs_screenshots():
    """Copy the screenshots to docs/review when PRODMATCH_DOCS_SCREENSHOTS is set (refreshing the docs)."""
    yield
    if os.environ.get("PRODMATCH_DOCS_SCREENSHOTS"):
        docs = Path(__file__).resolve().parents[2] / "docs" / "review"
        docs.mkdir(parents=True, exist_ok=True)
        for shot in screenshot_dir().glob("*.png"):
            shutil.copy(shot, docs / shot.name)
