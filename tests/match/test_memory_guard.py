"""Memory is predictable: exact link, dedupe and index check estimate their peak, compare it with the machine's
budget (cgroup limit, MemAvailable, or PRODMATCH_MEMORY_BUDGET), and switch to ANN or refuse with a message
instead of being killed; the estimate is at least the measured peak; index check holds only its sample. The
lexical and matcher links (the default built-in one too) and `link --watch` are refused the same way."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from builders import products_with_vectors
from click.testing import CliRunner

from prodmatch import hardware
from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.config import load_settings, parse_bytes
from prodmatch.embed.registry import add_model
from prodmatch.errors import ConfigError, ProdmatchError
from prodmatch.match.index_check import _kth_best, check_index
from prodmatch.match.link import dedupe, link
from prodmatch.match.memory import (
    CatalogSize,
    catalog_sizes,
    index_check_peak_bytes,
    lexical_link_peak_bytes,
    matcher_link_peak_bytes,
)
from prodmatch.match.watch import watch_link
from prodmatch.store.models import get_model
from prodmatch.store.vectors import fetch_vectors

TINY = 1024 * 1024  # 1 MiB: less than any exact search needs


@pytest.fixture
def vectors_db(settings, tiny_clip_dir):
    """shop and rival, 400 products each with known vectors (rival-i near shop-i); the tiny CLIP's indexes."""
    rng = np.random.default_rng(3)
    shop = rng.normal(size=(400, 32)).astype(np.float32)
    rival = shop + 0.05 * rng.normal(size=shop.shape).astype(np.float32)
    shop /= np.linalg.norm(shop, axis=1, keepdims=True)
    rival /= np.linalg.norm(rival, axis=1, keepdims=True)
    with db.connection(settings) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
        products_with_vectors(conn, model.id, "shop", shop, ["Home"] * 400)
        products_with_vectors(conn, model.id, "rival", rival, ["Home"] * 400)
    return settings


def _invoke(settings, *args: str, budget: str | None = None):
    env = {"PRODMATCH_DATABASE_URL": settings.database_url}
    if budget is not None:
        env["PRODMATCH_MEMORY_BUDGET"] = budget
    return CliRunner().invoke(main, list(args), env=env)


def _runs(settings) -> int:
    with db.connection(settings) as conn:
        return conn.execute("SELECT count(*) FROM prodmatch.match_runs").fetchone()[0]


# --- the budget ------------------------------------------------------------------------------------------------


def test_budget_setting_overrides_the_probe_and_is_parsed_with_units():
    assert (
        parse_bytes("512MiB") == 512 * 2**20
        and parse_bytes("2G") == 2 * 2**30
        and parse_bytes("1000") == 1000
    )
    assert load_settings(environ={"PRODMATCH_MEMORY_BUDGET": "1.5GiB"}).memory_budget == int(1.5 * 2**30)
    with pytest.raises(ConfigError, match="PRODMATCH_MEMORY_BUDGET"):
        load_settings(environ={"PRODMATCH_MEMORY_BUDGET": "lots"})
    budget = hardware.memory_budget(12345)
    assert (budget.bytes, budget.source) == (12345, "PRODMATCH_MEMORY_BUDGET")
    probed = hardware.memory_budget()
    assert probed.bytes > 0 and probed.source


def test_a_container_limit_wins_over_the_host_memory(tmp_path, monkeypatch):
    # cgroup v2 files as a container with a 1 GiB memory.max sees them: 600 MiB used, 100 MiB of it page cache.
    (tmp_path / "memory.max").write_text(f"{2**30}\n")
    (tmp_path / "memory.current").write_text(f"{600 * 2**20}\n")
    (tmp_path / "memory.stat").write_text(f"anon 1\ninactive_file {100 * 2**20}\nactive_file 5\n")
    monkeypatch.setattr(hardware, "_CGROUP", tmp_path)
    budget = hardware.memory_budget()
    assert budget.bytes == int(
        524 * 2**20 * hardware.MEMORY_SHARE
    )  # 1024 - 600 + 100 MiB, not the host's RAM
    assert "memory.max" in budget.source
    (tmp_path / "memory.max").write_text("max\n")  # no limit: MemAvailable decides
    assert "MemAvailable" in hardware.memory_budget().source


# --- link ------------------------------------------------------------------------------------------------------


def test_link_that_does_not_fit_switches_to_ann_with_a_note(vectors_db):
    with db.connection(vectors_db) as conn:
        roomy = link(conn, "shop", "rival", space="fused", memory_budget_bytes=2**40)
        tight = link(conn, "shop", "rival", space="fused", memory_budget_bytes=TINY)
    assert roomy.mode == "exact" and roomy.notes == () and roomy.memory_estimate > TINY
    assert tight.mode == "ann" and tight.memory_estimate == roomy.memory_estimate
    assert (
        len(tight.notes) == 1 and "linked with --mode ann" in tight.notes[0] and "1.0 MiB" in tight.notes[0]
    )
    assert "note: exact search would need about" in tight.to_text()
    assert tight.matched_sources >= 390  # the HNSW path finds the same near copies
    result = _invoke(
        vectors_db,
        "link",
        "--source",
        "shop",
        "--target",
        "rival",
        "--space",
        "fused",
        "--json",
        budget="1MiB",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "ann"


def test_exact_link_asked_for_but_too_big_is_refused_with_a_clear_error(vectors_db):
    with (
        db.connection(vectors_db) as conn,
        pytest.raises(ProdmatchError, match="--mode exact would need about"),
    ):
        link(conn, "shop", "rival", mode="exact", memory_budget_bytes=TINY)
    result = _invoke(
        vectors_db, "link", "--source", "shop", "--target", "rival", "--mode", "exact", budget="1MiB"
    )
    assert result.exit_code == 1
    assert (
        result.output.startswith("Error: --mode exact would need about")
        and "PRODMATCH_MEMORY_BUDGET" in result.output
    )
    assert "Traceback" not in result.output
    assert _runs(vectors_db) == 0


# --- lexical and matcher links, watch ---------------------------------------------------------------------------

_WORDS = [
    "steel",
    "kettle",
    "cordless",
    "drill",
    "cotton",
    "shirt",
    "gaming",
    "mouse",
    "desk",
    "lamp",
    "yoga",
    "mat",
]


@pytest.fixture
def titles_db(settings):
    """shop and rival, 60 titled products each (rival-i a reworded shop-i), no model registered."""
    with db.connection(settings) as conn:
        for catalog in ("shop", "rival"):
            conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES (%s)", (catalog,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, price)"
                    " SELECT id, %s, %s, 'Acme', %s FROM prodmatch.catalogs WHERE name = %s",
                    [(f"{catalog}-{i}", _title(i, catalog == "rival"), 10 + i, catalog) for i in range(60)],
                )
        conn.commit()
    return settings


def _title(i: int, reworded: bool) -> str:
    words = [_WORDS[(i * 7 + j) % len(_WORDS)] for j in range(3)]
    return f"ACME {' '.join(reversed(words))} ({i:04d}X)" if reworded else f"Acme {' '.join(words)} {i:04d}X"


LINKS = {"lexical": {"space": "lexical"}, "builtin": {}, "matcher": {"matcher": "builtin"}}


@pytest.mark.parametrize("how", LINKS)
def test_lexical_and_matcher_links_that_do_not_fit_are_refused_with_both_figures(titles_db, how):
    with db.connection(titles_db) as conn:
        with pytest.raises(
            ProdmatchError, match=r"shop -> rival .*would need about .* budget of 1\.0 MiB"
        ) as e:
            link(conn, "shop", "rival", memory_budget_bytes=TINY, **LINKS[how])
        assert "in parts" in str(e.value) and "PRODMATCH_MEMORY_BUDGET" in str(e.value)
        assert _runs(titles_db) == 0  # refused before anything was written
        fits = link(conn, "shop", "rival", memory_budget_bytes=2**40, **LINKS[how])
    assert fits.memory_estimate > TINY and fits.pairs >= 60
    assert fits.mode == ("exact" if how == "lexical" else "hybrid")
    assert fits.matched_sources >= 50  # the reworded copies are found


def test_matcher_dedupe_that_does_not_fit_is_refused(titles_db):
    with db.connection(titles_db) as conn:
        with pytest.raises(ProdmatchError, match=r"dedupe of shop with matcher builtin would need about"):
            dedupe(conn, "shop", matcher="builtin", memory_budget_bytes=TINY)
        fits = dedupe(conn, "shop", matcher="builtin", memory_budget_bytes=2**40)
    assert fits.memory_estimate > TINY and _runs(titles_db) == 1


@pytest.mark.parametrize("how", ["lexical", "builtin"])
def test_cli_shows_a_link_that_does_not_fit_as_an_error(titles_db, how):
    args = ["link", "--source", "shop", "--target", "rival"] + (
        ["--space", "lexical"] if how == "lexical" else []
    )
    result = _invoke(titles_db, *args, budget="1MiB")
    assert result.exit_code == 1, result.output
    error = result.output.splitlines()[-1]  # after the lexical refresh's progress bar
    assert error.startswith("Error: link shop -> rival") and "would need about" in error
    assert "1.0 MiB (PRODMATCH_MEMORY_BUDGET)" in error and "Traceback" not in result.output
    assert _runs(titles_db) == 0


def test_estimates_grow_with_the_catalogues_and_read_the_stored_lexical_sizes(titles_db):
    with db.connection(titles_db) as conn:
        link(conn, "shop", "rival", space="lexical", memory_budget_bytes=2**40)  # refreshes the lexical rows
        ids = dict(conn.execute("SELECT name, id FROM prodmatch.catalogs").fetchall())
        sizes = catalog_sizes(conn, (ids["shop"], ids["rival"]))
        terms = conn.execute(
            "SELECT sum(array_length(string_to_array(split_part(split_part(vector::text, '}', 1), '{', 2), ','), 1))"
            " FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id WHERE p.catalog_id = %s",
            (ids["shop"],),
        ).fetchone()[0]
    shop = sizes[ids["shop"]]
    assert shop.products == 60 and terms <= shop.lexical_nonzeros <= terms + 60 * 2  # header bytes / 8 a row
    bigger = CatalogSize(shop.products * 100, shop.lexical_nonzeros * 100, shop.row_bytes * 100)
    small, large = lexical_link_peak_bytes(shop, shop, 5), lexical_link_peak_bytes(bigger, bigger, 5)
    assert large - small > 99 * 2 * 8 * shop.lexical_nonzeros  # at least both sides' CSR rows, 100 times over
    assert matcher_link_peak_bytes(bigger, bigger, None, 10) >= lexical_link_peak_bytes(bigger, bigger, 10)


def test_watch_that_does_not_fit_is_refused_before_it_reads_the_run(titles_db):
    with db.connection(titles_db) as conn:
        run = link(conn, "shop", "rival", space="lexical", memory_budget_bytes=2**40)
    tight = dataclasses.replace(titles_db, memory_budget=TINY)
    with pytest.raises(
        ProdmatchError, match=rf"link --watch of run {run.run_id} \(shop -> rival\) would need"
    ):
        watch_link(tight, run.run_id, stop=threading.Event(), poll_seconds=0.1)
    stop = threading.Event()
    passes = []
    roomy = dataclasses.replace(titles_db, memory_budget=2**40)
    watch_link(
        roomy,
        run.run_id,
        stop=stop,
        poll_seconds=0.05,
        on_pass=lambda done: (passes.append(done), stop.set()),
    )
    assert len(passes) == 1


# --- dedupe and index check ------------------------------------------------------------------------------------


def test_dedupe_that_does_not_fit_is_refused_before_fetching_anything(vectors_db):
    with db.connection(vectors_db) as conn:
        with pytest.raises(ProdmatchError, match=r"dedupe of shop \(400 products\) would need about"):
            dedupe(conn, "shop", 0.9, memory_budget_bytes=TINY)
        fits = dedupe(conn, "shop", 0.9, memory_budget_bytes=2**40)
    assert fits.products == 400 and fits.memory_estimate > TINY
    # --space fused: the toy model has random weights, which dedupe refuses unless a space is named
    result = _invoke(
        vectors_db, "dedupe", "--catalog", "rival", "--threshold", "0.9", "--space", "fused", budget="1MiB"
    )
    assert result.exit_code == 1 and "would need about" in result.output
    assert _runs(vectors_db) == 1  # only the run that fitted


def test_index_check_holds_only_its_sample_and_finds_the_exact_neighbours(vectors_db):
    with db.connection(vectors_db) as conn:
        with pytest.raises(ProdmatchError, match="index check of 800 products would need about"):
            check_index(conn, sample=20, memory_budget_bytes=TINY)
        report = check_index(conn, sample=20, k=5, ef_values=(400,))
        model = get_model(conn, "clip")
        ids, vectors = fetch_vectors(conn, model, "fused", None)
        streamed = _kth_best(conn, model, "fused", ids[:50], vectors[:50], 5)
    # The streamed pass (a block at a time, each product skipping itself) equals brute force over every vector.
    sims = vectors[:50] @ vectors.T
    sims[np.arange(50), np.arange(50)] = -np.inf
    assert np.allclose(streamed, np.sort(sims, axis=1)[:, -5], atol=1e-6)
    assert report.rows[0]["recall"] == 1.0 and report.sample == 20  # ef_search 400 on 800 products: exact
    # Flat: a catalogue 10,000 times bigger adds only its ids (8 bytes a product), not its vectors.
    bigger = index_check_peak_bytes(800 * 10_000, 20, model, "fused", 5)
    assert bigger - report.memory_estimate == (800 * 10_000 - 800) * 8


# --- the estimate against a measurement ----------------------------------------------------------------------

_MEASURE = r"""
import os, sys, threading, time
import numpy as np
from prodmatch.match.exact import top_k_cosine, top_k_peak_bytes
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
n, d, k = 12000, 256, 10
rng = np.random.default_rng(0)
q = rng.standard_normal((n, d)).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
top_k_cosine(q[:300], q[:300], k)  # torch's thread pools and kernels, before the baseline
peak, done = [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.001)
base = rss()
thread = threading.Thread(target=sample)
thread.start()
top_k_cosine(q, q, k, exclude_self=True)
done.set()
thread.join()
print(peak[0] - base, top_k_peak_bytes(n, n, d, k))
"""


def test_exact_search_estimate_covers_its_measured_peak():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE], env=env, capture_output=True, text=True, check=True
    )
    measured, estimate = map(int, out.stdout.split())
    assert measured > 10 * 2**20  # the search really allocated (score buffer, scan copy)
    assert measured <= estimate <= 2.5 * measured, (measured, estimate)


def test_a_default_link_that_does_not_fit_goes_on_with_the_models_cosine(vectors_db):
    # Asked for nothing in particular, a user gets a link (the model's space, ANN when even exact does not fit)
    # with the reason as a note; naming the built-in matcher insists on it, and is refused.
    with db.connection(vectors_db) as conn:
        result = link(conn, "shop", "rival", memory_budget_bytes=TINY)
        assert result.matcher is None and result.mode == "ann" and result.matched_sources >= 390
        assert "matcher builtin would need about" in result.notes[0] and "cosine instead" in result.notes[0]
        with pytest.raises(ProdmatchError, match="would need about"):
            link(conn, "shop", "rival", matcher="builtin", memory_budget_bytes=TINY)
        with pytest.raises(ProdmatchError, match="would need about"):  # --clustered asks for a matcher too
            link(conn, "shop", "rival", clustered=True, memory_budget_bytes=TINY)
