"""Fuzz target: the SASL server (xmpp/sasl.py, xmpp/scram.py) fed a client's messages.

Input: a byte picking the mechanism (b % 3 in MECHANISMS; b >= 0x80: payloads
are base64 text, decoded as the c2s session does, else the decoded bytes), the
length of the <auth> payload (2 bytes, big-endian), that payload, then the
payload of one <response>. Documented refusal: ValueError
from `decode_payload` (answered `incorrect-encoding`); every other refusal is a
`Failure` outcome, a value. The exchange must end in a Failure, or in a Success
for the one account with the right proof.
"""

from __future__ import annotations

import atheris

from tests.fuzz.harness import INSTRUMENTED, run

with atheris.instrument_imports(include=INSTRUMENTED):
    from xmpp.sasl import MECHANISMS, Challenge, Failure, SaslExchange, Success, decode_payload
    from xmpp.scram import SCRAM_HASHES, ScramCredentials, derive

REFUSALS = (ValueError,)
USER, PASSWORD, SALT = "juliet", "r0m30", b"fuzzing salt"
SERVER_NONCE = "3rfcNHYJY1ZVvWVs7j"
# Few iterations: the key derivation is not what is fuzzed.
_CREDENTIALS = {mechanism: derive(PASSWORD, hash_name, SALT, 2)
                for mechanism, hash_name in SCRAM_HASHES.items()}


class Accounts:
    """One account, juliet, in memory."""

    def check_password(self, username: str, password: str) -> bool:
        return (username, password) == (USER, PASSWORD)

    def scram_credentials(self, username: str, mechanism: str) -> ScramCredentials | None:
        return _CREDENTIALS[mechanism] if username == USER else None


def one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    mechanism = MECHANISMS[data[0] % len(MECHANISMS)]
    as_base64 = data[0] >= 0x80
    auth_end = 3 + int.from_bytes(data[1:3], "big")

    def payload(raw: bytes) -> bytes | None:
        # Mostly the decoded bytes themselves: mutating base64 text explores slowly.
        if as_base64:
            return decode_payload(raw.decode("latin-1"))
        return raw or None

    exchange = SaslExchange(mechanism, Accounts(), host="example.com", offered=list(MECHANISMS),
                            nonce=lambda: SERVER_NONCE)
    outcome = exchange.start(payload(data[3:auth_end]))
    if isinstance(outcome, Challenge):
        outcome = exchange.respond(payload(data[auth_end:]) or b"")
    assert isinstance(outcome, Challenge | Failure | Success), outcome
    if isinstance(outcome, Success):
        assert outcome.username == USER
    if not isinstance(outcome, Challenge):
        assert isinstance(exchange.respond(b"x"), Failure)  # the exchange is over


if __name__ == "__main__":
    run(one_input, REFUSALS, name="sasl")
