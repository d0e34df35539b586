"""Shared helpers for the HTTP layer's tests: configs from Lua text and a probe app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask
from werkzeug.test import Client

from http_apps import build_wsgi_app
from http_apps.provider import HttpProvider
from http_apps.urls import external_url
from xmpp.config import Config, load_config


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
