"""`db upgrade` on Citus tries distributing again when Citus cancels it in a distributed deadlock (a worker
writing embeddings while the trigger DDL runs: seen in tests/citus/test_citus_faults.py under load)."""

from __future__ import annotations

import psycopg
import pytest

from prodmatch.errors import DatabaseError
from prodmatch.store import migrate


def _deadlocking(times: int, calls: list):
    def distribute(conn):
        calls.append(conn.info.dbname)
        if len(calls) <= times:
            raise psycopg.errors.DeadlockDetected(
                "canceling the transaction since it was involved in a deadlock"
            )
        return []

    return distribute


def test_a_deadlocked_distribution_is_tried_again(settings, monkeypatch):
    calls, waits = [], []
    monkeypatch.setattr(migrate, "is_citus", lambda conn: True)
    monkeypatch.setattr(migrate, "distribute", _deadlocking(2, calls))
    monkeypatch.setattr(migrate.time, "sleep", waits.append)
    assert migrate.upgrade(settings) == migrate.head_revision()
    assert len(calls) == 3 and waits == [0.5, 1.0]  # two deadlocks, then done; a little later each time


def test_a_distribution_that_keeps_deadlocking_is_a_clear_error(settings, monkeypatch):
    calls = []
    monkeypatch.setattr(migrate, "is_citus", lambda conn: True)
    monkeypatch.setattr(migrate, "distribute", _deadlocking(99, calls))
    monkeypatch.setattr(migrate.time, "sleep", lambda seconds: None)
    with pytest.raises(DatabaseError, match="deadlocked 6 times .* stop the workers"):
        migrate.upgrade(settings)
    assert len(calls) == migrate.DEADLOCK_RETRIES + 1
