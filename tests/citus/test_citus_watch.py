"""`link --watch` on the Citus cluster: an offer an application inserts through the coordinator shows up in
`prodmatch.matches_v`, for the default run (the built-in matcher) and for a run on the image vectors. On Citus the
vectors' NOTIFY (`embeddings_written`) is gone, so the cosine watcher sees the written vectors at its poll."""

from __future__ import annotations

import threading
import time

from builders import insert_shop_copy_as_competitor

from prodmatch import match
from prodmatch import store as db
from prodmatch.demo.catalogues import generate
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.ingest.load import ingest_file
from prodmatch.match.watch import watch_link


def _watch(settings, run_id: int, stop: threading.Event, errors: list) -> threading.Thread:
    def run() -> None:
        try:
            watch_link(settings, run_id, stop=stop, poll_seconds=0.5)
        except BaseException as error:  # reported by the test
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for_rank(conn, run_id: int, source: str, errors: list, seconds: float = 60.0) -> int | None:
    """The rank of (source, app-new) in the run once a watcher stored it (None after `seconds` or an error)."""
    started, rank = time.monotonic(), None
    while rank is None and time.monotonic() - started < seconds and not errors:
        time.sleep(0.5)
        rank = _rank_of(conn, run_id, source, "app-new")
    return rank


def _rank_of(conn, run_id: int, source: str, target: str) -> int | None:
    """The rank of the pair in the watched run (the run id changes if the run is replaced: follow its kind)."""
    row = conn.execute(
        "SELECT rank FROM prodmatch.matches_v WHERE run_id = %s AND source_external_id = %s"
        " AND target_external_id = %s",
        (run_id, source, target),
    ).fetchone()
    conn.commit()
    return None if row is None else row[0]


def test_a_new_offer_inserted_through_the_coordinator_reaches_matches_v(
    citus_settings, tiny_clip_dir, tmp_path
):
    files = generate(tmp_path / "demo", 30, seed=5, image_size=32)
    db.upgrade(citus_settings)
    with db.connection(citus_settings) as conn:
        add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
        ingest_file(conn, files.shop, "shop")
        ingest_file(conn, files.competitor, "competitor")
        conn.commit()
    embed(citus_settings, EmbedOptions(batch_size=16))
    with db.connection(citus_settings) as conn:
        builtin = match.link(conn, "shop", "competitor", k=3)  # the default: the built-in matcher
        image = match.link(conn, "shop", "competitor", k=3, space="image", mode="exact", threshold=0.5)
        source = conn.execute(
            "SELECT p.external_id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
            " WHERE c.name = 'shop' AND p.image IS NOT NULL ORDER BY p.id LIMIT 1"
        ).fetchone()[0]
        conn.commit()
    stop, errors = threading.Event(), []
    watchers = [_watch(citus_settings, run.run_id, stop, errors) for run in (builtin, image)]
    try:
        time.sleep(2)  # the watchers' first pass: their state and checkpoint before the insert
        with db.connection(citus_settings) as conn:
            catalogs = dict(conn.execute("SELECT name, id FROM prodmatch.catalogs"))
            insert_shop_copy_as_competitor(conn, catalogs, source)
            conn.commit()
            pending = conn.execute(
                "SELECT count(*) FROM prodmatch.embeddings e JOIN prodmatch.products p ON p.id = e.product_id"
                " WHERE p.external_id = 'app-new' AND e.status = 'pending'"
            ).fetchone()[0]
            conn.commit()
            assert pending == 1  # queued at commit by the Citus triggers
            lexical_rank = _wait_for_rank(conn, builtin.run_id, source, errors)
            assert not errors, errors
            assert lexical_rank == 1, f"the built-in run has no pair ({source}, app-new) after 60 s"
            embedded = embed(citus_settings, EmbedOptions(batch_size=16))
            assert sum(s.embedded for s in embedded) == 1
            image_rank = _wait_for_rank(conn, image.run_id, source, errors)
            assert not errors, errors
            assert image_rank == 1, f"the image run has no pair ({source}, app-new) after 60 s"
    finally:
        stop.set()
        for thread in watchers:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in watchers)
