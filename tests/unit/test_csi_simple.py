"""mod_csi_simple's judgement of what must reach an inactive client at once."""

from __future__ import annotations

import pytest

from xmpp.modules.csi_simple import is_important
from xmpp.stream import parse_stanza

C = "xmlns='jabber:client'"


@pytest.mark.parametrize("xml, important", [
    (f"<presence {C}/>", False),
    (f"<presence {C} type='unavailable'/>", False),
    (f"<presence {C} type='subscribe'/>", True),
    (f"<message {C} type='chat'><body>hi</body></message>", True),
    (f"<message {C} type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/>"
     "</message>", False),
    (f"<message {C}><received xmlns='urn:xmpp:receipts' id='1'/></message>", False),
    (f"<message {C} type='headline'><body>news</body></message>", False),
    (f"<message {C} type='error'/>", True),
    (f"<message {C}><encryption xmlns='urn:xmpp:eme:0'/></message>", True),
    (f"<message {C}><x xmlns='http://jabber.org/protocol/muc#user'><invite/></x></message>",
     True),
    (f"<message {C}><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     f"<message {C}><body>carbon</body></message></forwarded></received></message>", True),
    (f"<message {C}><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     f"<message {C}><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
     "</forwarded></sent></message>", False),
    (f"<iq {C} type='get'><ping xmlns='urn:xmpp:ping'/></iq>", True),
])
def test_is_important(xml, important):
    assert is_important(parse_stanza(xml)) is important
