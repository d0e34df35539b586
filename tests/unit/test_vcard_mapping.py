"""vcard-temp <-> vCard4 <-> avatar mapping (xmpp.vcard) and the XEP-0048 <->
XEP-0402 bookmark conversion (xmpp.modules.bookmarks), as pure functions."""

from __future__ import annotations

import base64
import hashlib

import pytest

from xmpp.errors import StanzaError
from xmpp.modules.bookmarks import conferences, legacy_storage
from xmpp.pubsub import NS
from xmpp.stanza import serialize
from xmpp.stream import parse_stanza
from xmpp.vcard import (
    Avatar,
    add_photo,
    metadata_info,
    photo_of,
    temp_to_vcard4,
    vcard4_to_temp,
)

PHOTO = b"\x89PNG\r\n\x1a\nnot really a picture"
TEMP = f"""<vCard xmlns='vcard-temp'>
<FN>Juliet Capulet</FN>
<N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N>
<NICKNAME>jc</NICKNAME>
<BDAY>1597-07-31</BDAY>
<EMAIL><INTERNET/><HOME/><USERID>juliet@example.com</USERID></EMAIL>
<TEL><WORK/><NUMBER>+1-555-0100</NUMBER></TEL>
<ORG><ORGNAME>House Capulet</ORGNAME></ORG>
<ADR><HOME/><LOCALITY>Verona</LOCALITY><CTRY>Italy</CTRY></ADR>
<URL>https://example.com/juliet</URL>
<DESC>Wherefore art thou</DESC>
<JABBERID>juliet@example.com</JABBERID>
<PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.b64encode(PHOTO).decode()}</BINVAL></PHOTO>
</vCard>"""

V4 = "urn:ietf:params:xml:ns:vcard-4.0"


def test_vcard_temp_maps_to_vcard4_and_back():
    temp = parse_stanza(TEMP)
    vcard = temp_to_vcard4(temp)
    assert vcard.findtext(f"{{{V4}}}fn/{{{V4}}}text") == "Juliet Capulet"
    assert vcard.findtext(f"{{{V4}}}n/{{{V4}}}surname") == "Capulet"
    assert vcard.findtext(f"{{{V4}}}tel/{{{V4}}}uri") == "tel:+1-555-0100"
    assert vcard.findtext(f"{{{V4}}}impp/{{{V4}}}uri") == "xmpp:juliet@example.com"
    assert vcard.findtext(f"{{{V4}}}email/{{{V4}}}parameters/{{{V4}}}type/{{{V4}}}text") \
        == "home"
    back = vcard4_to_temp(vcard)
    for path, text in (("FN", "Juliet Capulet"), ("N/GIVEN", "Juliet"), ("NICKNAME", "jc"),
                       ("BDAY", "1597-07-31"), ("EMAIL/USERID", "juliet@example.com"),
                       ("TEL/NUMBER", "+1-555-0100"), ("ORG/ORGNAME", "House Capulet"),
                       ("ADR/LOCALITY", "Verona"), ("URL", "https://example.com/juliet"),
                       ("DESC", "Wherefore art thou"), ("JABBERID", "juliet@example.com")):
        assert back.findtext("/".join(f"{{vcard-temp}}{p}" for p in path.split("/"))) == text
    assert back.find("{vcard-temp}TEL/{vcard-temp}WORK") is not None
    assert len(vcard4_to_temp(None)) == 0


def test_photo_becomes_an_avatar_and_back():
    avatar = photo_of(parse_stanza(TEMP))
    assert avatar == Avatar(hashlib.sha1(PHOTO).hexdigest(), "image/png", PHOTO)
    assert metadata_info(avatar.metadata_payload()) == (avatar.id, "image/png")
    temp = vcard4_to_temp(None)
    add_photo(temp, "image/png", avatar.data_payload())
    assert photo_of(temp) == avatar
    broken = parse_stanza("<vCard xmlns='vcard-temp'><PHOTO><BINVAL>@@@</BINVAL></PHOTO></vCard>")
    with pytest.raises(ValueError):
        photo_of(broken)


def test_bookmarks_convert_between_xep_0048_and_xep_0402():
    storage = parse_stanza(
        "<storage xmlns='storage:bookmarks'>"
        "<conference jid='room@muc.example.org' name='Room' autojoin='1'><nick>jc</nick>"
        "</conference><conference jid='quiet@muc.example.org'/></storage>")
    found = conferences(storage)
    assert set(found) == {"room@muc.example.org", "quiet@muc.example.org"}
    assert serialize(found["room@muc.example.org"], "") == (
        "<conference xmlns='urn:xmpp:bookmarks:1' name='Room' autojoin='true'>"
        "<nick>jc</nick></conference>")
    items = []
    for room, conference in found.items():
        item = parse_stanza(f"<item xmlns='{NS}' id='{room}'/>")
        item.append(conference)
        items.append(item)
    back = legacy_storage(items)
    assert [(c.get("jid"), c.get("autojoin")) for c in back] == [
        ("room@muc.example.org", "true"), ("quiet@muc.example.org", "false")]
    with pytest.raises(StanzaError):
        conferences(parse_stanza("<storage xmlns='storage:bookmarks'>"
                                 "<conference jid='@bad'/></storage>"))
