"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from tests.integration.fake_dns import FakeDns


@pytest.fixture(scope="module")
def dns():
    """A DNS server on loopback that servers reach through `unbound.forward`."""
    server = FakeDns().start()
    yield server
    server.stop()
