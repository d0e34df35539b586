"""TLS channel bindings read from a server socket (xmpp/channel_binding.py), checked
against what the client end of the same TLS session computes."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading

import pytest

from tests.certs import make_self_signed
from xmpp.channel_binding import _LIBSSL, tls_channel_bindings
from xmpp.s2s_tls import ssl_pointer


def handshake(tmp_path, version: ssl.TLSVersion):
    """Both ends of one TLS session over a socket pair: (server's bindings, client socket)."""
    cert, key = make_self_signed(tmp_path, "example.org")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    client_context.maximum_version = version
    server_end, client_end = socket.socketpair()
    found: dict = {}
    read = threading.Event()

    def serve() -> None:
        with server_context.wrap_socket(server_end, server_side=True) as tls:
            found.update(tls_channel_bindings(tls))
            read.set()
            tls.recv(1)  # hold the session until the client has read its side

    thread = threading.Thread(target=serve)
    thread.start()
    client = client_context.wrap_socket(client_end, server_hostname="example.org")
    # The client's handshake may end before the server's does.
    assert read.wait(10)
    return found, client, thread


@pytest.mark.parametrize(("version", "types"), [
    (ssl.TLSVersion.TLSv1_3, ["tls-exporter", "tls-server-end-point"]),
    (ssl.TLSVersion.TLSv1_2, ["tls-exporter", "tls-unique", "tls-server-end-point"]),
])
def test_bindings_match_the_client_end(tmp_path, version, types):
    found, client, thread = handshake(tmp_path, version)
    try:
        assert list(found) == types  # strongest first
        assert found["tls-exporter"] == _LIBSSL.exporter(ssl_pointer(client))
        # Our certificate is signed with ECDSA-SHA256: RFC 5929 hashes it with SHA-256.
        assert found["tls-server-end-point"] == hashlib.sha256(
            client.getpeercert(binary_form=True)).digest()
        if "tls-unique" in found:
            assert found["tls-unique"] == client.get_channel_binding("tls-unique")
    finally:
        client.sendall(b"x")
        client.close()
        thread.join(10)


def test_no_bindings_without_tls():
    left, right = socket.socketpair()
    with left, right:
        assert tls_channel_bindings(left) == {}
