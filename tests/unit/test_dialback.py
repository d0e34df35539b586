"""XEP-0185 dialback keys: the XEP's worked example, and what must not verify."""

import hashlib
import hmac

from xmpp.dialback import FINGERPRINT_LABEL, DialbackKeys, fingerprint, new_secret

# XEP-0185 section 3 (Example): secret, domains, stream id and the resulting key.
XEP_SECRET = "s3cr3tf0rd14lb4ck"
XEP_KEY = "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


def test_key_matches_the_xep_0185_example():
    keys = DialbackKeys(XEP_SECRET)
    assert keys.key("xmpp.example.com", "example.org", "D60000229F") == XEP_KEY


def test_verify_accepts_own_key_with_surrounding_whitespace():
    keys = DialbackKeys(XEP_SECRET)
    assert keys.verify("xmpp.example.com", "example.org", "D60000229F", f"\n  {XEP_KEY}\n")


def test_verify_refuses_other_stream_domains_or_secret():
    keys = DialbackKeys(XEP_SECRET)
    assert not keys.verify("xmpp.example.com", "example.org", "D60000229G", XEP_KEY)
    assert not keys.verify("example.org", "xmpp.example.com", "D60000229F", XEP_KEY)
    assert not keys.verify("xmpp.example.com", "example.org", "D60000229F", "00" * 32)
    assert not keys.verify("xmpp.example.com", "example.org", "D60000229F", "")
    assert not DialbackKeys("other").verify("xmpp.example.com", "example.org",
                                            "D60000229F", XEP_KEY)


def test_per_process_secrets_differ():
    assert new_secret() != new_secret()
    assert len(new_secret()) >= 32


def test_a_fingerprint_tells_secrets_apart_without_being_one():
    assert fingerprint(XEP_SECRET) == fingerprint(XEP_SECRET)
    assert fingerprint(XEP_SECRET) != fingerprint(XEP_SECRET + "x")
    assert XEP_SECRET not in fingerprint(XEP_SECRET)
    # Keyed with the secret, so neither its hash nor a dialback key.
    assert fingerprint(XEP_SECRET) == hmac.new(XEP_SECRET.encode(), FINGERPRINT_LABEL,
                                               hashlib.sha256).hexdigest()
    assert fingerprint(XEP_SECRET) != hashlib.sha256(XEP_SECRET.encode()).hexdigest()
