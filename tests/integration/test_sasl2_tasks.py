"""SASL2 tasks (XEP-0388 `<continue/>`, `<next/>`, `<task-data/>`) with XEP-0480's
SCRAM upgrade, spoken by a raw SASL2 client: an account moved from Prosody
0.12 (SCRAM-SHA-1 material only) logs in with SCRAM-SHA-1, is given the
`UPGR-SCRAM-SHA-256` task, sends its SaltedPassword, and can then log in with
SCRAM-SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from tests.integration.server_fixture import make_server
from tests.integration.test_sasl2 import authenticate, condition, connected
from tests.scram_client import client_final

USERS = {"imported": "pw-imported", "fresh": "pw-fresh"}
SASL2 = "urn:xmpp:sasl:2"
UPGRADE = "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-256</upgrade>"
SCRAM_UPGRADE = "urn:xmpp:scram-upgrade:0"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("sasl2-tasks"),
                         modules=("sasl2", "sasl2_scram_upgrade"))
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


def without_sha256(server, user: str) -> None:
    """The account as `app.py import-prosody` leaves one from Prosody 0.12."""
    server.query("UPDATE accounts SET sha256_stored_key = NULL, sha256_server_key = NULL "
                 "WHERE username = :user", user=user)


def scram(client, user: str, hash_name: str, inside: str = "") -> bytes:
    """A SASL2 SCRAM login up to the server's answer to the client-final message."""
    mechanism = {"sha1": "SCRAM-SHA-1", "sha256": "SCRAM-SHA-256"}[hash_name]
    first_bare = f"n={user},r=tasknonce"
    answer = authenticate(client, mechanism, f"n,,{first_bare}".encode(), inside)
    challenge = re.search(rb"<challenge xmlns=.urn:xmpp:sasl:2.>([^<]+)<", answer)
    assert challenge, answer
    final = client_final(USERS[user], hash_name, gs2_header="n,,", cb_data=b"",
                         client_first_bare=first_bare,
                         server_first=base64.b64decode(challenge.group(1)))
    client.send(f"<response xmlns='{SASL2}'>{base64.b64encode(final).decode()}</response>")
    return client.read_until(rb"</success>|</failure>|</continue>")


def test_an_imported_account_is_upgraded_to_scram_sha_256_at_login(server):
    without_sha256(server, "imported")
    with connected(server) as client:
        assert UPGRADE.encode() in client.features
        # While an account lacks its material, the host does not offer SCRAM-SHA-256.
        assert b"<mechanism>SCRAM-SHA-256<" not in client.features
        answer = authenticate(client, "SCRAM-SHA-256", b"n,,n=imported,r=tasknonce")
        assert condition(answer) == "invalid-mechanism"
        answer = scram(client, "imported", "sha1", UPGRADE)
        assert re.search(rb"<continue xmlns=.urn:xmpp:sasl:2.><additional-data>[^<]+"
                         rb"</additional-data><tasks><task>UPGR-SCRAM-SHA-256</task></tasks>",
                         answer), answer
        client.send(f"<next xmlns='{SASL2}' task='UPGR-SCRAM-SHA-256'/>")
        answer = client.read_until(rb"</task-data>")
        salt = re.search(rf"<salt xmlns=.{SCRAM_UPGRADE}. iterations=.(\d+).>([^<]+)<".encode(),
                         answer)
        assert salt, answer
        salted = hashlib.pbkdf2_hmac("sha256", USERS["imported"].encode(),
                                     base64.b64decode(salt.group(2)), int(salt.group(1)))
        client.send(f"<task-data xmlns='{SASL2}'><hash xmlns='{SCRAM_UPGRADE}'>"
                    f"{base64.b64encode(salted).decode()}</hash></task-data>")
        answer = client.read_until(rb"</success>|</failure>")
        assert b"<success" in answer and b"imported@localhost" in answer, answer
    with connected(server) as client:
        assert b"<mechanism>SCRAM-SHA-256<" in client.features
        assert b"<success" in scram(client, "imported", "sha256", UPGRADE)


def test_no_task_for_an_account_that_has_the_material(server):
    with connected(server) as client:
        assert b"<success" in scram(client, "fresh", "sha1", UPGRADE)


def test_tasks_out_of_order_or_with_bad_data_are_refused(server):
    with connected(server) as client:
        client.send(f"<next xmlns='{SASL2}' task='UPGR-SCRAM-SHA-256'/>")
        assert condition(client.read_until(rb"</failure>")) == "malformed-request"
        client.send(f"<task-data xmlns='{SASL2}'/>")
        assert condition(client.read_until(rb"</failure>")) == "malformed-request"
        without_sha256(server, "fresh")
        assert b"<continue" in scram(client, "fresh", "sha1", UPGRADE)
        client.send(f"<next xmlns='{SASL2}' task='UPGR-OTHER'/>")
        assert condition(client.read_until(rb"</failure>")) == "malformed-request"
        assert b"<continue" in scram(client, "fresh", "sha1", UPGRADE)
        client.send(f"<next xmlns='{SASL2}' task='UPGR-SCRAM-SHA-256'/>")
        client.read_until(rb"</task-data>")
        client.send(f"<task-data xmlns='{SASL2}'><hash xmlns='{SCRAM_UPGRADE}'>c2hvcnQ="
                    "</hash></task-data>")
        assert condition(client.read_until(rb"</failure>")) == "malformed-request"
        # Nothing was stored: the account still lacks SHA-256 material.
        assert server.query("SELECT sha256_stored_key FROM accounts WHERE username = 'fresh'") \
            == [(None,)]
