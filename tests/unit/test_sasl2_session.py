"""SASL2, Bind 2 and FAST on a c2s session without sockets: the server core on
in-memory accounts and SQLite module stores, a clock moved by hand.

What needs time to pass (token rotation and expiry) and what needs counting
(a FAST login hashes no password) is shown here; the wire with real clients
is tests/integration/test_sasl2.py.
"""

from __future__ import annotations

import base64
import re
from xml.etree.ElementTree import Element

import pytest

from storage.db import Database
from storage.stores import StoreFactory
from tests.certs import make_self_signed
from tests.unit.core_fixtures import MemoryAccounts, MemoryOffline, MemoryRosters
from tests.unit.storage_fixtures import sqlite_url
from tests.unit.test_c2s_session import Clock, FakeTransport, Reader, header
from xmpp.c2s import C2SSession
from xmpp.config import load_config
from xmpp.core import ServerCore
from xmpp.sasl_ht import initiator_hash, token_key

HOST = "example.org"
PASSWORD = "s3cret"
SASL2 = "urn:xmpp:sasl:2"
FAST = "urn:xmpp:fast:0"
DAY = 86400.0


class CountingAccounts(MemoryAccounts):
    """Accounts that count password checks (each one is a PBKDF2)."""

    def __init__(self) -> None:
        super().__init__()
        self.password_checks = 0

    def check_password(self, host: str, username: str, password: str) -> bool:
        self.password_checks += 1
        return super().check_password(host, username, password)

    def scram_credentials(self, host, username, mechanism):
        self.password_checks += 1
        return super().scram_credentials(host, username, mechanism)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(tmp_path, clock):
    cert, key = make_self_signed(tmp_path, HOST)
    config = tmp_path / "vireo.cfg.lua"
    config.write_text(f"""
data_path = "{tmp_path / 'data'}"
modules_enabled = {{ "saslauth", "tls", "sasl2", "sasl2_bind2", "sasl2_fast" }}
ssl = {{ certificate = "{cert}", key = "{key}" }}
VirtualHost "{HOST}"
""")
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    accounts = CountingAccounts()
    core = ServerCore(load_config(config), accounts=accounts, stores=StoreFactory(database),
                      typed_stores={"rosters": MemoryRosters(), "offline": MemoryOffline(),
                                    "uploads": None}, clock=clock)
    accounts.create(HOST, "alice", PASSWORD)
    yield core
    database.close()


def connect(core) -> tuple[C2SSession, Reader, Element]:
    transport = FakeTransport(secure=True)
    session = C2SSession(core.c2s, transport)
    reader = Reader(transport)
    session.data_received(header(HOST))
    return session, reader, reader.one()


def authenticate(session: C2SSession, reader: Reader, mechanism: str, initial: bytes,
                 inside: str) -> list[Element]:
    session.data_received(
        f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'><initial-response>"
        f"{base64.b64encode(initial).decode()}</initial-response>{inside}</authenticate>".encode())
    return reader.elements()


def agent(agent_id: str = "phone-1") -> str:
    return f"<user-agent id='{agent_id}'><software>Tester</software></user-agent>"


def password_login(core, extra: str = "") -> list[Element]:
    session, reader, _ = connect(core)
    return authenticate(session, reader, "PLAIN", f"\0alice\0{PASSWORD}".encode(),
                        agent() + extra)


def token_of(success: Element) -> str | None:
    token = success.find(f"{{{FAST}}}token")
    return None if token is None else token.get("token")


def fast_login(core, token: str, agent_id: str = "phone-1") -> Element:
    session, reader, _ = connect(core)
    proof = b"alice\0" + initiator_hash(token_key(token))
    answer = authenticate(session, reader, "HT-SHA-256-NONE", proof,
                          agent(agent_id) + f"<fast xmlns='{FAST}'/>")
    return answer[0]


def test_features_offer_sasl2_with_bind2_and_fast(core):
    _session, _reader, features = connect(core)
    authentication = features.find(f"{{{SASL2}}}authentication")
    assert authentication is not None
    inline = authentication.find(f"{{{SASL2}}}inline")
    assert inline.find("{urn:xmpp:bind:0}bind") is not None
    fast = inline.find(f"{{{FAST}}}fast")
    # A FakeTransport has no TLS channel binding: only the unbound HT mechanism.
    assert [m.text for m in fast] == ["HT-SHA-256-NONE"]


def test_success_binds_and_tells_the_authorization_identifier_then_features(core):
    success, features = password_login(
        core, "<bind xmlns='urn:xmpp:bind:0'><tag>My Phone!</tag></bind>")
    jid = success.findtext(f"{{{SASL2}}}authorization-identifier")
    assert re.fullmatch(r"alice@example\.org/MyPhone~[\w-]{8}", jid)
    assert success.find("{urn:xmpp:bind:0}bound") is not None
    # Bound already: nothing left to negotiate, only what the roster announces
    # (versioning, pre-approval) may be listed.
    informational = {"{urn:xmpp:features:rosterver}ver", "{urn:xmpp:features:pre-approval}sub"}
    assert {child.tag for child in features} <= informational
    # The same device gets the same resource back.
    again, _ = password_login(core, "<bind xmlns='urn:xmpp:bind:0'><tag>My Phone!</tag></bind>")
    assert again.findtext(f"{{{SASL2}}}authorization-identifier") == jid


def test_fast_login_hashes_no_password_and_rotates_then_expires(core, clock):
    success, _ = password_login(
        core, f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>")
    token = token_of(success)
    assert token and token.startswith("secret-token:fast-")
    accounts = core.services.accounts
    checks = accounts.password_checks

    success = fast_login(core, token)
    assert success.tag == f"{{{SASL2}}}success"
    assert accounts.password_checks == checks
    assert token_of(success) is None  # fresh: no rotation yet

    clock.now += 2 * DAY  # older than sasl2_fast_token_min_ttl: the login rotates it
    success = fast_login(core, token)
    rotated = token_of(success)
    assert rotated and rotated != token
    # Until the new token is used the current one still works (the client may
    # have missed the rotation), and is rotated again; once the newest is used,
    # it is the current one and the old one is gone.
    again = fast_login(core, token)
    assert again.tag == f"{{{SASL2}}}success"
    rotated = token_of(again)
    assert fast_login(core, rotated).tag == f"{{{SASL2}}}success"
    assert fast_login(core, token).tag == f"{{{SASL2}}}failure"

    clock.now += 22 * DAY  # past sasl2_fast_token_ttl
    failure = fast_login(core, rotated)
    assert failure.tag == f"{{{SASL2}}}failure"
    assert failure.find("{urn:ietf:params:xml:ns:xmpp-sasl}credentials-expired") is not None
    assert accounts.password_checks == checks


def test_tokens_are_stored_hashed(core):
    success, _ = password_login(
        core, f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>")
    token = token_of(success)
    stored = core.services.stores.open(HOST, "fast_tokens", "map").get_all("alice")
    assert token not in repr(stored)
    assert [record["key"] for record in stored.values()] == [token_key(token).hex()]


def test_user_agent_is_kept_per_account_and_shown(core):
    session, reader, _ = connect(core)
    authenticate(session, reader, "PLAIN", f"\0alice\0{PASSWORD}".encode(),
                 "<user-agent id='laptop-7'><software>Tester 1.0</software>"
                 "<device>Work\nlaptop</device></user-agent>")
    assert session.describe()["client"] == "Tester 1.0 / Work laptop"
    kept = core.services.stores.open(HOST, "sasl2_user_agents", "map").get_all("alice")
    assert kept["laptop-7"]["software"] == "Tester 1.0"


def test_failures_carry_the_rfc6120_condition_and_text(core):
    session, reader, _ = connect(core)
    failure, = authenticate(session, reader, "PLAIN", b"\0alice\0wrong", agent())
    assert failure.tag == f"{{{SASL2}}}failure"
    assert failure.find("{urn:ietf:params:xml:ns:xmpp-sasl}not-authorized") is not None
    session.data_received(f"<response xmlns='{SASL2}'>AAAA</response>".encode())
    failure, = reader.elements()
    assert failure.findtext(f"{{{SASL2}}}text") == "No exchange in progress"
    assert not session.authenticated


def test_sasl2_after_login_ends_the_stream_and_tasks_are_out_of_order(core):
    session, reader, _ = connect(core)
    session.data_received(f"<next xmlns='{SASL2}' task='HOTP'/>".encode())
    failure, = reader.elements()
    assert failure.findtext(f"{{{SASL2}}}text") == "No such task to start"
    authenticate(session, reader, "PLAIN", f"\0alice\0{PASSWORD}".encode(), agent())
    session.data_received(f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'/>".encode())
    error = reader.elements()[-1]
    assert error.find("{urn:ietf:params:xml:ns:xmpp-streams}policy-violation") is not None
    assert session.closed
