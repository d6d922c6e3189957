"""Memory is predictable: exact link, dedupe and index check estimate their peak, compare it with the machine's
budget (cgroup limit, MemAvailable, or PRODMATCH_MEMORY_BUDGET), and switch to ANN or refuse with a message
instead of being killed; the estimate is at least the measured peak; index check holds only its sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
from prodmatch.match.memory import index_check_peak_bytes
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
