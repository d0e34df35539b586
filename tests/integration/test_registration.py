"""XEP-0077 In-Band Registration (Prosody's mod_register) with slixmpp and raw XML."""

from __future__ import annotations

import asyncio
import base64
import re
from xml.etree.ElementTree import Element, fromstring

import pytest
from slixmpp.exceptions import IqError

from tests.integration.clients import TIMEOUT, TestClient, can_login, close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

REGISTER = "jabber:iq:register"
REGISTER_FEATURE = b"http://jabber.org/features/iq-register"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
IBR_PLUGINS = ("xep_0030", "xep_0004", "xep_0066", "xep_0077", "xep_0199")
# Prosody exempts these from min_seconds_between_registrations (registration_allowlist).
THROTTLED_ADDRESSES = ("127.0.0.2", "127.0.0.3")




@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("ibr"), modules=("register",),
                         host_extra="allow_registration = true\n"
                                    "min_seconds_between_registrations = 3600\n")
    server.create_users({"taken": "pw-taken", "changer": "old-pw", "remover": "pw-remover"})
    server.start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("ibr-off"), modules=("register",))
    server.create_users({"member": "pw-member"})
    server.start()
    yield server
    assert server.stop() == 0


# -- helpers ------------------------------------------------------------------------

async def register_with_slixmpp(server, user: str, password: str) -> TestClient | None:
    """slixmpp's own XEP-0077 flow: register on the stream feature, then log in with it."""
    client = TestClient(f"{user}@{server.domain}/ibr", password, cert=server.cert,
                        mech="PLAIN", plugins=IBR_PLUGINS)
    client.registered = False

    async def on_register(_form) -> None:
        iq = client.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = user
        iq["register"]["password"] = password
        await iq.send(timeout=TIMEOUT)
        client.registered = True

    client.add_event_handler("register", on_register)
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.connect(host="127.0.0.1", port=server.c2s_port)
    if not await asyncio.wait_for(client.started, TIMEOUT):
        client.disconnect()
        return None
    return client


def read_iq(raw: RawClient) -> Element:
    data = raw.read_until(rb"</iq>|<iq[^>]*/>")
    match = re.search(rb"<iq[ >].*?(</iq>|<iq[^>]*/>)|<iq[^>]*/>", data, re.S)
    assert match, data
    return fromstring(match.group(0))


def error_of(iq: Element) -> tuple[str, str]:
    """(type, condition) of an IQ error reply."""
    assert iq.get("type") == "error", iq.attrib
    error = iq.find("{jabber:client}error")
    if error is None:  # written without a namespace prefix inside the stream
        error = iq.find("error")
    assert error is not None
    (condition,) = [child.tag.split("}")[1] for child in error
                    if child.tag.startswith(f"{{{STANZAS}}}") and not child.tag.endswith("}text")]
    return error.get("type"), condition


def register_iq(user: str, password: str, iq_id: str = "reg") -> str:
    return (f"<iq type='set' id='{iq_id}'><query xmlns='{REGISTER}'>"
            f"<username>{user}</username><password>{password}</password></query></iq>")


def raw_register(server, user: str, password: str, *, source: str | None = None,
                 secure: bool = True) -> Element:
    """One registration attempt on a fresh stream; the IQ reply."""
    raw = RawClient(server.c2s_port, source_address=source)
    try:
        if secure:
            raw.starttls(server.domain, server.cert)
        else:
            raw.open_stream(server.domain)
        raw.send(register_iq(user, password))
        return read_iq(raw)
    finally:
        raw.close()




# -- new accounts ----------------------------------------------------------------------

def test_slixmpp_registers_then_logs_in_with_the_new_account(server):
    async def scenario():
        client = await register_with_slixmpp(server, "fresh", "pw-fresh")
        assert client is not None and client.registered
        assert str(client.boundjid.bare) == server.jid("fresh")
        await close(client)

    run(scenario())
    assert can_login(server, "fresh", "pw-fresh")


def test_registration_form_is_offered_after_starttls(server):
    raw = RawClient(server.c2s_port)
    try:
        features = raw.starttls(server.domain, server.cert)
        assert REGISTER_FEATURE in features
        raw.send(f"<iq type='get' id='form'><query xmlns='{REGISTER}'/></iq>")
        reply = read_iq(raw)
    finally:
        raw.close()
    assert reply.get("type") == "result" and reply.get("id") == "form"
    query = reply.find(f"{{{REGISTER}}}query")
    assert query is not None
    assert query.find(f"{{{REGISTER}}}username") is not None
    assert query.find(f"{{{REGISTER}}}password") is not None
    assert query.find(f"{{{REGISTER}}}registered") is None


def test_an_existing_username_is_a_conflict(server):
    reply = raw_register(server, "taken", "another")
    assert error_of(reply) == ("cancel", "conflict")
    assert can_login(server, "taken", "pw-taken")


@pytest.mark.parametrize(("user", "password"), [("", "pw"), ("nopass", ""), ("bad user", "pw")])
def test_incomplete_or_invalid_registrations_are_not_acceptable(server, user, password):
    reply = raw_register(server, user, password)
    assert error_of(reply) == ("modify", "not-acceptable")


def test_insecure_stream_gets_no_registration_when_encryption_is_required(server):
    raw = RawClient(server.c2s_port)
    try:
        features = raw.open_stream(server.domain)
        assert REGISTER_FEATURE not in features
        raw.send(register_iq("plaintext", "pw-plaintext"))
        reply = read_iq(raw)
    finally:
        raw.close()
    assert error_of(reply) == ("modify", "policy-violation")
    assert not can_login(server, "plaintext", "pw-plaintext")


def test_min_seconds_between_registrations_applies_per_address(server):
    first, other = THROTTLED_ADDRESSES
    assert raw_register(server, "paced1", "pw", source=first).get("type") == "result"
    refused = raw_register(server, "paced2", "pw", source=first)
    assert error_of(refused) == ("wait", "policy-violation")
    told = re.search(r"wait (\d+) s", "".join(refused.itertext()))
    assert told is not None and 3590 <= int(told.group(1)) <= 3600  # the 3600 s interval
    assert not can_login(server, "paced2", "pw")
    # Another address has its own allowance; loopback itself is allowlisted.
    assert raw_register(server, "paced3", "pw", source=other).get("type") == "result"
    for name in ("local1", "local2"):
        assert raw_register(server, name, "pw").get("type") == "result"


# -- registration disabled (the default) ---------------------------------------------------

def test_registration_is_off_by_default(closed_server):
    raw = RawClient(closed_server.c2s_port)
    try:
        features = raw.starttls(closed_server.domain, closed_server.cert)
        assert REGISTER_FEATURE not in features
        raw.send(f"<iq type='get' id='form'><query xmlns='{REGISTER}'/></iq>")
        assert error_of(read_iq(raw)) == ("cancel", "service-unavailable")
        raw.send(register_iq("intruder", "pw-intruder", "set"))
        assert error_of(read_iq(raw)) == ("cancel", "service-unavailable")
    finally:
        raw.close()
    assert not can_login(closed_server, "intruder", "pw-intruder")


def test_slixmpp_finds_no_registration_feature_when_off(closed_server):
    async def scenario():
        client = await register_with_slixmpp(closed_server, "hopeful", "pw-hopeful")
        assert client is None

    run(scenario())


def test_password_change_works_even_when_registration_is_off(closed_server):
    async def scenario():
        client = await login(closed_server, "member", plugins=IBR_PLUGINS)
        await client.plugin["xep_0077"].change_password("pw-member-2", timeout=TIMEOUT)
        await close(client)

    run(scenario())
    assert can_login(closed_server, "member", "pw-member-2")


# -- a logged-in user's account -----------------------------------------------------------

def test_logged_in_user_changes_password_and_other_sessions_are_reset(server):
    async def scenario():
        phone = await login(server, "changer", resource="phone", plugins=IBR_PLUGINS)
        laptop = await login(server, "changer", resource="laptop", plugins=IBR_PLUGINS)
        form = await phone.plugin["xep_0077"].get_registration(timeout=TIMEOUT)
        assert form["register"]["registered"]
        assert form["register"]["username"] == "changer"
        await phone.plugin["xep_0077"].change_password("new-pw", timeout=TIMEOUT)
        # Prosody closes the user's other sessions after a password change.
        await asyncio.wait_for(laptop.ended, TIMEOUT)
        assert "reset" in laptop.stream_errors
        await phone.plugin["xep_0199"].ping(server.domain, timeout=TIMEOUT)
        await close(phone)

    run(scenario())
    assert not can_login(server, "changer", "old-pw")
    assert can_login(server, "changer", "new-pw")


def test_changing_another_users_password_is_refused(server):
    async def scenario():
        client = await login(server, "taken", plugins=IBR_PLUGINS)
        iq = client.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = "remover"
        iq["register"]["password"] = "hijacked"
        with pytest.raises(IqError):
            await iq.send(timeout=TIMEOUT)
        await close(client)

    run(scenario())
    assert not can_login(server, "remover", "hijacked")


def test_account_removal_closes_the_streams_and_login_then_fails(server):
    async def scenario():
        phone = await login(server, "remover", resource="phone", plugins=IBR_PLUGINS)
        laptop = await login(server, "remover", resource="laptop", plugins=IBR_PLUGINS)
        result = await phone.plugin["xep_0077"].cancel_registration(timeout=TIMEOUT)
        assert result["type"] == "result"
        await asyncio.wait_for(phone.ended, TIMEOUT)
        await asyncio.wait_for(laptop.ended, TIMEOUT)
        assert "not-authorized" in phone.stream_errors
        assert "not-authorized" in laptop.stream_errors

    run(scenario())
    assert not can_login(server, "remover", "pw-remover")


def test_removal_before_authentication_is_registration_required(server):
    raw = RawClient(server.c2s_port)
    try:
        raw.starttls(server.domain, server.cert)
        raw.send(f"<iq type='set' id='rm'><query xmlns='{REGISTER}'><remove/></query></iq>")
        reply = read_iq(raw)
    finally:
        raw.close()
    assert error_of(reply) == ("auth", "registration-required")


def test_registration_after_authentication_does_not_create_accounts(server):
    raw = RawClient(server.c2s_port)
    try:
        raw.starttls(server.domain, server.cert)
        token = base64.b64encode(b"\0taken\0pw-taken").decode()
        raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        raw.read_until(rb"<success")
        raw.open_stream(server.domain)
        raw.send(register_iq("sneaky", "pw-sneaky"))
        reply = read_iq(raw)
    finally:
        raw.close()
    assert reply.get("type") == "error"
    assert not can_login(server, "sneaky", "pw-sneaky")
