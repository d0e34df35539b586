"""Alembic environment for Vireo's schema.

`storage.db.Database.migrate()` hands over an open connection (already in a
locked transaction) through `config.attributes["connection"]`. From the
command line (`alembic upgrade head`, `alembic revision --autogenerate`) the
URL comes from VIREO_DATABASE_URL or `sqlalchemy.url` in alembic.ini.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

from storage.models import metadata

config = context.config
target_metadata = metadata


def _cli_url() -> str:
    url = os.environ.get("VIREO_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set VIREO_DATABASE_URL (or sqlalchemy.url in alembic.ini)")
    return url


def _run(connection: Connection) -> None:
    # render_as_batch lets later revisions alter tables on SQLite.
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_cli_url(), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    engine = create_engine(_cli_url())
    try:
        with engine.connect() as cli_connection:
            _run(cli_connection)
    finally:
        engine.dispose()
