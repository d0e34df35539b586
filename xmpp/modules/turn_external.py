"""STUN/TURN services for clients (XEP-0215 External Service Discovery), with
time-limited TURN credentials from a secret shared with the TURN server (the
TURN REST API scheme coturn's `use-auth-secret` checks): Prosody's
mod_turn_external over mod_external_services, with their options."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement

from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.moduleapi import ModuleContext

NS = "urn:xmpp:extdisco:2"


@dataclass(frozen=True)
class Service:
    type: str  # stun | turn | turns
    transport: str
    host: str
    port: int


def credentials(secret: str, user: str | None, expires: int) -> tuple[str, str]:
    """(username, password): "<expiry>[:<user>]" and base64(HMAC-SHA1(secret, username))."""
    username = f"{expires}:{user}" if user else str(expires)
    digest = hmac.digest(secret.encode(), username.encode(), hashlib.sha1)
    return username, base64.b64encode(digest).decode()


def services_of(m: ModuleContext) -> list[Service]:
    host = m.config.get_str("turn_external_host", m.host.name) or m.host.name
    port = m.config.get_int("turn_external_port", 3478, min=1, max=65535)
    tls_port = m.config.get_int("turn_external_tls_port", None, min=1, max=65535)
    wanted = [("stun", "udp"), ("turn", "udp")]
    if m.config.get_bool("turn_external_tcp", False):
        wanted += [("stun", "tcp"), ("turn", "tcp")]
    services = [Service(kind, transport, host, port) for kind, transport in wanted]
    if tls_port:
        services.append(Service("turns", "tcp", host, tls_port))
    return services


def setup(m: ModuleContext) -> None:
    secret = m.config.get_str("turn_external_secret", None)
    if not secret:
        m.log.error("Failed to initialize: the 'turn_external_secret' option is not set")
        return
    user = m.config.get_str("turn_external_user", None)
    ttl = m.config.get_int("turn_external_ttl", 86400, min=1)
    services = services_of(m)

    def element(name: str, chosen: list[Service]) -> Element:
        reply = Element(f"{{{NS}}}{name}")
        expires = int(m.now()) + ttl
        for service in chosen:
            attrs = {"type": service.type, "transport": service.transport,
                     "host": service.host, "port": str(service.port)}
            if service.type in ("turn", "turns"):
                username, password = credentials(secret, user, expires)
                attrs.update(username=username, password=password, restricted="1",
                             expires=datetime.fromtimestamp(expires, UTC)
                             .strftime("%Y-%m-%dT%H:%M:%SZ"))
            SubElement(reply, f"{{{NS}}}service", attrs)
        return reply

    def local_client(request: IqRequest) -> None:
        if request.origin is None or getattr(request.origin, "kind", None) != "c2s":
            raise StanzaError("forbidden")

    def on_services(request: IqRequest) -> Element:
        local_client(request)
        kind = request.payload.get("type")
        return element("services", [s for s in services if kind in (None, s.type)])

    def on_credentials(request: IqRequest) -> Element:
        local_client(request)
        asked = []
        for item in request.payload.findall(f"{{{NS}}}service"):
            if not item.get("type") or not item.get("host"):
                raise StanzaError("bad-request", "The 'port' and 'type' attributes are required.")
            asked += [s for s in services if s.type == item.get("type")
                      and s.host == item.get("host")
                      and (item.get("port") is None or item.get("port") == str(s.port))]
        return element("credentials", [s for s in asked if s.type != "stun"])

    m.add_feature(NS)
    m.hook_iq("get", f"{{{NS}}}services", on_services)
    m.hook_iq("get", f"{{{NS}}}credentials", on_credentials)
