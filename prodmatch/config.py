"""Settings from flags, then environment variables (`PRODMATCH_*`), then defaults — in one frozen dataclass.

Every other module receives a `Settings`; nothing else reads the environment. `db.py` turns the settings into a
database connection (the embedded server when no URL is set).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

ENV_DATABASE_URL = "PRODMATCH_DATABASE_URL"
ENV_HOME = "PRODMATCH_HOME"
ENV_MODEL = "PRODMATCH_MODEL"
ENV_PRECISION = "PRODMATCH_PRECISION"
ENV_REVIEW_TOKEN = "PRODMATCH_REVIEW_TOKEN"

DEFAULT_MODEL = "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class Settings:
    """Where the database is and where prodmatch keeps its files."""

    database_url: str | None = None
    home: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("prodmatch")))
    default_model: str = DEFAULT_MODEL
    precision: str = "auto"
    review_token: str | None = None  # what `prodmatch review` asks for when it listens beyond 127.0.0.1

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
        "review_token": env.get(ENV_REVIEW_TOKEN) or None,
    }
    settings = settings.with_overrides(**from_env)
    return settings.with_overrides(
        database_url=database_url or None, home=Path(home).expanduser() if home else None
    )
