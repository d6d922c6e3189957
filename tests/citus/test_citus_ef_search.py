"""A call's `ef_search` is in force where the HNSW scans run, on the workers: `similar()` and `search()` pass a
SET LOCAL on to the workers' transactions (in a transaction block and in autocommit), `candidates()` sends it with
each shard call, whose k nearest per shard the coordinator merges into the exact search's top k."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from prodmatch import store as db


def test_candidates_sends_the_setting_with_each_shard_call(vectors_on_cluster):
    world = vectors_on_cluster
    settings, ids = world.settings, world.ids
    with db.connection(settings) as conn:
        rows = conn.execute(
            "SELECT source_product_id, target_product_id, rank FROM prodmatch.candidates('rival', 'shop', k => 10,"
            " ef_search => 40)"
        ).fetchall()
        conn.commit()
        # the coordinator does not scan: only a worker, applying the call's value, can refuse it
        with pytest.raises(psycopg.errors.RaiseException, match=r"Citus worker .*hnsw\.ef_search"):
            conn.execute("SELECT * FROM prodmatch.candidates('rival', 'shop', k => 10, ef_search => 5000)")
    position = {int(pid): i for i, pid in enumerate(ids)}
    found: dict[int, list[int]] = {}
    for source, target, rank in rows:
        found.setdefault(source, []).append(target)
        assert rank == len(found[source])
    assert len(found) == len(ids) - world.shop and all(len(t) == 10 for t in found.values())
    recall = np.mean([len(set(t) & _exact_top(world, position[s], 10)) / 10 for s, t in found.items()])
    assert recall >= 0.95


def _exact_top(world, query: int, k: int) -> set[int]:
    """The k shop products nearest to product `query` (its position), by exact cosine."""
    sims = world.vectors[: world.shop] @ world.vectors[query]
    return set(world.ids[np.argsort(-sims)[:k]].tolist())


@pytest.mark.parametrize("autocommit", [False, True])
def test_similar_and_search_send_the_setting_with_the_workers_transactions(vectors_on_cluster, autocommit):
    settings, ids = vectors_on_cluster.settings, vectors_on_cluster.ids
    sent: list[str] = []
    with psycopg.connect(settings.database_url, autocommit=autocommit) as conn:
        conn.add_notice_handler(lambda notice: sent.append(notice.message_primary))
        conn.execute("SET citus.log_remote_commands = on")
        conn.execute("SET client_min_messages = log")
        conn.execute("SELECT * FROM prodmatch.similar(%s, k => 5, ef_search => 7)", (int(ids[0]),)).fetchall()
        query = conn.execute(
            "SELECT fused_half::vector FROM prodmatch.embeddings WHERE product_id = %s", (int(ids[1]),)
        ).fetchone()[0]
        conn.execute(
            "SELECT * FROM prodmatch.search(%s::vector, k => 5, ef_search => 9)", (query,)
        ).fetchall()
    assert any("SET LOCAL hnsw.ef_search = 7" in m for m in sent), sent[:5]
    assert any("SET LOCAL hnsw.ef_search = 9" in m for m in sent), sent[:5]
