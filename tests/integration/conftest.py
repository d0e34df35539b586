"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.fake_dns import FakeDns
from tests.integration.server_fixture import Databases
from tests.unit.storage_fixtures import POSTGRES_ENV


@pytest.fixture(scope="module")
def dns():
    """A DNS server on loopback that servers reach through `unbound.forward`."""
    server = FakeDns().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest) -> Iterator[Databases]:
    """Where the module's servers keep their data: SQLite, then PostgreSQL at
    $VIREO_TEST_POSTGRES_URL, a role and schema for each server (skipped when unset)."""
    if request.param == "sqlite":
        yield Databases("sqlite")
        return
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    databases = Databases("postgresql", server_url)
    yield databases
    databases.drop_all()
