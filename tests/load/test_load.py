"""Under load and at the limit: benchmarks/load.py's library functions, run for seconds with a few clients.

A short load run (analysts' queries, an application's inserts and updates, `embed --watch`, `link --watch` and
the review app at once) must lose nothing and raise no error. At the limit, on a server of its own whose
max_connections is small: the extra clients get prodmatch's one-line "too many connections" error, the CLI
exits with it (no traceback), and the watchers wait out a time with no free slot (an embed watcher started then,
a link watcher whose connections were cut then) and embed and link the products inserted meanwhile once slots
free up.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import psycopg
import pytest
from faultdb import RestartableServer

from prodmatch.errors import DatabaseError, DatabaseUnavailable, TooManyConnectionsError
from prodmatch.store.server import connect_error


def _benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"
    spec = importlib.util.spec_from_file_location("load_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


load = _benchmark()


def test_a_short_load_run_loses_nothing_and_raises_no_error(settings, tmp_path):
    options = load.LoadOptions(
        seconds=4, clients=4, products=40, inserts_per_second=3, updates_per_second=2, drain_seconds=90
    )
    report = load.run_load(settings, options, tmp_path)
    assert report.inserted >= 5
    assert report.lost == []
    assert report.errors == {}
    for kind in (*load.QUERY_KINDS, "review /label", "review /browse", "application INSERT"):
        assert report.queries[kind]["count"] > 0, kind
    # every inserted product's pairs were computed with its vectors, by a pass that followed them
    assert report.embed_lag["n"] == report.pair_lag["n"] == report.inserted
    assert report.watchers["embed"]["exit"] == 0
    assert report.watchers["link"]["exit"] == 0
    assert all(w["tracebacks"] == 0 for w in report.watchers.values())


@pytest.fixture
def small_server(tmp_path):
    """A server of its own with max_connections 10."""
    server = RestartableServer(tmp_path / "server")
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_connections = 10")
    server.restart()
    yield server
    server.stop()


def test_more_clients_than_max_connections_get_a_clear_error_and_the_watchers_wait(small_server, tmp_path):
    report = load.run_limit(small_server.new_database(), tmp_path, extra=3, products=30)
    assert report.max_connections == 10
    assert report.refused == 3
    (message,) = report.refusals
    assert message.startswith("too many connections: the server at ")
    assert "sorry, too many clients already" in message and "max_connections" in message
    assert "PgBouncer" in message and "***" not in message.split("server at ")[0]
    assert report.cli_exit == 1
    assert report.cli_error.startswith("Error: too many connections")
    assert report.retry_lines["embed"] >= 1 and report.retry_lines["link"] >= 1
    assert report.embedded_after_release_s is not None
    assert report.linked_after_release_s is not None
    assert sorted(report.watchers_alive) == ["embed", "link"]
    for watcher in report.watchers.values():
        assert watcher["exit"] == 0 and watcher["tracebacks"] == 0


@pytest.mark.parametrize(
    ("server_says", "kind"),
    [
        ("FATAL:  sorry, too many clients already", TooManyConnectionsError),
        (
            "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute",
            TooManyConnectionsError,
        ),
        ("Connection refused\n\tIs the server running on that host?", DatabaseUnavailable),
        ("FATAL:  the database system is starting up", DatabaseUnavailable),
        ('FATAL:  password authentication failed for user "app"', DatabaseError),
    ],
)
def test_connection_errors_say_whether_waiting_helps(server_says, kind):
    url = "postgresql://app:s3cret-pw@db.example:5432/shop"
    error = connect_error(
        url, psycopg.OperationalError(f"connection failed: connection to server failed: {server_says}")
    )
    assert type(error) is kind
    assert "s3cret-pw" not in str(error) and "app:***@db.example" in str(error)
    if kind is TooManyConnectionsError:
        assert str(error).startswith("too many connections: ") and "\n" not in str(error)
