"""Process lifecycle: SIGTERM and SIGINT close every stream cleanly; logs go to `log`."""

from __future__ import annotations

import re
import signal
from xml.etree.ElementTree import fromstring

import pytest

from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

USERS = {"alice": "pw-alice", "bob": "pw-bob"}
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
EXIT_TIMEOUT = 15.0


def stream_error_condition(data: bytes) -> str:
    """The condition of the last <stream:error> in `data`, parsed as XML."""
    match = re.search(rb"<stream:error>.*?</stream:error>", data, re.S)
    assert match, f"no stream error in {data[-400:]!r}"
    xml = match.group(0).replace(
        b"<stream:error>",
        b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'>", 1)
    error = fromstring(xml)
    conditions = [child.tag for child in error if child.tag.startswith(f"{{{STREAMS}}}")
                  and not child.tag.endswith("}text")]
    assert len(conditions) == 1, conditions
    return conditions[0].split("}")[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_every_stream_then_exits_zero(tmp_path, signum):
    server = make_server(tmp_path)
    server.create_users(USERS)
    server.start()
    clients: list[RawClient] = []
    try:
        pidfile = tmp_path / "vireo.pid"
        assert pidfile.read_text().strip() == str(server.process.pid)
        for user, password in USERS.items():
            client = RawClient(server.c2s_port)
            client.login(server.domain, server.cert, user, password)
            clients.append(client)
        # A stream still negotiating (no authentication yet) is closed too.
        fresh = RawClient(server.c2s_port)
        fresh.open_stream(server.domain)
        clients.append(fresh)

        server.process.send_signal(signum)
        for client in clients:
            data = client.read_to_close()
            assert stream_error_condition(data) == "system-shutdown"
            assert data.rstrip().endswith(b"</stream:stream>")
        assert server.process.wait(EXIT_TIMEOUT) == 0
        assert not pidfile.exists()
    finally:
        for client in clients:
            client.close()
        server.stop()


def test_logs_go_to_the_file_named_by_log(tmp_path):
    log_file = tmp_path / "plain.log"
    # With HTTP (hence Flask) loaded, as exit used to print an exception then.
    server = make_server(tmp_path, extra=f'log = "{log_file}"', http=True, modules=("bosh",))
    server.start()
    try:
        raw = RawClient(server.c2s_port)
        raw.open_stream(server.domain)
        raw.close()
    finally:
        assert server.stop() == 0
    # Nothing but the log file: no exception printed at exit either.
    assert (tmp_path / "stderr.log").read_text() == ""
    text = log_file.read_text()
    # Prosody's plain file form logs info and above: the startup line, not debug chatter.
    assert "Vireo started" in text
    assert "Shutting down" in text
    assert "\tdebug\t" not in text and " debug\t" not in text
