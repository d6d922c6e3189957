"""Alembic environment: migrations run inside the `prodmatch` schema, version table included.

`prodmatch db upgrade` passes its own connection in `config.attributes["connection"]`; plain `alembic upgrade
head` from the repository root connects to the same database prodmatch would (see prodmatch.config).
"""

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from prodmatch.store.schema import SCHEMA, metadata


def run_migrations(connection) -> None:
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
        include_name=lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    from prodmatch import store as db
    from prodmatch.config import load_settings

    url = db.database_url(load_settings())
    engine = create_engine(db.sqlalchemy_url(url), poolclass=NullPool)
    with engine.begin() as connection:
        db.ensure_pgvector(connection.connection.driver_connection, url)
        run_migrations(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("prodmatch migrations run online only: use `prodmatch db upgrade`")
run_online()
