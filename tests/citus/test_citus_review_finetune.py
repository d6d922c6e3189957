"""The review app, `finetune` and `link --watch` with a learned matcher through the Citus coordinator: the app shows
a pair of a link run and records, undoes and re-records its label in `prodmatch.labels`; `finetune --labels`
trains on those labels and registers a model whose vectors `embed` writes on the shards; a watcher on a run of a
trained matcher brings an application's new offer into `matches_v`."""

from __future__ import annotations

import json
import re
import threading
import time

from builders import insert_shop_copy_as_competitor
from click.testing import CliRunner
from starlette.testclient import TestClient

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.demo.catalogues import generate
from prodmatch.match.watch import watch_link
from prodmatch.review import ReviewOptions, create_app

LOCAL = "http://127.0.0.1:8000"


def _cli(settings, *args) -> dict:
    result = CliRunner().invoke(
        main, ["--database-url", settings.database_url, "--home", str(settings.home), *args, "--json"]
    )
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout)


def _post(client: TestClient, path: str, data: dict):
    client.get("/label")  # sets the CSRF cookie
    return client.post(path, data={**data, "csrf": client.cookies.get("pm_csrf")}, headers={"origin": LOCAL})


def _labels(conn) -> list:
    rows = conn.execute(
        "SELECT source_product_id, target_product_id, label, labelled_by, is_current FROM prodmatch.labels"
        " ORDER BY id"
    ).fetchall()
    conn.commit()
    return rows


def _review(settings, run_id: int) -> None:
    client = TestClient(
        create_app(settings, ReviewOptions(run_id=run_id, random_share=0.0, user="reviewer")), base_url=LOCAL
    )
    page = client.get("/label")
    assert page.status_code == 200, page.text[-2000:]
    source, target = (
        int(x) for x in re.search(r'data-source="(\d+)" data-target="(\d+)"', page.text).groups()
    )
    assert client.get("/browse").status_code == 200
    with db.connection(settings) as conn:
        before = len(_labels(conn))
        answered = _post(client, "/label", {"label": "non-match", "source": source, "target": target})
        assert answered.status_code in (200, 303), answered.text[-2000:]
        assert _labels(conn)[before:] == [(source, target, "non-match", "reviewer", True)]
        assert _post(client, "/undo", {}).status_code in (200, 303)
        assert len(_labels(conn)) == before
        _post(client, "/label", {"label": "match", "source": source, "target": target})
        assert _labels(conn)[before:] == [(source, target, "match", "reviewer", True)]


def test_review_finetune_and_a_learned_matchers_watch_work_through_the_coordinator(
    citus_settings, tiny_clip_dir, tmp_path
):
    settings = citus_settings
    files = generate(tmp_path / "demo", 30, seed=5, image_size=32)
    db.upgrade(settings)
    _cli(settings, "models", "add", str(tiny_clip_dir), "--name", "clip", "--precision", "fp32")
    _cli(settings, "ingest", str(files.shop), "--catalog", "shop")
    _cli(settings, "ingest", str(files.competitor), "--catalog", "competitor")
    _cli(settings, "embed")
    builtin = _cli(settings, "link", "--source", "shop", "--target", "competitor")
    _review(settings, builtin["run_id"])
    assert _cli(settings, "labels", "import", str(files.gold))["imported"] > 10

    tuned = _cli(
        settings,
        "finetune",
        "--labels",
        "--base",
        "clip",
        "--out",
        str(tmp_path / "clip-ft"),
        "--epochs",
        "1",
    )
    assert tuned["model_name"] == "clip-ft" and tuned["train_pairs"] > 0
    embedded = _cli(settings, "embed", "--model", "clip-ft")
    with db.connection(settings) as conn:
        statuses = conn.execute(
            "SELECT e.status, count(*) FROM prodmatch.embeddings e JOIN prodmatch.models m ON m.id = e.model_id"
            " WHERE m.name = 'clip-ft' GROUP BY 1"
        ).fetchall()
        products = conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0]
    assert statuses == [("done", products)], (statuses, embedded)

    trained = _cli(settings, "matcher", "train", "--labels", "--source", "shop", "--target", "competitor")
    learned = _cli(
        settings, "link", "--source", "shop", "--target", "competitor", "--matcher", trained["name"]
    )
    stop, errors = threading.Event(), []

    def watch() -> None:
        try:
            watch_link(settings, learned["run_id"], stop=stop, poll_seconds=0.5)
        except BaseException as error:  # reported below
            errors.append(error)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        time.sleep(2)  # the watcher's first pass, before the insert
        with db.connection(settings) as conn:
            catalogs = dict(conn.execute("SELECT name, id FROM prodmatch.catalogs"))
            source = conn.execute(
                "SELECT external_id FROM prodmatch.products WHERE catalog_id = %s ORDER BY id LIMIT 1",
                (catalogs["shop"],),
            ).fetchone()[0]
            insert_shop_copy_as_competitor(conn, catalogs, source)
            conn.commit()
            found, started = None, time.monotonic()
            while found is None and time.monotonic() - started < 60 and not errors:
                time.sleep(0.5)
                found = conn.execute(
                    "SELECT rank FROM prodmatch.matches_v WHERE run_id = %s AND source_external_id = %s"
                    " AND target_external_id = 'app-new'",
                    (learned["run_id"], source),
                ).fetchone()
                conn.commit()
        assert not errors, errors
        assert found is not None, f"the learned matcher's run has no pair ({source}, app-new) after 60 s"
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()
