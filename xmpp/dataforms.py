"""XEP-0004 data forms as services declare them (the idea of Prosody's util/dataforms):
a layout of fields renders the blank form and reads a submitted one.

Reading checks what the layout says (one value for single fields, JIDs that
parse, XEP-0082 timestamps) and turns values into Python ones; fields the
layout does not name are ignored, as Prosody does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.jid import InvalidJID, parse_jid

X = f"{{{ns.DATA_FORMS}}}x"
FIELD = f"{{{ns.DATA_FORMS}}}field"
VALUE = f"{{{ns.DATA_FORMS}}}value"

# XEP-0082 DateTime: a date, a time with optional fraction, and a zone.
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


class FormError(ValueError):
    """A submitted form that does not fit the layout; the text says why."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str = "text-single"  # "hidden", "jid-single", "text-single", "list-multi"
    datatype: str | None = None  # XEP-0122: "xs:dateTime"
    value: str | None = None  # a hidden field's fixed value (FORM_TYPE)


def parse_datetime(text: str) -> datetime:
    """An XEP-0082 DateTime, timezone-aware; ValueError otherwise."""
    if not _DATETIME.fullmatch(text):
        raise ValueError(f"not an XEP-0082 DateTime: {text[:64]!r}")
    return datetime.fromisoformat(text)


def form_type(form: Element) -> str | None:
    """The value of the form's FORM_TYPE field, if it has one."""
    for field in form.iter(FIELD):
        if field.get("var") == "FORM_TYPE":
            return field.findtext(VALUE)
    return None


def render(layout: Sequence[Field], kind: str = "form") -> Element:
    """The blank form (or a `kind` form) of `layout`."""
    form = Element(X, {"type": kind})
    for spec in layout:
        field = SubElement(form, FIELD, {"var": spec.name, "type": spec.type})
        if spec.datatype:
            SubElement(field, "{http://jabber.org/protocol/xdata-validate}validate",
                       {"datatype": spec.datatype})
        if spec.value is not None:
            SubElement(field, VALUE).text = spec.value
    return form


def read(form: Element, layout: Sequence[Field]) -> dict[str, Any]:
    """The submitted values of the layout's fields that are present (FormError
    for one that does not fit): str, JID text, datetime or list of str."""
    submitted = {field.get("var"): field for field in form.findall(FIELD)}
    data: dict[str, Any] = {}
    for spec in layout:
        field = submitted.get(spec.name)
        if field is None or spec.type == "hidden":
            continue
        values = [value.text or "" for value in field.findall(VALUE)]
        if spec.type == "list-multi":
            data[spec.name] = values
            continue
        if not values or values == [""]:
            continue
        if len(values) > 1:
            raise FormError(f"Field {spec.name!r} takes one value")
        data[spec.name] = _single(spec, values[0])
    return data


def _single(spec: Field, text: str) -> Any:
    if spec.type == "jid-single":
        try:
            return str(parse_jid(text))
        except InvalidJID:
            raise FormError(f"Field {spec.name!r}: invalid JID") from None
    if spec.datatype == "xs:dateTime":
        try:
            return parse_datetime(text)
        except ValueError:
            raise FormError(f"Field {spec.name!r}: invalid timestamp") from None
    return text
