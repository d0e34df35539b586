"""XEP-0115 hashes and +notify features (xmpp.caps)."""

from __future__ import annotations

from xmpp.caps import claimed, notify_nodes, verification_hash
from xmpp.stream import parse_stanza

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'>
<identity category='client' name='Exodus 0.9.1' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
</query>"""

# XEP-0115 section 5.3, with an extended service discovery form.
COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'>
<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
<identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
<x xmlns='jabber:x:data' type='result'>
<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
<field var='os'><value>Mac</value></field>
<field var='os_version'><value>10.5.1</value></field>
<field var='software'><value>Psi</value></field>
<field var='software_version'><value>0.11</value></field>
</x>
</query>"""


def test_verification_hashes_of_the_xep_examples():
    assert verification_hash(parse_stanza(SIMPLE)) == "QgayPKawpkPSDYmwT/WM94uAlu0="
    assert verification_hash(parse_stanza(COMPLEX)) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_claimed_hashes_and_notify_features():
    presence = parse_stanza(
        "<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' "
        "hash='sha-1' node='https://example.org' ver='abc='/></presence>")
    assert claimed(presence) == ("abc=", "https://example.org#abc=")
    presence[0].set("hash", "md5")
    assert claimed(presence) is None
    del presence[0].attrib["hash"]
    assert claimed(presence) == ("https://example.org#abc=#", "https://example.org#abc=")
    query = parse_stanza(
        "<query xmlns='http://jabber.org/protocol/disco#info'>"
        "<feature var='urn:xmpp:avatar:metadata+notify'/><feature var='+notify'/>"
        "<feature var='urn:xmpp:avatar:metadata'/></query>")
    assert notify_nodes(query) == {"urn:xmpp:avatar:metadata"}
