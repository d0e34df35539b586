"""Which addresses the http and https services listen on (Prosody's portmanager rules)."""

from __future__ import annotations

import pytest

from http_apps.server import listen_addresses
from tests.http_fixtures import write_config


@pytest.mark.parametrize(("text", "http", "https"), [
    ("", [("127.0.0.1", 5280), ("::1", 5280)], [("*", 5281), ("::", 5281)]),
    ('interfaces = { "192.0.2.1" }\n', [("127.0.0.1", 5280), ("::1", 5280)],
     [("192.0.2.1", 5281)]),
    ('local_interfaces = { "127.0.0.2" }\n', [("127.0.0.2", 5280)], [("*", 5281), ("::", 5281)]),
    ('http_interfaces = "*"\nhttp_ports = { 80, 8080 }\nhttps_ports = { }\n',
     [("*", 80), ("*", 8080)], []),
    ("https_interfaces = { }\n", [("127.0.0.1", 5280), ("::1", 5280)], []),
])
def test_listen_addresses(tmp_path, text, http, https):
    config = write_config(tmp_path, text)
    assert listen_addresses(config, "http") == http
    assert listen_addresses(config, "https") == https
