"""SASL upgrade tasks (XEP-0480) for SCRAM: an account that has SCRAM-SHA-1
material only (moved from Prosody 0.12, whose internal_hashed kept SHA-1)
gets its SCRAM-SHA-256 material from the client at login, without the server
ever seeing the password.

The upgrades are listed in SASL2's `<authentication/>`; a client names those
it can do in its `<authenticate/>`. When the account lacks the material, the
login answers `<continue/>` with the `UPGR-SCRAM-SHA-256` task: the server
sends the account's salt and iteration count, the client the SaltedPassword
(RFC 5802) made with them, and the server keeps the keys derived from it.
Once every account of a host has them, the host offers SCRAM-SHA-256
(storage.accounts' SCRAM policy).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp.moduleapi import ModuleContext
from xmpp.sasl import Failure
from xmpp.scram import ScramCredentials, from_salted_password

UPGRADE = "urn:xmpp:sasl:upgrade:0"
SCRAM_UPGRADE = "urn:xmpp:scram-upgrade:0"
TASK = "UPGR-SCRAM-SHA-256"
HASH = "sha256"


class ScramUpgrade:
    """The task for one account: the salt out, the SaltedPassword back."""

    def __init__(self, m: ModuleContext, username: str, sha1: ScramCredentials) -> None:
        self.m = m
        self.username = username
        self.sha1 = sha1

    def next(self, data: Element | None) -> Element | Failure | None:
        if data is None:
            salt = Element(f"{{{SCRAM_UPGRADE}}}salt", iterations=str(self.sha1.iterations))
            salt.text = base64.b64encode(self.sha1.salt).decode()
            return salt
        try:
            salted = base64.b64decode(data.findtext(f"{{{SCRAM_UPGRADE}}}hash") or "",
                                      validate=True)
        except binascii.Error:
            return Failure("incorrect-encoding")
        if len(salted) != hashlib.new(HASH).digest_size:
            return Failure("malformed-request", "Expected a SHA-256 SaltedPassword")
        material = from_salted_password(salted, HASH, self.sha1.salt, self.sha1.iterations)
        if self.m.users.add_sha256(self.username, material, self.sha1.stored_key):
            self.m.log.info("%s upgraded to SCRAM-SHA-256 at login", self.username)
        return None


def setup(m: ModuleContext) -> None:
    m.depends("sasl2")

    def advertise(event: Any) -> None:
        SubElement(event.authentication, f"{{{UPGRADE}}}upgrade").text = TASK

    def offer(event: Any) -> None:
        asked = {(element.text or "").strip()
                 for element in event.request.findall(f"{{{UPGRADE}}}upgrade")}
        if TASK not in asked or m.users.scram_credentials(event.username, "SCRAM-SHA-256"):
            return
        sha1 = m.users.scram_credentials(event.username, "SCRAM-SHA-1")
        if sha1 is not None:
            event.tasks[TASK] = ScramUpgrade(m, event.username, sha1)

    m.hook("advertise-sasl-features", advertise)
    m.hook("sasl2/c2s/tasks", offer)
