"""Shared helpers for the HTTP layer's tests: configs from Lua text and a probe app."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

import flask
from werkzeug.test import Client

from http_apps import build_wsgi_app
from http_apps.provider import HttpProvider
from http_apps.urls import external_url
from tests.integration.server_fixture import stop_process
from xmpp.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 20.0


def write_config(directory: Path, text: str) -> Config:
    """Load a config file holding `text` (Prosody's Lua syntax)."""
    path = Path(directory) / "vireo.cfg.lua"
    path.write_text(text)
    return load_config(path)


def probe_blueprint() -> flask.Blueprint:
    """A test app: reports what the HTTP layer exposes to route code."""
    blueprint = flask.Blueprint("probe", __name__)

    @blueprint.route("", methods=["GET", "POST"])
    @blueprint.route("/", methods=["GET", "POST"], defaults={"rest": ""})
    @blueprint.route("/<path:rest>", methods=["GET", "POST"])
    def whoami(rest: str = "") -> dict[str, Any]:
        app = flask.current_app
        return {
            "host": app.config["VIREO_HOST"],
            "path": flask.request.path,
            "rest": rest,
            "remote_addr": flask.request.remote_addr,
            "secure": flask.request.is_secure,
            "url": external_url(app.config["VIREO_CONFIG"], app.config["VIREO_HOST"],
                                flask.request.path),
        }

    @blueprint.get("/hello")
    def hello() -> str:
        return "hello\n"

    @blueprint.post("/upload")
    def upload() -> dict[str, int]:
        return {"size": len(flask.request.get_data())}

    @blueprint.put("/put")
    def put() -> str:
        return ""

    @blueprint.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    @blueprint.get("/own-cors")
    def own_cors() -> flask.Response:
        response = flask.Response("x")
        response.headers.add("Access-Control-Allow-Origin", "https://mine.example")
        return response

    return blueprint


def probe(name: str = "probe", host: str = "example.com", **options: Any) -> HttpProvider:
    """A provider of the probe app."""
    return HttpProvider(name=name, host=host, make_blueprint=probe_blueprint, **options)


class HostClient(Client):
    """A test client whose requests come from 127.0.0.1 to http://example.com/ by default."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", "http://example.com/")
        kwargs.setdefault("environ_base", {"REMOTE_ADDR": "127.0.0.1"})
        return super().open(*args, **kwargs)


def http_client(directory: Path, text: str, providers: list[HttpProvider]) -> HostClient:
    """A test client of the whole WSGI app built from config `text` and `providers`."""
    return HostClient(build_wsgi_app(write_config(directory, text), providers))


# -- a real HTTP server in a subprocess ---------------------------------------------------

def serve(config_path: str, ports_file: str, limits_json: str = "{}") -> None:
    """Run the HTTP layer with a probe app per VirtualHost (and http_files' app where
`http_files_dir` is set) and /metrics until SIGTERM.

    Writes {"http": [port, ...], "https": [...]} to `ports_file` once listening.
    """
    import logging
    import signal

    import gevent
    import gevent.event

    from http_apps import openmetrics
    from http_apps.files.service import provider as files_provider
    from http_apps.server import start_http_servers, stop_http_servers

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = load_config(config_path)
    providers = [probe(host=host.name) for host in config.virtual_hosts()]
    providers += [files for host in config.virtual_hosts()
                  if host.get("http_files_dir") and (files := files_provider(host, host.name))]
    providers.append(openmetrics.provider(config))
    servers = start_http_servers(config, build_wsgi_app(config, providers),
                                 **json.loads(limits_json))
    ports: dict[str, list[int]] = {"http": [], "https": []}
    for server in servers:
        ports[server.service].append(server.port)
    partial = Path(ports_file + ".partial")
    partial.write_text(json.dumps(ports))
    partial.rename(ports_file)
    stopping = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    stopping.wait()
    stop_http_servers(servers, timeout=2)




@dataclass
class RunningHttp:
    """A server started by `http_server_process`."""

    process: subprocess.Popen
    ports: dict[str, list[int]]
    log_path: Path

    @property
    def http_port(self) -> int:
        return self.ports["http"][0]

    @property
    def https_port(self) -> int:
        return self.ports["https"][0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def http_server_process(directory: Path, config_text: str,
                        limits: dict[str, Any] | None = None,
                        root: Path = ROOT) -> Iterator[RunningHttp]:
    """Run `serve` in a subprocess on the config `config_text`; stop it afterwards.

    `root` is the Vireo checkout to run (another revision, for benchmarks).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "vireo.cfg.lua"
    config_path.write_text(config_text)
    ports_file = directory / "ports.json"
    ports_file.unlink(missing_ok=True)
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.http_fixtures", str(config_path), str(ports_file),
             json.dumps(limits or {})], cwd=root, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ports_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("HTTP server did not start:\n" + log_path.read_text())
            time.sleep(0.02)
        yield RunningHttp(process, json.loads(ports_file.read_text()), log_path)
    finally:
        stop_process(process)


def http_request(sock: socket.socket, method: str, path: str, host: str | None = "example.com",
                 headers: dict[str, str] | None = None, body: bytes = b"") -> HTTPResponse:
    """Send one HTTP/1.1 request on `sock` (plain or TLS) and read the response."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body and not any(name.lower() == "transfer-encoding" for name in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    response = HTTPResponse(sock, method=method)
    response.begin()
    return response


def connect(port: int, source: str = "127.0.0.1", address: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to a local port from a chosen loopback source address."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect((address, port))
    return sock


if __name__ == "__main__":
    serve(*sys.argv[1:])
