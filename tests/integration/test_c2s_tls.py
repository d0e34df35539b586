"""TLS on c2s: the certificate each virtual host gets, by SNI on direct TLS and on STARTTLS."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.certs import make_self_signed
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

OTHER = "other.localhost"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("sni")
    other_cert, other_key = make_self_signed(base / "other", OTHER)
    server = make_server(base / "server", host_extra=f"""
VirtualHost "{OTHER}"
ssl = {{ certificate = "{other_cert}", key = "{other_key}" }}
""")
    server.other_cert = other_cert
    server.start()
    yield server
    assert server.stop() == 0


def handshake(port: int, name: str, cafile) -> dict:
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=name) as tls:
        return tls.getpeercert()


def common_name(cert: dict) -> str:
    return dict(pair[0] for pair in cert["subject"])["commonName"]


def test_direct_tls_serves_each_host_its_certificate_by_sni(server):
    port = server.ports["c2s_direct_tls"]
    assert common_name(handshake(port, "localhost", server.cert)) == "localhost"
    assert common_name(handshake(port, OTHER, server.other_cert)) == OTHER


def test_starttls_uses_the_certificate_of_the_stream_host(server):
    raw = RawClient(server.c2s_port)
    try:
        features = raw.starttls(OTHER, server.other_cert)  # verifies against OTHER's cert
        assert b"<mechanisms" in features
    finally:
        raw.close()
