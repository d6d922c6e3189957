"""A real PgBouncer in front of the test session's embedded PostgreSQL, for the pooler tests.

Imported as a plain module (`import pgbouncer`), like builders.py. `start_pgbouncer` writes a test-only
configuration (127.0.0.1, a free port, `auth_type = trust`, every database forwarded to the embedded server's unix
socket) and runs the Debian `pgbouncer` binary in the foreground; `PgBouncer.stop` ends it. PgBouncer refuses to
run as root, so under root it drops to the embedded server's own system user (`pgserver`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg

BINARY_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable, or None when it is not installed."""
    return shutil.which("pgbouncer") or next((p for p in BINARY_PATHS if os.access(p, os.X_OK)), None)


@dataclass
class PgBouncer:
    process: subprocess.Popen
    port: int
    log: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def warm(self, database: str, backends: int = 3) -> None:
        """Make the pool of `database` hold `backends` server connections (it opens them only under demand), so
        that round-robin has several to hand out."""
        clients = [psycopg.connect(self.url(database)) for _ in range(backends)]
        for client in clients:  # each open transaction holds its own backend
            client.execute("SELECT 1")
        for client in clients:
            client.commit()  # a client that leaves mid-transaction takes its backend with it
            client.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_pgbouncer(
    binary: str, server_url: str, folder: Path, *, pool_mode: str = "transaction"
) -> PgBouncer:
    """Start PgBouncer in `pool_mode` in front of the server at `server_url` (a unix-socket URL); wait until it
    accepts connections."""
    socket_dir = parse_qs(urlsplit(server_url).query)["host"][0]
    server_port = urlsplit(server_url).port or 5432
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.txt").write_text('"postgres" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={socket_dir} port={server_port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\n"
        f"pool_mode = {pool_mode}\n"
        "default_pool_size = 4\n"
        # Hand out the server connections in turn, so that consecutive transactions of one client really land
        # on different backends (the default, LIFO, would hide session state that does not carry over).
        "server_round_robin = 1\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    os.chmod(folder, 0o755)
    for path in (config, folder / "users.txt"):
        os.chmod(path, 0o644)
    log = folder / "pgbouncer.log"
    command = [binary, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "pgserver"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    bouncer = PgBouncer(process, port, log)
    _wait_ready(bouncer)
    return bouncer


def _wait_ready(bouncer: PgBouncer, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if bouncer.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {bouncer.log.read_text()[-2000:]}")
        try:
            with psycopg.connect(bouncer.url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                bouncer.stop()
                raise RuntimeError(
                    f"pgbouncer did not accept connections: {bouncer.log.read_text()[-2000:]}"
                ) from None
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
