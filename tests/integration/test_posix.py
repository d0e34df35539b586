"""Prosody's mod_posix signals: SIGHUP reloads the config and the certificates
(a renewed certificate is served to new connections, no restart) and reopens
the log files; SIGUSR1/SIGUSR2 fire signal/<NAME>."""

from __future__ import annotations

import signal
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
                                                    "'tls', 'posix' }")
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
