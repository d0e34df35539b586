"""mod_smacks on a server core without sockets: acks, hibernation on a lost
connection, resumption by a new stream with exactly the unacknowledged stanzas,
and what an impossible `h` gets."""

from __future__ import annotations

import base64
import re
from xml.etree.ElementTree import Element, SubElement

import pytest

from tests.unit.core_fixtures import core_with_modules
from tests.unit.test_module_api import HOST, Transport, bound_session, received
from xmpp import namespaces as ns
from xmpp.c2s import C2SSession

SM = "urn:xmpp:sm:3"
MESSAGE = f"{{{ns.CLIENT}}}message"


@pytest.fixture
def smacks_core(tmp_path):
    return core_with_modules(tmp_path, HOST, ("saslauth", "smacks"), {"alice": "pw"})


def managed(core) -> tuple[C2SSession, Transport, str]:
    session, transport = bound_session(core)
    session.data_received(f"<enable xmlns='{SM}' resume='true'/>".encode())
    token = re.search(r"id='([^']+)'", b"".join(transport.written).decode()).group(1)
    transport.written.clear()
    return session, transport, token


def deliver(core, session: C2SSession, body: str) -> None:
    message = Element(MESSAGE, {"to": str(session.jid), "from": f"bob@{HOST}/x",
                                "type": "chat"})
    SubElement(message, f"{{{ns.CLIENT}}}body").text = body
    core.router.route(message)


def bodies(transport: Transport) -> list[str]:
    return [e.findtext(f"{{{ns.CLIENT}}}body") for e in received(transport)
            if e.tag == MESSAGE]


def test_acks_count_what_the_client_sent(smacks_core):
    session, transport, _ = managed(smacks_core)
    session.data_received(f"<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
                          f"<r xmlns='{SM}'/>".encode())
    assert re.search(rb"<a [^>]*h=.1.", b"".join(transport.written))


def test_a_lost_connection_hibernates_and_a_resume_gets_the_rest_once(smacks_core):
    old, old_transport, token = managed(smacks_core)
    deliver(smacks_core, old, "seen")
    deliver(smacks_core, old, "lost on the wire")
    old.connection_lost()
    assert old.detached
    deliver(smacks_core, old, "while away")
    assert bodies(old_transport) == ["seen", "lost on the wire"]

    new_transport = Transport()
    new = C2SSession(smacks_core.c2s, new_transport)
    header = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              f"xmlns:stream='{ns.STREAMS}' to='{HOST}' version='1.0'>").encode()
    new.data_received(header)
    auth = base64.b64encode(b"\0alice\0pw").decode()
    new.data_received(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{auth}</auth>".encode())
    new.data_received(header)
    new_transport.written.clear()
    new.data_received(f"<resume xmlns='{SM}' previd='{token}' h='1'/>".encode())
    written = b"".join(new_transport.written)
    assert re.search(rb"<resumed [^>]*h=.0.", written)
    assert bodies(new_transport) == ["lost on the wire", "while away"]
    assert all(e.find(f"{{{ns.DELAY}}}delay") is not None for e in received(new_transport)
               if e.tag == MESSAGE)
    assert new.jid == old.jid and not old.detached
    deliver(smacks_core, new, "live")
    assert bodies(new_transport)[-1] == "live"


def test_an_ack_beyond_what_was_sent_ends_the_stream(smacks_core):
    session, transport, _ = managed(smacks_core)
    deliver(smacks_core, session, "one")
    session.data_received(f"<a xmlns='{SM}' h='2'/>".encode())
    written = b"".join(transport.written)
    assert session.closed and b"<undefined-condition" in written
    assert b"Client acknowledged more stanzas than sent by server" in written
