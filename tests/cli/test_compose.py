"""docker-compose.yml: no Docker engine runs here, so check what can be checked: it parses, it names a pgvector
image, and its commands and settings are the ones the code reads."""

from __future__ import annotations

import click
import yaml
from builders import REPO

from prodmatch import config
from prodmatch.cli import main

COMPOSE = REPO / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def resolve(argv: list[str]) -> click.Command:
    """The Click command an argv names, checking that every --option exists on it."""
    assert argv[0] == "prodmatch"
    command: click.Command = main
    args = argv[1:]
    while isinstance(command, click.Group) and args and args[0] in command.commands:
        command, args = command.commands[args[0]], args[1:]
    options = {opt for p in command.params for opt in p.opts}
    for arg in args:
        if arg.startswith("--"):
            assert arg in options, f"{' '.join(argv)}: {arg} is not an option of {command.name}"
    return command


def test_compose_has_a_healthy_pgvector_database():
    db = load()["services"]["db"]
    assert "pgvector" in db["image"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])


def test_migrate_and_worker_run_real_commands_after_the_database():
    services = load()["services"]
    migrate, worker = services["migrate"], services["worker"]
    assert resolve(migrate["command"]).name == "upgrade"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    embed = resolve(worker["command"])
    assert embed.name == "embed" and "--watch" in worker["command"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["stop_signal"] == "SIGTERM"  # the worker releases its claims on SIGTERM


def test_services_use_the_settings_the_app_reads():
    compose = load()
    services, db = compose["services"], compose["services"]["db"]["environment"]
    for name in ("migrate", "worker", "cli"):
        env = services[name]["environment"]
        assert {config.ENV_DATABASE_URL, config.ENV_HOME, config.ENV_MODEL, config.ENV_PRECISION} <= set(env)
        url = env[config.ENV_DATABASE_URL]
        assert url.startswith("postgresql://") and "@db:5432/" in url
        assert url.endswith("/" + db["POSTGRES_DB"]) and f"//{db['POSTGRES_USER']}:" in url
        settings = config.load_settings(environ={k: str(v) for k, v in env.items()})
        assert settings.database_url == url and str(settings.home) == "/data"
    assert "prodmatch" in services["migrate"]["build"]["dockerfile_inline"]
