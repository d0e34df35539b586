"""Database fixtures: every test on SQLite, and on PostgreSQL when VIREO_TEST_POSTGRES_URL is set.

Bind the fixtures in a test module (`db = storage_fixtures.db`) to use them.
Each PostgreSQL test gets a schema of its own, dropped afterwards, so parallel
runs and reruns against one server do not collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from storage.db import Database

POSTGRES_ENV = "VIREO_TEST_POSTGRES_URL"


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'vireo.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database's URL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    schema = f"vireo_test_{uuid.uuid4().hex}"
    admin = create_engine(server)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database."""
    database = Database(db_url)
    database.migrate()
    try:
        yield database
    finally:
        database.close()
