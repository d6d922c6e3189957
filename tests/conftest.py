"""Shared fixtures. Database fixtures live in db_fixtures.py (one embedded server per session)."""

from db_fixtures import (  # noqa: F401  (fixtures are found by name)
    conn,
    empty_settings,
    pg_server,
    settings,
    template_url,
)
