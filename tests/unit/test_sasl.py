"""SASL server exchanges (xmpp/sasl.py): RFC test vectors, failures, and slixmpp as a client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import pytest
from slixmpp.util.sasl.mechanisms import PLAIN, SCRAM, SASLMutualAuthFailed

from tests.scram_client import client_final
from xmpp.sasl import (
    Challenge,
    Failure,
    Outcome,
    SaslExchange,
    Success,
    decode_payload,
    downgrade_protection,
    encode_payload,
    offered_mechanisms,
    saslprep,
)
from xmpp.sasl_ht import HtExchange, TokenProof, ht_mechanisms, new_token
from xmpp.scram import DEFAULT_ITERATIONS, SCRAM_HASHES, ScramCredentials, derive

HOST = "example.com"
ALL = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]

# RFC 5802 section 5 and RFC 7677 section 3: user "user", password "pencil".
VECTORS = {
    "SCRAM-SHA-1": {
        "salt": "QSXCR+Q6sek8bf92",
        "client_first": "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "server_nonce": "3rfcNHYJY1ZVvWVs7j",
        "server_first": "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "client_final": "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                        "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "server_final": "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    },
    "SCRAM-SHA-256": {
        "salt": "W22ZaJ0SNY7soEsUEjb6gQ==",
        "client_first": "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "server_nonce": "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "server_first": "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "client_final": "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "server_final": "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    },
}


class Accounts:
    """An in-memory CredentialSource; SCRAM material uses the RFC salts."""

    def __init__(self, **passwords: str) -> None:
        self.passwords = passwords
        self.checked: list[tuple[str, str]] = []
        self._cache: dict[tuple[str, str], ScramCredentials] = {}

    def check_password(self, username: str, password: str) -> bool:
        self.checked.append((username, password))
        return self.passwords.get(username) == password

    def scram_credentials(self, username: str, mechanism: str) -> ScramCredentials | None:
        if username not in self.passwords:
            return None
        if (username, mechanism) not in self._cache:
            salt = base64.b64decode(VECTORS[mechanism]["salt"])
            self._cache[username, mechanism] = derive(
                self.passwords[username], SCRAM_HASHES[mechanism], salt, 4096)
        return self._cache[username, mechanism]


@pytest.fixture
def accounts() -> Accounts:
    return Accounts(user="pencil", juliet="r0m30", **{"a=b,c": "odd"})


def exchange(accounts: Accounts, mechanism: str, *, offered: list[str] = ALL,
             server_nonce: str = "3rfcNHYJY1ZVvWVs7j", **options: Any) -> SaslExchange:
    return SaslExchange(mechanism, accounts, host=HOST, offered=offered,
                        nonce=lambda: server_nonce, **options)


def scram_first(accounts: Accounts, client_first: bytes,
                mechanism: str = "SCRAM-SHA-1") -> tuple[SaslExchange, Outcome]:
    ex = exchange(accounts, mechanism)
    return ex, ex.start(client_first)


# -- mechanisms offered, payload coding ----------------------------------------------------


def test_plain_offered_only_when_secure_or_allowed():
    assert offered_mechanisms(secure=True, allow_unencrypted_plain_auth=False) == ALL
    assert offered_mechanisms(secure=False, allow_unencrypted_plain_auth=True) == ALL
    assert offered_mechanisms(secure=False, allow_unencrypted_plain_auth=False) == [
        "SCRAM-SHA-256", "SCRAM-SHA-1"]


def test_only_scram_every_account_can_answer_is_offered():
    assert offered_mechanisms(secure=True, allow_unencrypted_plain_auth=False,
                              scram={"SCRAM-SHA-1"}) == ["SCRAM-SHA-1", "PLAIN"]


def test_decode_payload():
    assert decode_payload(None) is None
    assert decode_payload("") is None
    assert decode_payload("=") == b""
    assert decode_payload("AGp1bGlldAByMG0zMA==") == b"\0juliet\0r0m30"
    assert decode_payload("AGp1bGll\n  dAByMG0zMA==\n") == b"\0juliet\0r0m30"


@pytest.mark.parametrize("text", ["AGp1bGlldAByMG0zMA", "AGp1*GlldA==", "YQ==YQ==", "é", "=="])
def test_decode_payload_rejects_bad_base64(text):
    with pytest.raises(ValueError):
        decode_payload(text)


def test_encode_payload():
    assert encode_payload(None) is None
    assert encode_payload(b"") == "="
    assert encode_payload(b"\0juliet\0r0m30") == "AGp1bGlldAByMG0zMA=="


# -- SCRAM: RFC vectors and failures ---------------------------------------------------------


@pytest.mark.parametrize("mechanism", sorted(VECTORS))
def test_rfc_vectors(accounts, mechanism):
    v = VECTORS[mechanism]
    ex = exchange(accounts, mechanism, server_nonce=v["server_nonce"], announce_offer=False)
    assert ex.start(v["client_first"].encode()) == Challenge(v["server_first"].encode())
    assert ex.respond(v["client_final"].encode()) == Success("user", v["server_final"].encode())


@pytest.mark.parametrize("mechanism", sorted(VECTORS))
def test_scram_without_initial_response(accounts, mechanism):
    v = VECTORS[mechanism]
    ex = exchange(accounts, mechanism, server_nonce=v["server_nonce"], announce_offer=False)
    assert ex.start(None) == Challenge(b"")
    assert ex.respond(v["client_first"].encode()) == Challenge(v["server_first"].encode())
    assert ex.respond(v["client_final"].encode()) == Success("user", v["server_final"].encode())


def test_scram_wrong_password(accounts):
    accounts.passwords["user"] = "not pencil"
    v = VECTORS["SCRAM-SHA-1"]
    ex = exchange(accounts, "SCRAM-SHA-1", announce_offer=False)
    assert ex.start(v["client_first"].encode()) == Challenge(v["server_first"].encode())
    assert ex.respond(v["client_final"].encode()) == Failure("not-authorized")


def test_scram_unknown_user_looks_like_a_known_one(accounts):
    shape = re.compile(rb"r=abcdef3rfcNHYJY1ZVvWVs7j,s=[A-Za-z0-9+/]{22}==,i=(\d+)"
                       rb",h=[A-Za-z0-9+/]{27}=")

    def first_for(name: str) -> bytes:
        _ex, out = scram_first(accounts, f"n,,n={name},r=abcdef".encode())
        assert isinstance(out, Challenge)
        match = shape.fullmatch(out.data)
        assert match and int(match.group(1)) == DEFAULT_ITERATIONS
        return out.data

    assert first_for("nobody") == first_for("nobody")  # the same salt each time, as for a real one
    assert first_for("nobody") != first_for("somebody")

    ex, _ = scram_first(accounts, b"n,,n=nobody,r=abcdef")
    proof = base64.b64encode(bytes(20)).decode()
    final = f"c=biws,r=abcdef3rfcNHYJY1ZVvWVs7j,p={proof}".encode()
    assert ex.respond(final) == Failure("not-authorized")


def run_scram(accounts: Accounts, client_first: str, password: str,
              mechanism: str = "SCRAM-SHA-1") -> Outcome:
    ex, out = scram_first(accounts, client_first.encode(), mechanism)
    if not isinstance(out, Challenge):
        return out
    at = client_first.index("n=")
    return ex.respond(client_final(password, SCRAM_HASHES[mechanism],
                                   gs2_header=client_first[:at], cb_data=b"",
                                   client_first_bare=client_first[at:], server_first=out.data))


def test_scram_case_folded_username_succeeds(accounts):
    out = run_scram(accounts, "n,,n=USER,r=abc", "pencil")
    assert isinstance(out, Success) and out.username == "user"


def test_scram_saslname_escapes(accounts):
    out = run_scram(accounts, "n,,n=a=3Db=2Cc,r=abc", "odd")
    assert isinstance(out, Success) and out.username == "a=b,c"


def test_scram_y_flag_and_extensions(accounts):
    out = run_scram(accounts, "y,,n=juliet,r=abc,x=ext", "r0m30", "SCRAM-SHA-256")
    assert isinstance(out, Success) and out.username == "juliet"


def test_scram_authzid(accounts):
    assert isinstance(run_scram(accounts, "n,a=juliet@Example.com,n=juliet,r=x", "r0m30"),
                      Success)
    assert run_scram(accounts, "n,a=romeo@example.com,n=juliet,r=x", "r0m30") == Failure(
        "invalid-authzid")
    assert run_scram(accounts, "n,a=juliet@example.net,n=juliet,r=x", "r0m30") == Failure(
        "invalid-authzid")


def test_scram_invalid_username_is_not_authorized(accounts):
    assert run_scram(accounts, "n,,n=ju@liet,r=abc", "r0m30") == Failure("not-authorized")
    assert run_scram(accounts, "n,,n=,r=abc", "r0m30") == Failure("not-authorized")


def test_scram_channel_binding_refused(accounts):
    _ex, out = scram_first(accounts, b"p=tls-unique,,n=user,r=abc")
    assert isinstance(out, Failure) and out.condition == "malformed-request"


@pytest.mark.parametrize("message", [
    b"", b"n,,", b"n", b"n,n=user,r=abc", b"x,,n=user,r=abc", b"n,,r=abc,n=user",
    b"n,,n=user", b"n,,m=ext,n=user,r=abc", b"n,,n=us=2Ber,r=abc", b"n,,n=user=,r=abc",
    b"n,,n=user,r=", b"n,,n=user,r=abc,junk", b"n,b=x,n=user,r=abc", b"n,a=us=er,n=user,r=a",
    b"n,,n=user,r=ab\x7fc", b"n,,n=\xff,r=abc",
])
def test_scram_malformed_client_first(accounts, message):
    _ex, out = scram_first(accounts, message)
    assert isinstance(out, Failure) and out.condition == "malformed-request"


GOOD_FINAL = VECTORS["SCRAM-SHA-1"]["client_final"]
PROOF = GOOD_FINAL.rsplit(",p=", 1)[1]


@pytest.mark.parametrize("final", [
    "",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",  # no proof
    f"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,c=biws,p={PROOF}",  # order
    f"c=eSws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p={PROOF}",  # "y,," binding
    f"c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p={PROOF}",  # only the client's nonce
    f"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7jX,p={PROOF}",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=AAAA",  # wrong length
    f"c=biw,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p={PROOF}",
    f"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,junk,p={PROOF}",
])
def test_scram_malformed_client_final(accounts, final):
    ex, first = scram_first(accounts, VECTORS["SCRAM-SHA-1"]["client_first"].encode())
    assert isinstance(first, Challenge)
    out = ex.respond(final.encode())
    assert isinstance(out, Failure) and out.condition == "malformed-request"


def test_scram_final_extension_is_covered_by_the_proof(accounts):
    # An extension the client did not sign makes the proof fail, not the parser.
    ex, _ = scram_first(accounts, VECTORS["SCRAM-SHA-1"]["client_first"].encode())
    tampered = GOOD_FINAL.replace(",p=", ",x=1,p=")
    assert ex.respond(tampered.encode()) == Failure("not-authorized")


# -- PLAIN -----------------------------------------------------------------------------------


def plain(accounts: Accounts, message: bytes | None,
          offered: list[str] = ALL) -> Outcome:
    return exchange(accounts, "PLAIN", offered=offered).start(message)


def test_plain_success(accounts):
    assert plain(accounts, b"\0juliet\0r0m30") == Success("juliet", None)
    assert plain(accounts, b"juliet@example.com\0juliet\0r0m30") == Success("juliet", None)
    assert plain(accounts, b"Juliet@EXAMPLE.com\0JULIET\0r0m30") == Success("juliet", None)


def test_plain_without_initial_response(accounts):
    ex = exchange(accounts, "PLAIN")
    assert ex.start(None) == Challenge(b"")
    assert ex.respond(b"\0juliet\0r0m30") == Success("juliet", None)


def test_plain_failures(accounts):
    assert plain(accounts, b"\0juliet\0wrong") == Failure("not-authorized")
    assert plain(accounts, b"\0nobody\0r0m30") == Failure("not-authorized")
    assert plain(accounts, b"\0ju liet\0r0m30") == Failure("not-authorized")
    assert plain(accounts, b"\0juliet\0bad\x07pw") == Failure("not-authorized")
    assert plain(accounts, b"romeo@example.com\0juliet\0r0m30") == Failure("invalid-authzid")
    assert plain(accounts, b"juliet@example.com/res\0juliet\0r0m30") == Failure(
        "invalid-authzid")
    assert plain(accounts, b"juliet@\0juliet\0r0m30") == Failure("invalid-authzid")


@pytest.mark.parametrize("message", [
    b"", b"juliet", b"\0juliet", b"\0juliet\0r0m30\0", b"\0\0r0m30", b"\0juliet\0",
    b"\0jul\xffiet\0r0m30",
])
def test_plain_malformed(accounts, message):
    assert plain(accounts, message) == Failure("malformed-request")


def test_plain_password_is_saslprepped(accounts):
    assert plain(accounts, "\0juliet\0r0\u00adm30".encode()) == Success("juliet", None)
    assert accounts.checked[-1] == ("juliet", "r0m30")


def test_plain_not_offered_is_invalid_mechanism(accounts):
    assert plain(accounts, b"\0juliet\0r0m30", offered=["SCRAM-SHA-1"]) == Failure(
        "invalid-mechanism")
    assert exchange(accounts, "DIGEST-MD5", offered=[*ALL, "DIGEST-MD5"]).start(None) == Failure(
        "invalid-mechanism")


# -- exchange life cycle -----------------------------------------------------------------------


def test_abort_ends_the_exchange(accounts):
    ex, _ = scram_first(accounts, VECTORS["SCRAM-SHA-1"]["client_first"].encode())
    assert ex.abort() == Failure("aborted")
    out = ex.respond(VECTORS["SCRAM-SHA-1"]["client_final"].encode())
    assert isinstance(out, Failure) and out.condition == "malformed-request"


def test_nothing_after_the_outcome(accounts):
    ex = exchange(accounts, "PLAIN")
    assert isinstance(ex.start(b"\0juliet\0r0m30"), Success)
    out = ex.respond(b"\0juliet\0r0m30")
    assert isinstance(out, Failure) and out.condition == "malformed-request"
    with pytest.raises(RuntimeError):
        ex.start(None)


def test_failure_conditions_are_checked():
    with pytest.raises(ValueError):
        Failure("bad-request")


# -- SASLprep (RFC 4013 section 3 examples) --------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("I\u00adX", "IX"), ("user", "user"), ("USER", "USER"), ("\u00aa", "a"),
    ("\u2168", "IX"), ("a\u00a0b", "a b"),
])
def test_saslprep(given, expected):
    assert saslprep(given) == expected


@pytest.mark.parametrize("given", ["\u0007", "\u0627\u0031", "a\ufffdb\U000e0001"])
def test_saslprep_rejects(given):
    with pytest.raises(ValueError):
        saslprep(given)


# -- slixmpp's client mechanisms against the server --------------------------------------------


def slixmpp_mech(cls: type, mechanism: str, username: str, password: str, authzid: str = ""):
    creds = {"username": username.encode(), "password": password.encode(),
             "authzid": authzid.encode(), "channel_binding": b""}
    security = {"encrypted": True, "unencrypted_scram": True, "encrypted_plain": True,
                "unencrypted_plain": False, "binding_proposed": False, "tls_version": "TLSv1.3"}
    return cls(mechanism, creds, security)


def drive(mech, ex: SaslExchange) -> Outcome:
    """Run slixmpp's client steps against the exchange until an outcome; bounded."""
    out = ex.start(mech.process(b""))
    for _ in range(4):
        if not isinstance(out, Challenge):
            break
        out = ex.respond(mech.process(out.data))
    if isinstance(out, Success) and out.data is not None:
        mech.process(out.data)  # verifies the server signature, raising if wrong
    return out


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_slixmpp_scram(accounts, mechanism):
    ex = SaslExchange(mechanism, accounts, host=HOST, offered=ALL)
    mech = slixmpp_mech(SCRAM, mechanism, "juliet", "r0m30")
    out = drive(mech, ex)
    assert isinstance(out, Success) and out.username == "juliet"
    assert mech._mutual_auth  # slixmpp checked our server signature


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_slixmpp_scram_with_authzid_and_escaping(accounts, mechanism):
    mech = slixmpp_mech(SCRAM, mechanism, "a=b,c", "odd", authzid="a=b,c@example.com")
    out = drive(mech, SaslExchange(mechanism, accounts, host=HOST, offered=ALL))
    assert isinstance(out, Success) and out.username == "a=b,c"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_slixmpp_scram_wrong_password(accounts, mechanism):
    mech = slixmpp_mech(SCRAM, mechanism, "juliet", "romeo")
    out = drive(mech, SaslExchange(mechanism, accounts, host=HOST, offered=ALL))
    assert out == Failure("not-authorized")


def test_slixmpp_detects_a_forged_server_signature(accounts):
    mech = slixmpp_mech(SCRAM, "SCRAM-SHA-256", "juliet", "r0m30")
    ex = SaslExchange("SCRAM-SHA-256", accounts, host=HOST, offered=ALL)
    first = ex.start(mech.process(b""))
    assert isinstance(first, Challenge)
    out = ex.respond(mech.process(first.data))
    assert isinstance(out, Success)
    with pytest.raises(SASLMutualAuthFailed):
        mech.process(b"v=" + base64.b64encode(bytes(32)))


def test_slixmpp_plain(accounts):
    mech = slixmpp_mech(PLAIN, "PLAIN", "juliet", "r0m30")
    assert drive(mech, SaslExchange("PLAIN", accounts, host=HOST, offered=ALL)) == Success(
        "juliet", None)
    mech = slixmpp_mech(PLAIN, "PLAIN", "juliet", "r0m30", authzid="juliet@example.com")
    assert drive(mech, SaslExchange("PLAIN", accounts, host=HOST, offered=ALL)) == Success(
        "juliet", None)
    mech = slixmpp_mech(PLAIN, "PLAIN", "juliet", "nope")
    assert drive(mech, SaslExchange("PLAIN", accounts, host=HOST, offered=ALL)) == Failure(
        "not-authorized")


def test_stored_material_and_plain_agree_on_a_password_saslprep_changes():
    """RFC 5802 normalises the password: "\u2168" (ROMAN NUMERAL NINE) is "IX" to SASLprep."""
    from xmpp.scram import derive, password_matches

    stored = derive("\u2168", "sha256", b"salt", 4096)
    assert password_matches("IX", "sha256", stored)
    assert stored == derive("IX", "sha256", b"salt", 4096)


# -- channel binding (SCRAM-*-PLUS) and downgrade protection -----------------------------------

BINDINGS = {"tls-exporter": b"E" * 32, "tls-server-end-point": b"S" * 32}
WITH_PLUS = offered_mechanisms(secure=True, allow_unencrypted_plain_auth=False,
                               channel_binding=True)


def plus_exchange(accounts: Accounts, mechanism: str = "SCRAM-SHA-1-PLUS") -> SaslExchange:
    return exchange(accounts, mechanism, offered=WITH_PLUS, channel_bindings=BINDINGS)


def bound_login(accounts: Accounts, flag: str, cb_data: bytes,
                mechanism: str = "SCRAM-SHA-1-PLUS") -> Outcome:
    ex = plus_exchange(accounts, mechanism)
    first_bare = "n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    first = ex.start(f"{flag},,{first_bare}".encode())
    if not isinstance(first, Challenge):
        return first
    hash_name = SCRAM_HASHES[mechanism.removesuffix("-PLUS")]
    return ex.respond(client_final("pencil", hash_name, gs2_header=f"{flag},,", cb_data=cb_data,
                                   client_first_bare=first_bare, server_first=first.data))


def test_plus_offered_only_with_a_channel_binding():
    assert ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", *ALL] == WITH_PLUS


@pytest.mark.parametrize("binding", sorted(BINDINGS))
def test_plus_succeeds_with_this_connections_binding(accounts, binding):
    assert isinstance(bound_login(accounts, f"p={binding}", BINDINGS[binding]), Success)


def test_plus_with_another_binding_is_not_authorized(accounts):
    # The data of another TLS session: a man in the middle relaying the exchange.
    assert bound_login(accounts, "p=tls-exporter", b"X" * 32) == Failure(
        "not-authorized", "channel binding does not match")


@pytest.mark.parametrize(("mechanism", "flag", "condition"), [
    ("SCRAM-SHA-1-PLUS", "n", "malformed-request"),  # -PLUS without binding
    ("SCRAM-SHA-1-PLUS", "p=tls-unique", "malformed-request"),  # a type this link lacks
    ("SCRAM-SHA-1", "p=tls-exporter", "malformed-request"),  # binding without -PLUS
    ("SCRAM-SHA-1", "y", "not-authorized"),  # the client saw no -PLUS: downgraded
])
def test_gs2_flags_that_do_not_fit_are_refused(accounts, mechanism, flag, condition):
    outcome = bound_login(accounts, flag, b"", mechanism)
    assert isinstance(outcome, Failure) and outcome.condition == condition


def test_y_flag_is_fine_where_no_binding_is_offered(accounts):
    ex = exchange(accounts, "SCRAM-SHA-1")
    assert isinstance(ex.start(b"y,,n=user,r=abc"), Challenge)


def test_server_first_names_what_was_offered(accounts):
    ex = plus_exchange(accounts, "SCRAM-SHA-256-PLUS")
    first = ex.start(b"p=tls-exporter,,n=user,r=abc")
    assert isinstance(first, Challenge)
    offered = ("PLAIN\x1eSCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1eSCRAM-SHA-256\x1eSCRAM-SHA-256-PLUS"
               "\x1ftls-exporter\x1etls-server-end-point")
    expected = base64.b64encode(hashlib.sha256(offered.encode()).digest())
    assert first.data.endswith(b",h=" + expected)
    assert downgrade_protection(WITH_PLUS, list(BINDINGS), "sha256") == expected.decode()


# -- HT-* (FAST tokens) ----------------------------------------------------------------------


def ht(mechanism: str, verdict, bindings=BINDINGS) -> tuple[HtExchange, list[TokenProof]]:
    seen: list[TokenProof] = []

    def check(proof: TokenProof):
        seen.append(proof)
        return verdict

    return HtExchange(mechanism, check, channel_bindings=bindings), seen


def test_ht_answers_with_the_responder_hash_of_the_matching_key():
    token, key = new_token()
    assert len(token) > 64 and key == hashlib.sha256(token.encode()).digest()
    ex, seen = ht("HT-SHA-256-EXPR", key)
    initiator = hmac.digest(token.encode(), b"Initiator" + BINDINGS["tls-exporter"], "sha256")
    outcome = ex.start(b"user\0" + initiator)
    assert outcome == Success("user", hmac.digest(
        token.encode(), b"Responder" + BINDINGS["tls-exporter"], "sha256"))
    assert seen[0].made_with(key) and not seen[0].made_with(b"other")


def test_ht_refusals():
    assert ht("HT-SHA-256-UNIQ", b"k")[0].start(b"user\0" + bytes(32)).condition \
        == "invalid-mechanism"  # no tls-unique on this connection
    for bad in (None, b"", b"user", b"\0" + bytes(32), b"user\0short"):
        ex, seen = ht("HT-SHA-256-NONE", b"k")
        assert ex.start(bad) == Failure("malformed-request") or not seen
    ex, _ = ht("HT-SHA-256-NONE", Failure("credentials-expired"))
    assert ex.start(b"user\0" + bytes(32)) == Failure("credentials-expired")
    assert ht_mechanisms({}) == ["HT-SHA-256-NONE"]
    assert ht_mechanisms(BINDINGS) == ["HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"]


# -- ANONYMOUS (RFC 4505) -------------------------------------------------------------

def test_anonymous_only_where_offered_with_a_random_node_each_time(accounts):
    assert exchange(accounts, "ANONYMOUS").start(b"") == Failure("invalid-mechanism")
    first = exchange(accounts, "ANONYMOUS", offered=["ANONYMOUS"]).start(None)
    second = exchange(accounts, "ANONYMOUS", offered=["ANONYMOUS"]).start(b"trace@example")
    assert isinstance(first, Success) and isinstance(second, Success)
    assert first.username != second.username and len(first.username) == 36
    assert exchange(accounts, "ANONYMOUS", offered=["ANONYMOUS"]).start(b"\xff") == \
        Failure("malformed-request")
