"""Which addresses the http and https services listen on (Prosody's portmanager rules), and
which certificates https serves."""

from __future__ import annotations

import pytest

from http_apps.server import https_context, listen_addresses
from tests.certs import make_self_signed
from tests.http_fixtures import write_config
from tests.unit.test_tls import der, handshake


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


def test_https_certificate_is_the_default_and_sni_picks_hosts(tmp_path):
    host_cert, _ = make_self_signed(tmp_path / "certs", "example.com")
    port_cert, _ = make_self_signed(tmp_path / "web", "web.example")
    config = write_config(tmp_path, 'https_certificate = "web/web.example.crt"\n'
                                    'VirtualHost "example.com"\n')
    context = https_context(config)
    assert context is not None
    assert handshake(context, None) == der(port_cert)
    assert handshake(context, "unknown.example") == der(port_cert)
    assert handshake(context, "example.com", trust=[host_cert]) == der(host_cert)


def test_https_ssl_disables_sni_selection(tmp_path):
    make_self_signed(tmp_path / "certs", "example.com")
    manual, _ = make_self_signed(tmp_path / "manual", "manual.example")
    config = write_config(tmp_path, 'https_ssl = { certificate = "manual/manual.example.crt";'
                                    ' key = "manual/manual.example.key" }\n'
                                    'VirtualHost "example.com"\n')
    context = https_context(config)
    assert context is not None
    assert handshake(context, "example.com") == der(manual)


def test_no_certificate_no_https_context(tmp_path):
    assert https_context(write_config(tmp_path, 'VirtualHost "example.com"\n')) is None
