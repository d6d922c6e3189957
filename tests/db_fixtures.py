"""Database fixtures: one embedded PostgreSQL per test session, a fresh migrated database per test.

The schema is created once by the real migrations into a template database; every test gets its own copy
(CREATE DATABASE ... TEMPLATE is a file copy, ~0.1 s), so tests cannot leak into each other.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import psycopg
import pytest

from prodmatch import store as db
from prodmatch.config import Settings

TEMPLATE = "prodmatch_template"
_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name`."""
    return re.sub(r"(://[^/?]*/)[^?]*", lambda m: m.group(1) + name, url, count=1)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> str:
    """URL of the session's embedded server (its `postgres` database)."""
    home = tmp_path_factory.mktemp("pghome")
    return db.database_url(Settings(home=home))


@pytest.fixture(scope="session")
def template_url(pg_server: str, tmp_path_factory) -> str:
    """A database migrated to head, used as the template for each test's database."""
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = with_database(pg_server, TEMPLATE)
    db.upgrade(Settings(database_url=url, home=tmp_path_factory.mktemp("home")))
    return url


def create_database(pg_server: str, name: str, template: str | None = TEMPLATE) -> str:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if template:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        else:
            conn.execute(f"CREATE DATABASE {name}")
    return with_database(pg_server, name)


def drop_database(pg_server: str, name: str) -> None:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(pg_server: str, template_url: str, tmp_path: Path):
    """Settings pointing at a fresh database with the schema at head."""
    name = f"test_{next(_counter)}"
    url = create_database(pg_server, name)
    yield Settings(database_url=url, home=tmp_path / "home")
    drop_database(pg_server, name)


@pytest.fixture
def empty_settings(pg_server: str, tmp_path: Path):
    """Settings pointing at a fresh database with no schema at all."""
    name = f"empty_{next(_counter)}"
    url = create_database(pg_server, name, template=None)
    yield Settings(database_url=url, home=tmp_path / "home")
    drop_database(pg_server, name)


@pytest.fixture
def conn(settings: Settings):
    """An open connection to the test's database."""
    with db.connection(settings) as connection:
        yield connection
