"""Federation between Vireo and a real Prosody 0.12 (Debian's package), both directions.

v.example (Vireo) on 127.0.0.8 and p.example (Prosody) on 127.0.0.9, each
with its own self-signed certificate, DNS from the test's server through
`unbound.forward`: STARTTLS then dialback, with the verification round
trips crossing both ways.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.clients import close, login
from tests.integration.clients import run as run_scenario
from tests.integration.fake_dns import FakeDns
from tests.integration.prosody_fixture import PROSODY, make_prosody
from tests.integration.server_fixture import make_server

pytestmark = pytest.mark.skipif(PROSODY is None, reason="prosody is not installed "
                                "(the Makefile's system-deps installs it)")

V, P = "v.example", "p.example"
USERS = {"vera": "pw-vera", "paul": "pw-paul", "vic": "pw-vic", "pia": "pw-pia"}
TIMEOUT = 30.0


def run(coro):
    return run_scenario(coro, timeout=120)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("s2s-prosody")
    dns = FakeDns().start()
    vireo = make_server(base / "vireo", domain=V, address="127.0.0.8", s2s=True,
                        extra=f'unbound = {{ forward = "{dns.forward}" }}')
    prosody = make_prosody(base / "prosody", domain=P, address="127.0.0.9",
                           dns_forward=dns.forward)
    for server in (vireo, prosody):
        dns.add_srv(server.domain, f"xmpp.{server.domain}", server.ports["s2s"])
        dns.add_address(f"xmpp.{server.domain}", server.address)
        server.create_users(USERS)
    vireo.start()
    prosody.start()
    yield vireo, prosody
    prosody.stop()
    assert vireo.stop() == 0
    dns.stop()


def test_vireo_to_prosody_and_back(pair):
    vireo, prosody = pair

    async def scenario():
        vera = await login(vireo, "vera")
        paul = await login(prosody, "paul")
        vera.send_message(mto=f"paul@{P}", mbody="hello Prosody", mtype="chat")
        received = await paul.next_message(TIMEOUT)
        assert received["body"] == "hello Prosody" and received["from"] == vera.boundjid
        paul.send_message(mto=str(vera.boundjid), mbody="hello Vireo", mtype="chat")
        received = await vera.next_message(TIMEOUT)
        assert received["body"] == "hello Vireo" and received["from"] == paul.boundjid
        info = await vera.plugin["xep_0030"].get_info(jid=P, timeout=TIMEOUT)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        await close(vera, paul)

    run(scenario())
    # Both links to Prosody took up its STARTTLS offer and authenticated with dialback.
    listing = vireo.admin("sessions", "--json")
    assert listing.returncode == 0, listing.stderr
    links = [s for s in json.loads(listing.stdout) if s["id"] == P]
    assert sorted(s["direction"] for s in links) == ["incoming", "outgoing"]
    assert all(s["secure"] and s["auth"] == "dialback" for s in links), links


def test_subscriptions_both_ways_and_prosody_pings_vireo(pair):
    vireo, prosody = pair

    async def scenario():
        pia = await login(prosody, "pia")
        vic = await login(vireo, "vic")
        await pia.get_roster()
        await vic.get_roster()
        pia_bare, vic_bare = pia.boundjid.bare, vic.boundjid.bare
        pia.send_presence(pto=vic_bare, ptype="subscribe")
        await vic.next_presence(lambda p: p["type"] == "subscribe", TIMEOUT)
        vic.send_presence(pto=pia_bare, ptype="subscribed")
        await pia.next_presence(
            lambda p: p["from"].bare == vic_bare and p["type"] == "available", TIMEOUT)
        vic.send_presence(pto=pia_bare, ptype="subscribe")
        await pia.next_presence(lambda p: p["type"] == "subscribe", TIMEOUT)
        pia.send_presence(pto=vic_bare, ptype="subscribed")
        await vic.next_presence(
            lambda p: p["from"].bare == pia_bare and p["type"] == "available", TIMEOUT)
        # Pings over each side's own link: the roster pushes before them have arrived.
        await pia.plugin["xep_0199"].ping(V, timeout=TIMEOUT)
        await vic.plugin["xep_0199"].ping(P, timeout=TIMEOUT)
        # (Prosody answers a versioned roster request with pushes, so read the client's copy.)
        assert vic.client_roster[pia_bare]["subscription"] == "both"
        assert pia.client_roster[vic_bare]["subscription"] == "both"
        await close(pia, vic)

    run(scenario())
