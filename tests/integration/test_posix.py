"""Prosody's mod_posix signals: SIGHUP reloads the config and the certificates
of every TLS port, c2s, https and s2s (a renewed certificate is served to new
connections, no restart) and reopens the log files; SIGUSR1/SIGUSR2 fire
signal/<NAME>."""

from __future__ import annotations

import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.certs import make_self_signed
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

WAIT = 15.0


@pytest.fixture
def server(tmp_path):
    server = make_server(tmp_path / "posix", extra="modules_enabled = { 'roster', 'saslauth', "
                                                    "'tls', 'posix', 'bosh' }",
                         s2s=True, http=True)
    server.start()
    yield server
    server.stop()


def served_certificate(server) -> bytes:
    client = RawClient(server.c2s_port)
    try:
        client.starttls("localhost", server.cert)
        return client.sock.getpeercert(binary_form=True)
    finally:
        client.close()


def served_https_certificate(server) -> bytes:
    context = ssl.create_default_context(cafile=str(server.cert))
    with socket.create_connection(("127.0.0.1", server.ports["https"]), timeout=WAIT) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as tls:
        return tls.getpeercert(binary_form=True)


def served_s2s_certificate(server) -> bytes:
    """The certificate an incoming s2s stream sees after STARTTLS."""
    peer = RawClient(server.ports["s2s"])
    try:
        peer.send("<?xml version='1.0'?><stream:stream to='localhost' from='peer.example' "
                  "version='1.0' xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
                  "xmlns:stream='http://etherx.jabber.org/streams'>")
        peer.read_until(rb"</stream:features>")
        peer.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.read_until(rb"<proceed")
        context = ssl.create_default_context(cafile=str(server.cert))
        peer.sock = context.wrap_socket(peer.sock, server_hostname="localhost")
        return peer.sock.getpeercert(binary_form=True)
    finally:
        peer.close()


def wait_for_log(path: Path, text: str, after: int = 0) -> None:
    """Until `text` appears in the log past offset `after` (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text()[after:]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{text!r} not logged in {path}")


def test_sighup_serves_the_renewed_certificate_and_reopens_logs(server):
    before = served_certificate(server)
    assert served_https_certificate(server) == served_s2s_certificate(server) == before
    kept = RawClient(server.c2s_port)
    kept.starttls("localhost", server.cert)
    make_self_signed(server.directory, "localhost")  # renewed in place, same paths
    assert ssl.DER_cert_to_PEM_cert(before) != server.cert.read_text()
    rotated = server.log_path.with_suffix(".log.1")
    server.log_path.rename(rotated)
    server.process.send_signal(signal.SIGHUP)
    wait_for_log(server.log_path, "Configuration reloaded")
    after = served_certificate(server)
    assert after != before
    assert ssl.DER_cert_to_PEM_cert(after).strip() == server.cert.read_text().strip()
    assert served_https_certificate(server) == served_s2s_certificate(server) == after
    # The connection made before goes on with its handshake done.
    kept.send("<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>")
    kept.read_until(b"</stream:stream>|id=['\"]x['\"]")
    kept.close()
    server.process.send_signal(signal.SIGUSR1)
    wait_for_log(server.log_path, "Received SIGUSR1")


def test_sighup_with_a_broken_config_keeps_running(server):
    text = server.config_path.read_text()
    server.config_path.write_text(text + "\nthis is not lua\n")
    size = server.log_path.stat().st_size
    server.process.send_signal(signal.SIGHUP)
    wait_for_log(server.log_path, "Config not reloaded", after=size)
    assert server.process.poll() is None
    served_certificate(server)
