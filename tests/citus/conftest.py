"""Citus fixtures: one local cluster (a coordinator and two workers on 127.0.0.1) per test session, and a fresh
database on it per test.

Citus is built from ../shared/vendor/citus-14.0.1.tar.gz into a cached copy of the embedded server's PostgreSQL
(`prodmatch.store.citus_local`); a clone without that tarball, or a machine without a C compiler, skips these
tests with a one-line reason.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np
import pytest

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.store import citus_local
from prodmatch.store.models import create_indexes, get_model

_counter = itertools.count()


@pytest.fixture(scope="session")
def start_citus_cluster():
    """Starts a fresh local Citus cluster (coordinator + 2 workers, 4 shards per distributed table) when
    called, skipping where Citus cannot run here; the caller stops it."""
    reason = citus_local.missing_reason()
    if reason:
        pytest.skip(reason)
    if os.environ.get("PGSERVER_POSTGRES_VERSION", "18") != "18":
        pytest.skip("Citus tests run on the embedded PostgreSQL 18 only (CI's second pass is PostgreSQL 16)")
    return lambda: citus_local.LocalCluster.start(workers=2, shard_count=4)


@pytest.fixture(scope="session")
def citus_cluster(start_citus_cluster):
    """A running local Citus cluster shared by the session's Citus tests."""
    cluster = start_citus_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def citus_settings(citus_cluster, tmp_path):
    """Settings pointing at a fresh database on the cluster's coordinator (citus and vector in it, no schema)."""
    name = f"citus_{next(_counter)}"
    url = citus_cluster.create_database(name)
    yield Settings(database_url=url, home=tmp_path / "home")
    citus_cluster.drop_database(name)


VECTORS_SHOP, VECTORS_RIVAL, DIMENSION = 3000, 40, 48


@dataclass(frozen=True)
class VectorWorld:
    """A cluster database with `shop` products 0..shop-1 and `rival` ones after, and their vectors."""

    settings: Settings
    ids: np.ndarray  # product ids in the order of `vectors`
    vectors: np.ndarray
    shop: int


@pytest.fixture
def vectors_on_cluster(citus_settings):
    """shop and rival products with random vectors (hard for HNSW: no clusters), indexed, and their vectors."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((VECTORS_SHOP + VECTORS_RIVAL, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    db.upgrade(citus_settings)
    with db.connection(citus_settings) as conn:
        conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop'), ('rival')")
        conn.execute(
            "INSERT INTO prodmatch.models (name, source, family, dimension, fused_dimension, text_template, storage)"
            " VALUES ('random', 'random', 'clip', %s, %s, '{title}', 'halfvec')",
            (DIMENSION, DIMENSION),
        )
        with conn.cursor().copy(
            "COPY prodmatch.products (catalog_id, external_id, title) FROM STDIN"
        ) as copy:
            for i in range(len(vectors)):
                copy.write_row((1 if i < VECTORS_SHOP else 2, f"p-{i}", f"item {i}"))
        conn.commit()  # the embeddings rows are written at commit on Citus
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM prodmatch.products ORDER BY id")])
        conn.execute("CREATE TEMP TABLE random_vectors (product_id bigint, v halfvec)")
        with conn.cursor().copy("COPY random_vectors FROM STDIN") as copy:
            for pid, v in zip(ids, vectors, strict=True):
                copy.write_row((int(pid), "[" + ",".join(f"{x:.5f}" for x in v) + "]"))
        conn.execute(
            "UPDATE prodmatch.embeddings e SET fused_half = r.v, image_half = r.v, text_half = r.v,"
            " status = 'done', embedded_at = now() FROM random_vectors r WHERE e.product_id = r.product_id"
        )
        conn.commit()
        model = get_model(conn, "random")
    with db.connection(citus_settings, autocommit=True) as conn:
        create_indexes(conn, model)
    return VectorWorld(citus_settings, ids, vectors, VECTORS_SHOP)
