"""Extensible SASL Profile (XEP-0388), as Prosody's mod_sasl2: `<authentication/>`
beside RFC 6120's `<mechanisms/>`, the same mechanisms and accounts, no
stream restart, and inline features hooked in by other modules.

Events (Prosody's names):
- `advertise-sasl-features` (`origin`, `features`): add children to `<inline/>`.
- `stanza/urn:xmpp:sasl:2:authenticate` (`origin`, `stanza`): the request.
  This module reads the `<user-agent/>` at priority 200 and runs the
  exchange at 0; modules in between (Bind 2, FAST) keep what they need from
  the request, may set `event.exchange` to serve the mechanism themselves,
  or set `event.failure` (a `Failure`) to refuse it.
- `sasl2/c2s/success` (`session`, `success`, `exchange`): at 1000 the session
  becomes authenticated and `success` is made; modules add children in
  between; at -1000 the authorization identifier is added and it is sent
  with the new stream features; below that, modules act on the stream.
- `sasl2/c2s/failure` (`session`, `failure`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.c2s import UserAgent
from xmpp.errors import StreamError
from xmpp.moduleapi import ModuleContext
from xmpp.sasl import Challenge, Failure, Outcome, Success, decode_payload, encode_payload
from xmpp.stanza import serialize

NS = "urn:xmpp:sasl:2"
# XEP-0388 does not bound the user agent; these keep junk out of logs and the
# admin listing (a UUID is 36 characters).
MAX_USER_AGENT_ID = 128
MAX_USER_AGENT_TEXT = 256
DAY = 86400
# Devices whose record this process wrote today: their next logins write nothing.
REMEMBERED_AGENTS = 10000


@dataclass
class _State:
    """A session's exchange waiting for the client's next `<response/>`."""

    exchange: Any = None


def setup(m: ModuleContext) -> None:
    user_agents = m.open_store("sasl2_user_agents", "map")
    written: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def state(session: Any) -> _State:
        """This session's SASL2 state; SASL2 elements after login end the stream."""
        if session.authenticated:
            raise StreamError("policy-violation", "Already authenticated")
        return m.session_data(session, _State)

    def advertise(event: Any) -> None:
        session = event.origin
        if getattr(session, "kind", None) != "c2s" or session.authenticated:
            return
        mechanisms = session.sasl_mechanisms()
        if not mechanisms:
            return
        authentication = SubElement(event.features, f"{{{NS}}}authentication")
        for name in mechanisms:
            SubElement(authentication, f"{{{NS}}}mechanism").text = name
        inline = Element(f"{{{NS}}}inline")
        m.fire("advertise-sasl-features", origin=session, session=session, features=inline)
        if len(inline):
            authentication.append(inline)

    def read_request(event: Any) -> bool | None:
        session, auth = event.origin, event.stanza
        state(session).exchange = None
        if not auth.get("mechanism"):
            return refuse(session, Failure("malformed-request", "No mechanism"))
        event.exchange = None
        event.failure = None
        user_agent = auth.find(f"{{{NS}}}user-agent")
        session.user_agent = None
        if user_agent is not None:
            parsed = parse_user_agent(user_agent)
            if isinstance(parsed, Failure):
                return refuse(session, parsed)
            session.user_agent = parsed
        return None

    def authenticate(event: Any) -> bool:
        session, auth = event.origin, event.stanza
        if event.failure is not None:
            return refuse(session, event.failure)
        mechanism = auth.get("mechanism", "")
        if not session.secure and session.sasl_needs_encryption(mechanism):
            return refuse(session, Failure("encryption-required"))
        refusal = session.sasl_throttled()
        if refusal is not None:
            return refuse(session, refusal)
        try:
            payload = decode_payload(auth.findtext(f"{{{NS}}}initial-response"))
        except ValueError:
            return refuse(session, Failure("incorrect-encoding"))
        exchange = event.exchange or session.new_sasl_exchange(mechanism)
        return outcome(session, exchange, exchange.start(payload))

    def respond(event: Any) -> bool:
        session = event.origin
        exchange, state(session).exchange = state(session).exchange, None
        if exchange is None:
            return refuse(session, Failure("malformed-request", "No exchange in progress"))
        try:
            payload = decode_payload(event.stanza.text)
        except ValueError:
            return refuse(session, Failure("incorrect-encoding"))
        return outcome(session, exchange, exchange.respond(payload or b""))

    def abort(event: Any) -> bool:
        state(event.origin).exchange = None
        return refuse(event.origin, Failure("aborted"))

    def no_task(event: Any) -> bool:
        # No module defines XEP-0388 tasks yet: <next/> and <task-data/> are out of order.
        state(event.origin).exchange = None
        return refuse(event.origin, Failure("malformed-request", "No task in progress"))

    def outcome(session: Any, exchange: Any, result: Outcome) -> bool:
        if isinstance(result, Challenge):
            state(session).exchange = exchange
            session.transport.write(serialize(_text_element("challenge", result.data)).encode())
        elif isinstance(result, Success):
            m.fire("sasl2/c2s/success", session=session, exchange=exchange,
                   username=result.username, data=result.data, success=None)
        else:
            refuse(session, result)
        return True

    def refuse(session: Any, failure: Failure) -> bool:
        session.sasl_failed(failure)
        m.fire("sasl2/c2s/failure", session=session, failure=failure)
        return True

    def send_failure(event: Any) -> bool:
        failure: Failure = event.failure
        element = Element(f"{{{NS}}}failure")
        SubElement(element, f"{{{ns.SASL}}}{failure.condition}")
        if failure.text:
            SubElement(element, f"{{{NS}}}text").text = failure.text
        event.session.transport.write(serialize(element).encode())
        return True

    def make_success(event: Any) -> None:
        session = event.session
        session.authenticated_as(event.username, event.exchange.mechanism)
        event.success = Element(f"{{{NS}}}success")
        if event.data is not None:
            SubElement(event.success, f"{{{NS}}}additional-data").text = encode_payload(event.data)

    def send_success(event: Any) -> None:
        session = event.session
        identity = session.jid or f"{session.username}@{session.host.name}"
        SubElement(event.success, f"{{{NS}}}authorization-identifier").text = str(identity)
        session.transport.write(serialize(event.success).encode())
        session.send_features()

    def remember_user_agent(event: Any) -> None:
        # XEP-0388's stable id, kept per account: which devices use it, and on
        # which day last (a write per device and day, not per login).
        agent, username = event.session.user_agent, event.session.username
        if agent is None:
            return
        record = {"software": agent.software, "device": agent.device,
                  "last_login": int(m.now()) // DAY * DAY}
        key = (username, agent.id)
        if written.get(key) != record:
            user_agents.set(username, agent.id, record)
            written[key] = record
            if len(written) > REMEMBERED_AGENTS:
                written.popitem(last=False)
        written.move_to_end(key)

    m.hook("stream-features", advertise, 1)
    m.hook(f"stanza/{NS}:authenticate", read_request, 200)
    m.hook(f"stanza/{NS}:authenticate", authenticate)
    m.hook(f"stanza/{NS}:response", respond)
    m.hook(f"stanza/{NS}:abort", abort)
    m.hook(f"stanza/{NS}:next", no_task)
    m.hook(f"stanza/{NS}:task-data", no_task)
    m.hook("sasl2/c2s/failure", send_failure, -1000)
    m.hook("sasl2/c2s/success", make_success, 1000)
    m.hook("sasl2/c2s/success", send_success, -1000)
    m.hook("sasl2/c2s/success", remember_user_agent, -1900)
    m.hook("sasl2/c2s/success", lambda event: True, -2000)
    def forget_user(event: Any) -> None:
        user_agents.set_keys(event.username, dict.fromkeys(user_agents.get_all(event.username)))
        for key in [key for key in written if key[0] == event.username]:
            del written[key]

    m.hook("user-deleted", forget_user)


def parse_user_agent(element: Element) -> UserAgent | Failure:
    """XEP-0388's `<user-agent id=...>` with optional `<software/>` and `<device/>`."""
    agent_id = (element.get("id") or "").strip()
    software = element.findtext(f"{{{NS}}}software")
    device = element.findtext(f"{{{NS}}}device")
    if not agent_id:
        return Failure("malformed-request", "The user agent needs an id")
    if len(agent_id) > MAX_USER_AGENT_ID or any(
            text is not None and len(text) > MAX_USER_AGENT_TEXT for text in (software, device)):
        return Failure("malformed-request", "User agent too long")
    return UserAgent(agent_id, _clean(software), _clean(device))


def _clean(text: str | None) -> str | None:
    """One line of printable text (it ends up in logs and the admin listing)."""
    if text is None:
        return None
    return " ".join("".join(c if c.isprintable() else " " for c in text).split()) or None


def _text_element(name: str, data: bytes | None) -> Element:
    element = Element(f"{{{NS}}}{name}")
    element.text = encode_payload(data)
    return element
