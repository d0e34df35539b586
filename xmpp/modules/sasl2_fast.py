"""Fast Authentication Streamlining Tokens (XEP-0484), as Prosody's mod_sasl2_fast:
a client that logged in once asks for a token, and later logs in with it in
one round trip through an HT-* mechanism (xmpp.sasl_ht), with no password
hashing.

Tokens are per account and user agent id (a token shown with another id is
refused), tied to the mechanism they were requested for, and expire after
`sasl2_fast_token_ttl` (21 days). One older than `sasl2_fast_token_min_ttl`
(a day) is rotated: the login that uses it gets a new one. As Prosody, a user
agent has a "new" and a "current" token: the new one becomes current when
first used, so a client that missed the new token still gets in with the
current one. `<fast invalidate='true'/>` ends the token it logs in with; a
`count` attribute must grow from one login to the next (XEP-0484's replay
protection for 0-RTT). The store keeps SHA-256 of each token, never the token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import SubElement

from xmpp.moduleapi import ModuleContext
from xmpp.sasl import Failure
from xmpp.sasl_ht import HT_MECHANISMS, HtExchange, TokenProof, ht_mechanisms, new_token

NS = "urn:xmpp:fast:0"
SASL2 = "urn:xmpp:sasl:2"
DEFAULT_TOKEN_TTL = 86400 * 21  # Prosody's sasl2_fast_token_ttl
DEFAULT_TOKEN_MIN_TTL = 86400  # Prosody's sasl2_fast_token_min_ttl: rotate after this
NEW, CURRENT = "-new", "-cur"


@dataclass
class _Request:
    """What this session's `<authenticate/>` asked of FAST."""

    token_mechanism: str | None = None  # <request-token mechanism=.../>
    rotate: bool = False  # logged in with a token due for rotation


def setup(m: ModuleContext) -> None:
    m.depends("sasl2")
    ttl = m.config.get_number("sasl2_fast_token_ttl", DEFAULT_TOKEN_TTL, min=60)
    min_ttl = m.config.get_number("sasl2_fast_token_min_ttl", DEFAULT_TOKEN_MIN_TTL, min=0)
    tokens = m.open_store("fast_tokens", "map")

    def request(session: Any) -> _Request:
        return m.session_data(session, _Request)

    def advertise(event: Any) -> None:
        session = event.origin
        mechanisms = [name for name in ht_mechanisms(session.channel_bindings)
                      if session.secure or not session.sasl_needs_encryption(name)]
        if not mechanisms:
            return
        fast = SubElement(event.features, f"{{{NS}}}fast")
        for name in mechanisms:
            SubElement(fast, f"{{{NS}}}mechanism").text = name

    def read_request(event: Any) -> None:
        session, auth = event.origin, event.stanza
        asked = request(session)
        asked.token_mechanism, asked.rotate = None, False
        use = auth.find(f"{{{NS}}}fast")
        wants_token = auth.find(f"{{{NS}}}request-token")
        if event.failure is not None or (use is None and wants_token is None):
            return
        if session.user_agent is None:
            event.failure = Failure("malformed-request", "FAST needs a <user-agent id='...'/>")
            return
        if wants_token is not None:
            if wants_token.get("mechanism") not in HT_MECHANISMS:
                event.failure = Failure("malformed-request", "Unknown FAST token mechanism")
                return
            asked.token_mechanism = wants_token.get("mechanism")
        if use is None:
            return
        mechanism = auth.get("mechanism", "")
        count = use.get("count")
        if mechanism not in HT_MECHANISMS:
            event.failure = Failure("invalid-mechanism", "FAST logins use an HT-* mechanism")
        elif count is not None and not (count.isdigit() and len(count) < 20):
            event.failure = Failure("malformed-request", "Bad FAST count")
        else:
            event.exchange = HtExchange(mechanism, lambda proof: check(
                session, proof, count=int(count) if count is not None else None,
                invalidate=use.get("invalidate") in ("1", "true")),
                channel_bindings=session.channel_bindings)

    def check(session: Any, proof: TokenProof, *, count: int | None,
              invalidate: bool) -> bytes | Failure:
        # No account lookup: its tokens go with it (user-deleted, and `app.py
        # deluser` removes the account's store rows), so a token found is an account.
        slot = agent_slot(session.user_agent.id)
        held = tokens.get_all(proof.username)
        for which in (NEW, CURRENT):
            record = held.get(slot + which)
            if not record or record["mechanism"] != proof.mechanism:
                continue
            key = bytes.fromhex(record["key"])
            if not proof.made_with(key):
                continue
            now = m.now()
            if record["expires_at"] < now:
                tokens.set(proof.username, slot + which, None)
                return Failure("credentials-expired", "The FAST token has expired")
            if count is not None:
                if count <= record.get("count", -1):
                    return Failure("not-authorized", "FAST count not above the last one")
                record = {**record, "count": count}
            if invalidate:
                tokens.set(proof.username, slot + which, None)
            elif which == NEW:
                tokens.set_keys(proof.username, {slot + NEW: None, slot + CURRENT: record})
            elif count is not None:
                tokens.set(proof.username, slot + which, record)
            request(session).rotate = not invalidate and now - record["issued_at"] > min_ttl
            return key
        return Failure("not-authorized")

    def issue(event: Any) -> None:
        session = event.session
        asked = request(session)
        mechanism = asked.token_mechanism or (event.exchange.mechanism if asked.rotate else None)
        if mechanism is None or session.user_agent is None:
            return
        token, key = new_token()
        now = m.now()
        tokens.set(session.username, agent_slot(session.user_agent.id) + NEW, {
            "mechanism": mechanism, "key": key.hex(), "issued_at": now, "expires_at": now + ttl})
        expiry = datetime.fromtimestamp(now + ttl, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        SubElement(event.success, f"{{{NS}}}token", expiry=expiry, token=token)

    m.hook("advertise-sasl-features", advertise)
    m.hook(f"stanza/{SASL2}:authenticate", read_request, 100)
    m.hook("sasl2/c2s/success", issue, 75)
    def revoke_all(event: Any) -> None:
        # A token stands in for the password: a new password (or no account) ends them all.
        tokens.set_keys(event.username, dict.fromkeys(tokens.get_all(event.username)))

    m.hook("user-password-changed", revoke_all)
    m.hook("user-deleted", revoke_all)


def agent_slot(agent_id: str) -> str:
    """Where a user agent's tokens are kept: a hash, so the store holds no raw id."""
    return hashlib.sha256(agent_id.encode("utf-8")).hexdigest()
