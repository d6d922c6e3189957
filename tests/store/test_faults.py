"""Faults lose nothing: the database restarted in the middle of an ingest or a link, two identical links at once,
and an application's product INSERT (with a lock_timeout) while a link computes and while it stores its run.

The restarts use a server of this module's own (tests/faultdb.py), never the session's. Links are held at a
chosen point by wrapping one of their steps (the computation still runs on the real database's vectors).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from builders import products_with_vectors
from click.testing import CliRunner
from faultdb import RestartableServer, settings_for

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.registry import add_model
from prodmatch.ingest.load import ingest_file
from prodmatch.match.link import link

link_module = importlib.import_module("prodmatch.match.link")  # the package re-exports link()
ROWS = 200_000  # an ingest of this many rows lasts long enough (seconds) for a restart to land inside it


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    restartable = RestartableServer(tmp_path_factory.mktemp("faults-store"))
    yield restartable
    restartable.stop()


@pytest.fixture
def fsettings(server, tmp_path):
    return settings_for(server, tmp_path)


@pytest.fixture
def catalogues(fsettings, tiny_clip_dir):
    """shop and rival, 300 products each with known vectors (rival-i is shop-i slightly moved)."""
    rng = np.random.default_rng(7)
    shop = rng.normal(size=(300, 32)).astype(np.float32)
    rival = shop + 0.05 * rng.normal(size=shop.shape).astype(np.float32)
    shop /= np.linalg.norm(shop, axis=1, keepdims=True)
    rival /= np.linalg.norm(rival, axis=1, keepdims=True)
    with db.connection(fsettings) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
        products_with_vectors(conn, model.id, "shop", shop, ["Home"] * 300)
        products_with_vectors(conn, model.id, "rival", rival, ["Home"] * 300)
    return model


def _env(settings) -> dict:
    return {
        **os.environ,
        "PRODMATCH_DATABASE_URL": settings.database_url,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }


def _count(settings, query: str, params: tuple = ()) -> int:
    with db.connection(settings) as conn:
        return conn.execute(query, params).fetchone()[0]


def _runs(settings) -> list[tuple]:
    with db.connection(settings) as conn:
        return conn.execute(
            "SELECT r.id, r.kind, count(m.*) FROM prodmatch.match_runs r"
            " LEFT JOIN prodmatch.matches m ON m.run_id = r.id GROUP BY r.id ORDER BY r.id"
        ).fetchall()


def _wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _big_csv(path: Path, rows: int) -> Path:
    with path.open("w") as f:
        f.write("external_id,title,brand,price\n")
        f.writelines(
            f"SKU-{i},Running shoe model {i} in red,Brand{i % 50},{i % 997}.99\n" for i in range(rows)
        )
    return path


def _hold(monkeypatch, name: str, *events: threading.Event | threading.Barrier) -> threading.Event:
    """Wrap link's step `name`: after it ran, signal `reached` and wait for each of `events` in turn."""
    reached = threading.Event()
    step = getattr(link_module, name)

    def held(*args, **kwargs):
        result = step(*args, **kwargs)
        reached.set()
        for event in events:
            event.wait(60)
        return result

    monkeypatch.setattr(link_module, name, held)
    return reached


# --- ingest ----------------------------------------------------------------------------------------------------


def test_ingest_interrupted_by_a_restart_loads_nothing_then_a_rerun_loads_it_all(server, fsettings, tmp_path):
    big = _big_csv(tmp_path / "big.csv", ROWS)
    ingest = subprocess.Popen(
        [sys.executable, "-m", "prodmatch.cli", "ingest", str(big), "--catalog", "shop", "--json"],
        env=_env(fsettings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Restart while the file is being copied in (COPY progress is visible to other sessions).
        _wait_for(lambda: _count(fsettings, "SELECT count(*) FROM pg_stat_progress_copy") > 0)
        server.restart()
        out, err = ingest.communicate(timeout=120)
    finally:
        if ingest.poll() is None:
            ingest.kill()
    assert ingest.returncode == 1, (out, err)
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.strip()]
    assert len(message) == 1 and message[0].startswith("Error: lost the database connection"), err
    # All or nothing: no product, no catalogue row left behind by the interrupted transaction.
    assert _count(fsettings, "SELECT count(*) FROM prodmatch.products") == 0
    assert _count(fsettings, "SELECT count(*) FROM prodmatch.ingest_runs") == 0
    with db.connection(fsettings) as conn:
        result = ingest_file(conn, big, "shop")
    assert (result.inserted, result.rejected) == (ROWS, 0)
    assert _count(fsettings, "SELECT count(*) FROM prodmatch.products") == ROWS


# --- link ------------------------------------------------------------------------------------------------------


def test_link_interrupted_by_a_restart_stores_nothing_and_a_rerun_works(
    server, fsettings, catalogues, monkeypatch
):
    restarted = threading.Event()
    computed = _hold(monkeypatch, "exact_candidates", restarted)

    def restart_when_computed() -> None:
        computed.wait(60)
        server.restart()
        restarted.set()

    restarter = threading.Thread(target=restart_when_computed, daemon=True)
    restarter.start()
    runner = CliRunner()
    env = {"PRODMATCH_DATABASE_URL": fsettings.database_url}
    command = ["link", "--source", "shop", "--target", "rival", "--mode", "exact", "--json"]
    result = runner.invoke(main, command, env=env)
    restarter.join(60)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: lost the database connection"), result.output
    assert _runs(fsettings) == []  # nothing half-written
    monkeypatch.undo()
    rerun = runner.invoke(main, command, env=env)
    assert rerun.exit_code == 0, rerun.output
    assert [(kind, pairs) for _, kind, pairs in _runs(fsettings)] == [("link", 300 * 5)]


def test_two_identical_links_at_once_both_finish_and_one_run_is_left(fsettings, catalogues, monkeypatch):
    both_computed = threading.Barrier(2, timeout=60)
    _hold(monkeypatch, "exact_candidates", both_computed)  # both hold their pairs before either stores
    results, errors = [], []

    def run() -> None:
        try:
            with db.connection(fsettings) as conn:
                results.append(link(conn, "shop", "rival", mode="exact", k=3))
        except BaseException as error:  # the test asserts there was none
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(results) == 2 and results[0].run_id != results[1].run_id
    runs = _runs(fsettings)
    assert len(runs) == 1 and runs[0][0] == max(r.run_id for r in results)  # the later one replaced the first
    assert runs[0][2] == 300 * 3


@pytest.mark.parametrize("step", ["exact_candidates", "store_pairs"])
def test_application_insert_with_lock_timeout_succeeds_while_a_link_runs(
    fsettings, catalogues, monkeypatch, step
):
    """Held after computing (no transaction open) or inside the short transaction that stores the run."""
    release = threading.Event()
    reached = _hold(monkeypatch, step, release)
    errors = []

    def run() -> None:
        try:
            with db.connection(fsettings) as conn:
                link(conn, "shop", "rival", mode="exact")
        except BaseException as error:  # the test asserts there was none
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert reached.wait(60)
        with psycopg.connect(fsettings.database_url, autocommit=True) as app:
            app.execute("SET lock_timeout = '1s'")
            for catalog in ("shop", "rival"):
                app.execute(
                    "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
                    " SELECT id, 'APP-1', 'Kettle' FROM prodmatch.catalogs WHERE name = %s",
                    (catalog,),
                )
            found = app.execute(
                "SELECT count(*) FROM prodmatch.products WHERE external_id = 'APP-1'"
            ).fetchone()[0]
    finally:
        release.set()
        thread.join(60)
    assert found == 2
    assert not errors, errors
    assert len(_runs(fsettings)) == 1
