"""The module API (Prosody's moduleapi): events, filters, stream-element events,
pre-events and session events, driven through a C2SSession on a server core
without sockets or storage; and the architecture it promises (no module holds
the server, no import cycle through xmpp/server.py)."""

from __future__ import annotations

import ast
import base64
import re
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

import pytest

from tests.unit.core_fixtures import core_with_modules
from xmpp import namespaces as ns
from xmpp.c2s import C2SSession
from xmpp.errors import StreamError
from xmpp.events import EventBus
from xmpp.moduleapi import ModuleContext
from xmpp.stream import StanzaEvent, StreamParser

ROOT = Path(__file__).resolve().parents[2]
HOST = "example.org"
CLIENT = f"{{{ns.CLIENT}}}"


# -- events ---------------------------------------------------------------------------------

def test_handlers_run_by_priority_and_a_truthy_result_stops_the_chain():
    bus, calls = EventBus(), []
    bus.hook("e", lambda event: calls.append(("low", event.n)), -5)
    bus.hook("e", lambda event: calls.append(("high", event.n)), 10)
    bus.hook("e", lambda event: calls.append(("mid", event.n)))
    assert bus.fire("e", n=1) is None
    assert calls == [("high", 1), ("mid", 1), ("low", 1)]
    bus.hook("e", lambda event: "taken", 5)
    calls.clear()
    assert bus.fire("e", n=2) == "taken"
    assert calls == [("high", 2)]


def test_unhook_and_unknown_events():
    bus, calls = EventBus(), []

    def handler(event):
        calls.append(event)

    bus.hook("e", handler)
    bus.unhook("e", handler)
    assert "e" not in bus and bus.fire("e") is None and calls == []


# -- a session on the core -----------------------------------------------------------------------

class Transport:
    def __init__(self) -> None:
        self.peer = ("192.0.2.1", 40000)
        self.secure = True
        self.listener = "c2s"
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def start_tls(self) -> None: ...
    def close(self) -> None: ...
    def call_later(self, seconds, callback) -> None: ...


@pytest.fixture
def core(tmp_path):
    return core_with_modules(tmp_path, HOST, ("saslauth", "roster"), {"alice": "pw"})


@pytest.fixture
def m(core):
    return ModuleContext("test", core.router.hosts[HOST], core.services)


def received(transport: Transport) -> list[Element]:
    """The stanzas written since the stream was bound (after its last header)."""
    parser = StreamParser(default_ns=ns.CLIENT, max_stanza_size=10**6)
    parser.feed(f"<stream:stream xmlns='jabber:client' xmlns:stream='{ns.STREAMS}'>".encode())
    out = []
    for chunk in transport.written:
        out += [e.element for e in parser.feed(chunk) if isinstance(e, StanzaEvent)]
    return out


def bound_session(core, resource: str = "r") -> tuple[C2SSession, Transport]:
    transport = Transport()
    session = C2SSession(core.c2s, transport)
    header = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              f"xmlns:stream='{ns.STREAMS}' to='{HOST}' version='1.0'>").encode()
    session.data_received(header)
    token = base64.b64encode(b"\0alice\0pw").decode()
    session.data_received(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>".encode())
    session.data_received(header)
    session.data_received(f"<iq type='set' id='b'><bind xmlns='{ns.BIND}'>"
                          f"<resource>{resource}</resource></bind></iq>".encode())
    assert session.jid is not None
    transport.written.clear()
    return session, transport


def test_resource_bind_and_unbind_events(core, m):
    seen = []
    m.hook("resource-bind", lambda event: seen.append(("bind", str(event.session.jid))))
    m.hook("pre-resource-unbind", lambda event: seen.append(
        ("pre-unbind", event.session.jid.resource in m.sessions(event.session.jid.bare))))
    m.hook("resource-unbind", lambda event: seen.append(
        ("unbind", event.session.jid.resource in m.sessions(event.session.jid.bare))))
    session, _ = bound_session(core)
    session.connection_lost()
    assert seen == [("bind", f"alice@{HOST}/r"), ("pre-unbind", True), ("unbind", False)]


# -- the end of a session: pre-session-close, kept (detached) sessions, take_over ----------

def test_pre_session_close_comes_before_a_chosen_close_not_a_lost_connection(core, m):
    seen = []
    m.hook("pre-session-close", lambda event: seen.append(
        (event.error and event.error.condition, event.session.closed)))
    closed, _ = bound_session(core, "one")
    closed.close(StreamError("policy-violation"))
    lost, _ = bound_session(core, "two")
    lost.connection_lost()
    assert seen == [("policy-violation", False)]


def test_a_kept_session_stays_bound_and_its_stanzas_reach_its_filters_only(core, m):
    kept = []
    m.hook("pre-resource-unbind", lambda event: True)
    session, transport = bound_session(core)
    m.add_filter(session, "stanzas/out", lambda stanza, s: kept.append(stanza))
    session.connection_lost()
    assert session.detached and m.sessions(session.jid.bare)["r"] is session
    transport.written.clear()
    m.route(Element(CLIENT + "message", {"to": str(session.jid), "from": f"bob@{HOST}"}))
    assert len(kept) == 1 and transport.written == []


def test_a_kept_session_ends_when_closed_or_destroyed(core, m):
    keep = [True]
    unbound = []
    m.hook("pre-resource-unbind", lambda event: keep[0])
    m.hook("resource-unbind", lambda event: unbound.append(event.session))
    first, _ = bound_session(core, "first")
    second, _ = bound_session(core, "second")
    first.connection_lost()
    second.connection_lost()
    keep[0] = False
    first.close(StreamError("system-shutdown"))
    second.destroy()
    assert unbound == [first, second] and not m.sessions(first.jid.bare)
    assert not first.detached and not second.detached


def test_take_over_moves_the_jid_state_filters_and_route(core, m):
    m.hook("pre-resource-unbind", lambda event: True)
    old, old_transport = bound_session(core)
    old.module_data["test"] = "state"
    seen = []
    m.add_filter(old, "stanzas/out", lambda stanza, s: seen.append(s) or stanza, 5)
    old.connection_lost()
    new, transport = bound_session(core, "other")  # any stream of the same user
    new.services.router.unbind(new)
    new.jid = None
    new.take_over(old)
    assert new.jid == old.jid and new.module_data["test"] == "state"
    assert m.sessions(new.jid.bare)[new.jid.resource] is new
    assert old.closed and not old.detached
    transport.written.clear()
    m.route(Element(CLIENT + "message", {"to": str(new.jid), "from": f"bob@{HOST}"}))
    assert seen == [new] and b"<message" in b"".join(transport.written)
    assert not any(b"<message" in data for data in old_transport.written)


def test_stream_elements_are_events_and_unhandled_ones_end_the_stream(core, m):
    taken = []
    m.hook("stanza/urn:xmpp:sm:3:r", lambda event: taken.append(event.origin) or True)
    session, transport = bound_session(core)
    session.data_received(b"<r xmlns='urn:xmpp:sm:3'/>")
    assert taken == [session] and not session.closed
    session.data_received(b"<a xmlns='urn:xmpp:sm:3' h='1'/>")
    assert session.closed
    assert b"unsupported-stanza-type" in b"".join(transport.written)


def test_out_filters_rewrite_or_drop_and_in_filters_see_input(core, m):
    session, transport = bound_session(core)
    inbound = []
    m.add_filter(session, "stanzas/in", lambda stanza, s: inbound.append(stanza.tag) or stanza)

    def out(stanza, s):
        if stanza.get("id") == "drop":
            return None
        stanza.set("marked", "yes")
        return stanza

    m.add_filter(session, "stanzas/out", out)
    for stanza_id in ("drop", "keep"):
        iq = Element(CLIENT + "iq", {"type": "result", "id": stanza_id})
        session.send(iq)
    (kept,) = received(transport)
    assert kept.get("id") == "keep" and kept.get("marked") == "yes"
    session.data_received(b"<presence/>")
    assert inbound == [CLIENT + "presence"]
    m.remove_filter(session, "stanzas/out", out)
    transport.written.clear()
    session.send(Element(CLIENT + "iq", {"type": "result", "id": "drop"}))
    assert [e.get("id") for e in received(transport)] == ["drop"]


def test_pre_events_see_outbound_stanzas_before_routing(core, m):
    seen = []
    m.hook("pre-message/bare", lambda event: seen.append((event.stanza.get("to"),
                                                          event.to_self)) or True)
    m.hook("pre-message/full", lambda event: seen.append((event.stanza.get("to"),
                                                          event.to_self)) or True)
    session, _ = bound_session(core)
    for to in (f"bob@{HOST}", f"bob@{HOST}/x", None):
        message = Element(CLIENT + "message", {"to": to} if to else {})
        SubElement(message, CLIENT + "body").text = "hi"
        session.handle_stanza(message)
    assert seen == [(f"bob@{HOST}", False), (f"bob@{HOST}/x", False), (None, True)]


def test_message_full_event_can_take_a_message_before_delivery(core, m):
    _target, target_transport = bound_session(core, "phone")
    sender, _ = bound_session(core, "desk")
    copies = []
    m.hook("message/full", lambda event: copies.append(event.to.resource), 1)
    message = Element(CLIENT + "message", {"to": f"alice@{HOST}/phone", "type": "chat"})
    sender.handle_stanza(message)
    assert copies == ["phone"] and len(received(target_transport)) == 1


def test_session_data_is_per_module(core, m):
    session, _ = bound_session(core)
    mine = m.session_data(session, dict)
    mine["x"] = 1
    other = ModuleContext("other", m.host, core.services)
    assert other.session_data(session, dict) == {}
    assert m.session_data(session, dict) == {"x": 1}


def test_shared_session_data_is_exported_and_each_change_announced_once(tmp_path):
    core = core_with_modules(tmp_path, HOST, ("saslauth", "roster", "carbons"), {"alice": "pw"})
    m = ModuleContext("test", core.router.hosts[HOST], core.services)
    changed = []
    m.hook("session-data-changed", lambda event: changed.append(event.module))
    session, _ = bound_session(core)
    shared = core.services.shared_session_data
    assert shared.export(session.module_data) == {}
    for _ in range(2):
        session.data_received(f"<iq type='get' id='r'><query xmlns='{ns.ROSTER}'/></iq>"
                              "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>"
                              .encode())
    assert changed == ["roster", "carbons"]
    assert shared.export(session.module_data) == {"roster": True, "carbons": True}
    session.data_received(b"<iq type='set' id='d'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
    assert changed == ["roster", "carbons", "carbons"]
    assert shared.export(session.module_data) == {"roster": True, "carbons": False}


# -- the architecture --------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    """Modules `path` imports at run time (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def _project_graph() -> dict[str, set[str]]:
    graph = {}
    for package in ("xmpp", "http_apps", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            name = name.removesuffix(".__init__")
            graph[name] = {i for i in _imports(path)
                           if i.split(".")[0] in ("xmpp", "http_apps", "storage")}
    return graph


def test_nothing_the_server_imports_imports_the_server_back():
    graph = _project_graph()
    reaches_server = {name for name in graph if "xmpp.server" in graph[name]}
    assert reaches_server == set(), f"modules importing xmpp.server: {reaches_server}"


def test_no_module_reaches_for_the_server():
    for path in (ROOT / "xmpp" / "modules").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bm\.server\b|VireoServer", text), path.name
    assert "storage" not in " ".join(_imports(ROOT / "xmpp" / "c2s.py"))
