"""Faults and growth on a Citus cluster: a worker node stopped in the middle of an embedding run, and a third
worker added with the shards rebalanced onto it while an `embed --watch` worker runs. Its own cluster (module
scope), so that stopping and adding nodes does not touch the other Citus tests."""

from __future__ import annotations

import threading
import time

import pytest
from builders import WORDS, product_image, write_items

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.ingest.load import ingest_file
from prodmatch.match import queries
from prodmatch.store import distribute


@pytest.fixture(scope="module")
def cluster(start_citus_cluster):
    """A cluster of this module's own: its tests stop a node and add one."""
    started = start_citus_cluster()
    yield started
    started.stop()


def _catalogue(settings: Settings, tmp_path, clip_dir, name: str, n: int, offset: int = 0) -> None:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    items = []
    for i in range(offset, offset + n):
        product_image(images / f"{i}.png", i * 7 + 3, fmt="PNG")
        items.append((f"{name}-{i}", f"{WORDS[i % 12]} model {i}", f"{i}.png", 100 + i))
    with db.connection(settings) as conn:
        if not conn.execute("SELECT 1 FROM prodmatch.models").fetchone():
            add_model(conn, str(clip_dir), name="clip", precision="fp32")
        ingest_file(conn, write_items(tmp_path, f"{name}{offset}", items), name)


def _statuses(settings: Settings) -> dict[str, int]:
    with db.connection(settings) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM prodmatch.embeddings GROUP BY 1"))


def test_embedding_resumes_when_a_stopped_worker_node_returns(cluster, tiny_clip_dir, tmp_path):
    settings = Settings(database_url=cluster.create_database("faults_stop"), home=tmp_path / "home")
    db.upgrade(settings)
    _catalogue(settings, tmp_path, tiny_clip_dir, "shop", 60)
    node = cluster.workers[1]
    result: dict = {}
    options = EmbedOptions(batch_size=4, retry_backoff=0.5, db_retries=8)

    def run() -> None:
        try:
            result["summaries"] = embed(settings, options)
        except Exception as error:  # reported by the assertion below
            result["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not _statuses(settings).get("done") and time.monotonic() < deadline:
        time.sleep(0.05)
    done_before_stop = _statuses(settings).get("done", 0)
    cluster.stop_node(node)  # mid-run: the worker's next claim or write cannot reach half the shards
    try:
        time.sleep(3)
    finally:
        cluster.restart_node(node)
    worker.join(timeout=120)
    assert done_before_stop < 60  # the node was stopped with work left
    assert not worker.is_alive() and "error" not in result, result.get("error")
    assert _statuses(settings) == {"done": 60}
    with db.connection(settings) as conn:
        held = conn.execute(
            "SELECT count(*) FROM prodmatch.embeddings WHERE claimed_pid IS NOT NULL"
        ).fetchone()
        assert held == (0,)


def test_embedding_started_while_a_worker_node_is_down_waits_for_it(cluster, tiny_clip_dir, tmp_path):
    settings = Settings(database_url=cluster.create_database("faults_start"), home=tmp_path / "home")
    db.upgrade(settings)
    _catalogue(settings, tmp_path, tiny_clip_dir, "shop", 12)
    node = cluster.workers[0]
    result: dict = {}

    def run() -> None:
        try:
            result["summaries"] = embed(settings, EmbedOptions(batch_size=4, retry_backoff=0.5, db_retries=8))
        except Exception as error:  # reported by the assertion below
            result["error"] = error

    cluster.stop_node(node)  # before the start: the worker's first count of the queue cannot reach its shards
    try:
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(3)
        still_waiting = worker.is_alive()
    finally:
        cluster.restart_node(node)
    worker.join(timeout=120)
    assert still_waiting and "error" not in result, result.get("error")
    assert not worker.is_alive()
    assert _statuses(settings) == {"done": 12}
    assert [s.embedded for s in result["summaries"]] == [12]


def test_a_third_worker_and_a_rebalance_lose_nothing(cluster, tiny_clip_dir, tmp_path):
    settings = Settings(database_url=cluster.create_database("faults_grow"), home=tmp_path / "home")
    db.upgrade(settings)
    _catalogue(settings, tmp_path, tiny_clip_dir, "shop", 24)
    embed(settings, EmbedOptions(batch_size=8))
    with db.connection(settings) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM prodmatch.products ORDER BY id LIMIT 5")]
        before = {
            i: [(h.external_id, round(h.fused_similarity, 4)) for h in queries.similar(conn, i, k=5)]
            for i in ids
        }
    stop = threading.Event()
    watcher = threading.Thread(
        target=embed,
        args=(settings, EmbedOptions(batch_size=4, watch=True, watch_poll_seconds=0.5)),
        kwargs={"stop": stop},
    )
    watcher.start()
    try:
        _catalogue(settings, tmp_path, tiny_clip_dir, "shop", 16, offset=24)  # new work while shards move
        cluster.add_worker(["faults_grow"])
        db.upgrade(settings)  # the new worker gets the HNSW defaults
        with db.connection(settings, autocommit=True) as conn:
            conn.execute("SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')")
            conn.execute("SELECT citus_rebalance_wait()")
            shards = [p.shards for p in distribute.placements(conn)]
        deadline = time.monotonic() + 60
        while _statuses(settings) != {"done": 40} and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop.set()
        watcher.join(timeout=60)
    # 4 co-located shard groups (4 tables each) over 3 workers: every worker holds at least one group
    assert len(shards) == 3 and sum(shards) == 16 and min(shards) >= 4
    assert _statuses(settings) == {"done": 40}
    with db.connection(settings) as conn:
        after = {
            i: [(h.external_id, round(h.fused_similarity, 4)) for h in queries.similar(conn, i, k=5)]
            for i in ids
        }
        for (
            i
        ) in ids:  # the new products may now be nearer; the old ones keep their order and scores among them
            old = [hit for hit in after[i] if int(hit[0].split("-")[1]) < 24]
            assert old == before[i][: len(old)]
