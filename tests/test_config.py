"""Settings: flags, then PRODMATCH_* environment variables, then defaults (prodmatch.config)."""

from __future__ import annotations

from pathlib import Path

from prodmatch.config import load_settings


def test_settings_precedence():
    env = {"PRODMATCH_DATABASE_URL": "postgresql://env/db", "PRODMATCH_HOME": "/env/home"}
    assert load_settings(environ=env).database_url == "postgresql://env/db"
    assert load_settings(environ=env).home == Path("/env/home")
    flags = load_settings(database_url="postgresql://flag/db", environ=env)
    assert flags.database_url == "postgresql://flag/db"
    assert load_settings(environ={}).embedded
