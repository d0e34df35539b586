"""JID helpers for hot paths: the bare form as text, without a JID object each time."""

import pytest

from xmpp.jid import JID, InvalidJID, bare_of, parse_jid


@pytest.mark.parametrize("text", ["Juliet@Example.COM/Balcony", "juliet@example.com",
                                  "example.com/res", "example.com"])
def test_bare_text_is_the_bare_jid_as_text(text: str) -> None:
    jid = parse_jid(text)
    assert jid.bare_text == str(jid.bare)
    assert bare_of(text) == str(jid.bare)


def test_bare_of_refuses_a_malformed_jid() -> None:
    with pytest.raises(InvalidJID):
        bare_of("a@b@c/")


def test_the_bare_jid_of_a_full_jid_is_made_once() -> None:
    full = JID("juliet", "example.com", "balcony")
    assert full.bare == JID("juliet", "example.com") and full.bare.resource is None
    # The same object again (a dictionary finds it without comparing fields).
    assert full.bare is full.bare is JID("juliet", "example.com", "chamber").bare
    assert parse_jid("example.com").bare is parse_jid("example.com")
