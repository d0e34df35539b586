"""The gunicorn deploy: `gunicorn -k gevent -w 1 -c gunicorn.conf.py` serves HTTP and XMPP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http_fixtures import ROOT, connect, http_request
from tests.integration.clients import run
from tests.integration.server_fixture import ServerProcess, free_port, make_server, wait_for_port
from tests.integration.websocket_client import FRAMING, WsClient

GUNICORN = Path(sys.executable).with_name("gunicorn")


def start_gunicorn(vireo: ServerProcess, http_port: int) -> subprocess.Popen:
    """`vireo`'s config served by gunicorn's gevent worker (binding `http_port`),
    once it listens there and on the c2s port; output in gunicorn.log."""
    with (vireo.directory / "gunicorn.log").open("wb") as log:
        process = subprocess.Popen(
            [str(GUNICORN), "-k", "gevent", "-w", "1", "-c", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT, env={**os.environ, "VIREO_CONFIG": str(vireo.config_path)},
            stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for_port(http_port, process)
        wait_for_port(vireo.c2s_port, process)
    except BaseException:
        stop_gunicorn(process)
        raise
    return process


def stop_gunicorn(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.fixture
def deployed(tmp_path):
    http_port = free_port()
    vireo = make_server(tmp_path, extra=(f'http_ports = {{ {http_port} }}\n'
                                         'http_interfaces = { "127.0.0.1" }\n'
                                         'https_ports = { }\nstatistics = "internal"\n'),
                        modules=("http_openmetrics", "websocket"))
    vireo.create_users({"web": "pw-web"})
    process = start_gunicorn(vireo, http_port)
    try:
        vireo.ports["http"] = http_port
        yield http_port, vireo.c2s_port, vireo
    finally:
        stop_gunicorn(process)


def test_gunicorn_serves_http_and_xmpp(deployed):
    http_port, c2s_port, _vireo = deployed
    with connect(http_port) as sock:
        response = http_request(sock, "GET", "/metrics", "localhost")
        body = response.read()
    assert response.status == 200
    assert b"# TYPE vireo_stanzas counter" in body
    with connect(http_port) as sock:
        assert http_request(sock, "GET", "/", "localhost").status == 404
    with connect(http_port) as sock:
        body = http_request(sock, "GET", "/metrics", "localhost").read()
    assert b'vireo_http_requests_total{status="404"} 1.0' in body
    with connect(c2s_port) as sock:
        sock.sendall(b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                     b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        assert b"<stream:stream" in sock.recv(4096)


def test_gunicorn_hands_websocket_connections_over(deployed):
    _http_port, _c2s_port, vireo = deployed

    async def scenario():
        web = await WsClient.connect(vireo, headers={"X-Forwarded-Proto": "https"})
        try:
            assert await web.login("web", "pw-web") == f"web@{vireo.domain}/ws"
            await web.send(f"<close xmlns='{FRAMING}'/>")
            assert (await web.recv()).tag == f"{{{FRAMING}}}close"
            assert (await web.receive()).data == 1000
        finally:
            await web.close()

    run(scenario())
