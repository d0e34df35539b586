"""Public URLs of HTTP apps (Prosody's `module:http_url`): mount paths and external URLs.

The mount path of an app is `http_paths[name]` of its host, else of the global
section, else its default path, with `$host` replaced by the host. Its public URL
starts with `http_external_url` (the host's, else the global one) when set;
otherwise with the first https service (else http) actually listening, the
host's `http_host` (else the host name), and the port unless it is the scheme's
default.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from http_apps.provider import GLOBAL_HOST

DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_SERVICE_PORTS = {"http": 5280, "https": 5281}
DISABLED_URL = "http://disabled.invalid/"

# Ports each HTTP service is listening on, in bind order, kept by http_apps.server
# (Prosody's portmanager). Empty when nothing is listening in this process (tests,
# tools): then the configured ports stand in.
_listening: dict[str, list[int]] = {"http": [], "https": []}

_VARIABLE = re.compile(r"\$([A-Za-z0-9]+)")


def mark_listening(service: str, port: int, listening: bool = True) -> None:
    """Record that `service` ("http" or "https") now listens (or stopped listening) on `port`."""
    ports = _listening.setdefault(service, [])
    if listening:
        ports.append(port)
    elif port in ports:
        ports.remove(port)


def normalize_path(path: str, is_dir: bool = False) -> str:
    """A leading slash and no trailing one ("/" stays "/"); with is_dir, a trailing one."""
    path = path.rstrip("/") if not is_dir else path
    if not path.startswith("/"):
        path = "/" + path
    if is_dir and not path.endswith("/"):
        path += "/"
    return path


def _scope(config: Any, host: str) -> Any:
    """The option scope of a host: its section (falling back to global), or the global section."""
    return (config.host(host) if host != GLOBAL_HOST else None) or config


def base_path(config: Any, host: str, name: str, default_path: str | None = None) -> str:
    """The path an app is mounted at on `host` (see the module docstring)."""
    path = (_table(_scope(config, host).get("http_paths")).get(name)
            or _table(config.get("http_paths")).get(name)
            or default_path or "/" + name)
    return _VARIABLE.sub(lambda m: host if m.group(1) == "host" else m.group(0),
                         normalize_path(str(path)))


def _table(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _service_port(config: Any) -> tuple[str, int] | None:
    for service in ("https", "http"):
        if _listening.get(service):
            return service, _listening[service][0]
    for service in ("https", "http"):
        ports = config.get_list(f"{service}_ports", [DEFAULT_SERVICE_PORTS[service]])
        if ports:
            return service, int(ports[0])
    return None


def external_url(config: Any, host: str, path: str = "/") -> str:
    """The public URL of `path` (absolute, e.g. "/http-bind") on HTTP host `host`.

    `host` is the VirtualHost or Component name (or "*" for global apps).
    """
    external = _scope(config, host).get_str("http_external_url", None)
    if external:
        parts = urlsplit(external)
        scheme = parts.scheme or "https"
        port = parts.port or DEFAULT_PORTS.get(scheme)
        netloc = _netloc(parts.hostname or "", port, scheme)
        return f"{scheme}://{netloc}{normalize_path(parts.path or '/', True)}{path.lstrip('/')}"
    found = _service_port(config)
    if found is None:
        return DISABLED_URL
    scheme, port = found
    scope = _scope(config, host)
    name = scope.get_str("http_host", None)
    if not name:
        name = config.get_str("http_default_host", None) if host == GLOBAL_HOST else host
    return f"{scheme}://{_netloc(name or 'localhost', port, scheme)}/{path.lstrip('/')}"


def _netloc(name: str, port: int | None, scheme: str) -> str:
    if ":" in name:
        name = f"[{name}]"
    return name if port is None or DEFAULT_PORTS.get(scheme) == port else f"{name}:{port}"


def http_url(config: Any, host: str, name: str, default_path: str | None = None) -> str:
    """The public URL of app `name` on `host`: `external_url` of its mount path."""
    return external_url(config, host, base_path(config, host, name, default_path))
