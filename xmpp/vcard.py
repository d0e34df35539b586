"""vCard shapes and the mapping between them (XEP-0398, as Prosody's
mod_vcard_legacy does it): XEP-0054 vcard-temp <-> XEP-0292 vCard4, and a
vcard-temp PHOTO <-> XEP-0084 avatar data and metadata. Pure XML functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement

TEMP = "vcard-temp"
VCARD4 = "urn:ietf:params:xml:ns:vcard-4.0"
VCARD4_NODE = "urn:xmpp:vcard4"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_METADATA = "urn:xmpp:avatar:metadata"
UPDATE = "vcard-temp:x:update"

# vcard-temp element -> (vCard4 element, value element, URI scheme to add)
SIMPLE = (
    ("FN", "fn", "text", ""),
    ("NICKNAME", "nickname", "text", ""),
    ("BDAY", "bday", "date", ""),
    ("URL", "url", "uri", ""),
    ("DESC", "note", "text", ""),
    ("TITLE", "title", "text", ""),
    ("ROLE", "role", "text", ""),
    ("JABBERID", "impp", "uri", "xmpp:"),
)
# vcard-temp container -> (vCard4 element, [(vcard-temp child, vCard4 child)])
STRUCTURED = (
    ("N", "n", (("FAMILY", "surname"), ("GIVEN", "given"), ("MIDDLE", "additional"),
                ("PREFIX", "prefix"), ("SUFFIX", "suffix"))),
    ("ADR", "adr", (("POBOX", "pobox"), ("EXTADD", "ext"), ("STREET", "street"),
                    ("LOCALITY", "locality"), ("REGION", "region"), ("PCODE", "code"),
                    ("CTRY", "country"))),
)
# vcard-temp container with one value -> (its value child, vCard4 element, value, scheme)
VALUED = (
    ("EMAIL", "USERID", "email", "text", ""),
    ("TEL", "NUMBER", "tel", "uri", "tel:"),
    ("ORG", "ORGNAME", "org", "text", ""),
)
TYPES = ("HOME", "WORK")


def _t(name: str) -> str:
    return f"{{{TEMP}}}{name}"


def _v(name: str) -> str:
    return f"{{{VCARD4}}}{name}"


def _types_to_vcard4(source: Element, target: Element) -> None:
    kinds = [kind.lower() for kind in TYPES if source.find(_t(kind)) is not None]
    if kinds:
        type_element = SubElement(SubElement(target, _v("parameters")), _v("type"))
        for kind in kinds:
            SubElement(type_element, _v("text")).text = kind


def _types_to_temp(source: Element, target: Element) -> None:
    for text in source.iterfind(f"{_v('parameters')}/{_v('type')}/{_v('text')}"):
        if (text.text or "").upper() in TYPES:
            SubElement(target, _t((text.text or "").upper()))


def temp_to_vcard4(temp: Element) -> Element:
    """The vCard4 of a vcard-temp <vCard/> (its PHOTO aside)."""
    vcard = Element(_v("vcard"))
    for temp_name, name, value, scheme in SIMPLE:
        for source in temp.findall(_t(temp_name)):
            if source.text:
                SubElement(SubElement(vcard, _v(name)), _v(value)).text = scheme + \
                    source.text.removeprefix(scheme)
    for temp_name, name, parts in STRUCTURED:
        for source in temp.findall(_t(temp_name)):
            target = SubElement(vcard, _v(name))
            _types_to_vcard4(source, target)
            for temp_part, part in parts:
                SubElement(target, _v(part)).text = source.findtext(_t(temp_part)) or None
    for temp_name, temp_value, name, value, scheme in VALUED:
        for source in temp.findall(_t(temp_name)):
            text = source.findtext(_t(temp_value))
            if text:
                target = SubElement(vcard, _v(name))
                _types_to_vcard4(source, target)
                SubElement(target, _v(value)).text = scheme + text.removeprefix(scheme)
    return vcard


def vcard4_to_temp(vcard: Element | None) -> Element:
    """The vcard-temp <vCard/> of a vCard4 (an empty one for None)."""
    temp = Element(_t("vCard"))
    if vcard is None:
        return temp
    for temp_name, name, value, scheme in SIMPLE:
        for source in vcard.findall(_v(name)):
            text = source.findtext(_v(value))
            if text:
                SubElement(temp, _t(temp_name)).text = text.removeprefix(scheme)
    for temp_name, name, parts in STRUCTURED:
        for source in vcard.findall(_v(name)):
            target = SubElement(temp, _t(temp_name))
            _types_to_temp(source, target)
            for temp_part, part in parts:
                text = source.findtext(_v(part))
                if text:
                    SubElement(target, _t(temp_part)).text = text
    for temp_name, temp_value, name, value, scheme in VALUED:
        for source in vcard.findall(_v(name)):
            text = source.findtext(_v(value))
            if text:
                target = SubElement(temp, _t(temp_name))
                _types_to_temp(source, target)
                SubElement(target, _t(temp_value)).text = text.removeprefix(scheme)
    return temp


@dataclass(frozen=True, slots=True)
class Avatar:
    """One XEP-0084 avatar: its sha-1 id, media type and bytes."""

    id: str
    type: str
    data: bytes

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Avatar:
        return cls(hashlib.sha1(data).hexdigest(), media_type, data)

    def data_payload(self) -> Element:
        element = Element(f"{{{AVATAR_DATA}}}data")
        element.text = base64.b64encode(self.data).decode()
        return element

    def metadata_payload(self) -> Element:
        metadata = Element(f"{{{AVATAR_METADATA}}}metadata")
        SubElement(metadata, f"{{{AVATAR_METADATA}}}info", {
            "id": self.id, "type": self.type, "bytes": str(len(self.data))})
        return metadata


def photo_of(temp: Element) -> Avatar | None:
    """The avatar in a vcard-temp PHOTO; ValueError when its BINVAL is not base64."""
    photo = temp.find(_t("PHOTO"))
    binval = photo.findtext(_t("BINVAL")) if photo is not None else None
    if not binval:
        return None
    try:
        data = base64.b64decode("".join(binval.split()), validate=True)
    except binascii.Error as error:
        raise ValueError("PHOTO/BINVAL is not base64") from error
    return Avatar.of(data, photo.findtext(_t("TYPE")) or "image/png")


def add_photo(temp: Element, media_type: str, data_payload: Element) -> None:
    """A PHOTO in `temp` from an avatar's type and its <data/> payload."""
    photo = SubElement(temp, _t("PHOTO"))
    SubElement(photo, _t("TYPE")).text = media_type
    SubElement(photo, _t("BINVAL")).text = "".join((data_payload.text or "").split())


def metadata_info(metadata: Element | None) -> tuple[str, str] | None:
    """(id, type) of the avatar a <metadata/> payload announces (None: no avatar)."""
    info = metadata.find(f"{{{AVATAR_METADATA}}}info") if metadata is not None else None
    if info is None or not info.get("id"):
        return None
    return info.get("id", ""), info.get("type", "image/png")
