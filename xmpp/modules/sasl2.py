"""Extensible SASL Profile (XEP-0388), as Prosody's mod_sasl2: `<authentication/>`
beside RFC 6120's `<mechanisms/>`, the same mechanisms and accounts, no
stream restart, and inline features hooked in by other modules.

Events (Prosody's names, and `sasl2/c2s/tasks`):
- `advertise-sasl-features` (`origin`, `features`, `authentication`): add
  children to `<inline/>` (or to `<authentication/>` itself: XEP-0480's upgrades).
- `stanza/urn:xmpp:sasl:2:authenticate` (`origin`, `stanza`): the request.
  This module reads the `<user-agent/>` at priority 200 and runs the
  exchange at 0; modules in between (Bind 2, FAST) keep what they need from
  the request, may set `event.exchange` to serve the mechanism themselves,
  or set `event.failure` (a `Failure`) to refuse it.
- `sasl2/c2s/success` (`session`, `success`, `exchange`): at 1000 the session
  becomes authenticated and `success` is made; modules add children in
  between; at -1000 the authorization identifier is added and it is sent
  with the new stream features; below that, modules act on the stream.
- `sasl2/c2s/tasks` (`session`, `username`, `request`: the `<authenticate/>`,
  `tasks`): once the mechanism succeeded, modules put `Task`s the client must
  complete into `tasks` by name; the client is told them in `<continue/>`,
  picks each with `<next task=.../>` and exchanges `<task-data/>` with it;
  `<success/>` comes once none is left (XEP-0388's tasks).
- `sasl2/c2s/failure` (`session`, `failure`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol
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


class Task(Protocol):
    """One XEP-0388 task, run after the mechanism succeeded."""

    def next(self, data: Element | None) -> Element | Failure | None:
        """Answer `<next/>` (`data` None) or the client's `<task-data/>`: the
        payload of a `<task-data/>` to send, None once the task is done, or a
        Failure that ends the login."""


@dataclass
class _Tasks:
    """A login the mechanism accepted, waiting on tasks."""

    exchange: Any
    username: str
    tasks: dict[str, Task]
    current: str | None = None


@dataclass
class _State:
    """A session's exchange waiting for the client's next `<response/>`, or its
    tasks waiting for `<next/>` or `<task-data/>`."""

    exchange: Any = None
    request: Element | None = None
    tasks: _Tasks | None = None

    def reset(self, request: Element | None = None) -> None:
        self.exchange, self.request, self.tasks = None, request, None


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
        m.fire("advertise-sasl-features", origin=session, session=session, features=inline,
               authentication=authentication)
        if len(inline):
            authentication.append(inline)

    def read_request(event: Any) -> bool | None:
        session, auth = event.origin, event.stanza
        state(session).reset(auth)
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
        state(session).tasks = None
        if exchange is None:
            return refuse(session, Failure("malformed-request", "No exchange in progress"))
        try:
            payload = decode_payload(event.stanza.text)
        except ValueError:
            return refuse(session, Failure("incorrect-encoding"))
        return outcome(session, exchange, exchange.respond(payload or b""))

    def abort(event: Any) -> bool:
        state(event.origin).reset()
        return refuse(event.origin, Failure("aborted"))

    def next_task(event: Any) -> bool:
        session = event.origin
        pending = state(session).tasks
        name = event.stanza.get("task")
        if pending is None or pending.current is not None or name not in pending.tasks:
            state(session).reset()
            return refuse(session, Failure("malformed-request", "No such task to start"))
        pending.current = name
        return run_task(session, pending, None)

    def task_data(event: Any) -> bool:
        session = event.origin
        pending = state(session).tasks
        if pending is None or pending.current is None:
            state(session).reset()
            return refuse(session, Failure("malformed-request", "No task in progress"))
        return run_task(session, pending, event.stanza)

    def run_task(session: Any, pending: _Tasks, data: Element | None) -> bool:
        assert pending.current is not None
        answer = pending.tasks[pending.current].next(data)
        if isinstance(answer, Failure):
            state(session).reset()
            return refuse(session, answer)
        if answer is not None:
            element = Element(f"{{{NS}}}task-data")
            element.append(answer)
            session.transport.write(serialize(element).encode())
            return True
        del pending.tasks[pending.current]
        pending.current = None
        if pending.tasks:
            send_continue(session, None, pending.tasks)
        else:
            state(session).reset()
            # The mechanism's additional data went out with the first <continue/>.
            succeed(session, pending.exchange, Success(pending.username, None))
        return True

    def send_continue(session: Any, data: bytes | None, tasks: dict[str, Task]) -> None:
        element = Element(f"{{{NS}}}continue")
        if data is not None:
            SubElement(element, f"{{{NS}}}additional-data").text = encode_payload(data)
        names = SubElement(element, f"{{{NS}}}tasks")
        for name in tasks:
            SubElement(names, f"{{{NS}}}task").text = name
        session.transport.write(serialize(element).encode())

    def succeed(session: Any, exchange: Any, result: Success) -> None:
        m.fire("sasl2/c2s/success", session=session, exchange=exchange,
               username=result.username, data=result.data, success=None)

    def outcome(session: Any, exchange: Any, result: Outcome) -> bool:
        if isinstance(result, Challenge):
            state(session).exchange = exchange
            session.transport.write(serialize(_text_element("challenge", result.data)).encode())
        elif isinstance(result, Success):
            tasks = m.fire_event("sasl2/c2s/tasks", session=session, username=result.username,
                                 request=state(session).request, tasks={}).tasks
            if tasks:
                state(session).tasks = _Tasks(exchange, result.username, tasks)
                send_continue(session, result.data, tasks)
            else:
                state(session).reset()
                succeed(session, exchange, result)
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
    m.hook(f"stanza/{NS}:next", next_task)
    m.hook(f"stanza/{NS}:task-data", task_data)
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
