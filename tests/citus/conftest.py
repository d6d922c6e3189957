"""Citus fixtures: one local cluster (a coordinator and two workers on 127.0.0.1) per test session, and a fresh
database on it per test.

Citus is built from ../shared/vendor/citus-14.0.1.tar.gz into a cached copy of the embedded server's PostgreSQL
(`prodmatch.store.citus_local`); a clone without that tarball, or a machine without a C compiler, skips these
tests with a one-line reason.
"""

from __future__ import annotations

import itertools
import os

import pytest

from prodmatch.config import Settings
from prodmatch.store import citus_local

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
