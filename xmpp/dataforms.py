"""XEP-0004 data forms (the idea of Prosody's util/dataforms): a layout of fields
renders a form (blank, or with values) and reads a submitted one.

Reading checks what the layout says (one value for single fields, JIDs that
parse, XEP-0082 timestamps) and turns values into Python ones; fields the
layout does not name are ignored, as Prosody does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as default
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.jid import InvalidJID, parse_jid


def _q(name: str) -> str:
    return f"{{{ns.DATA_FORMS}}}{name}"


X = _q("x")
FIELD = _q("field")
VALUE = _q("value")

# XEP-0082 DateTime: a date, a time with optional fraction, and a zone.
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


class FormError(ValueError):
    """A submitted form that does not fit the layout; the text says why."""


@dataclass
class Field:
    var: str
    type: str = "text-single"
    label: str | None = None
    values: list[str] = default(default_factory=list)
    required: bool = False
    options: list[tuple[str, str]] = default(default_factory=list)  # (label, value)
    datatype: str | None = None  # XEP-0122: "xs:dateTime"


def build_form(form_type: str, fields: list[Field], *, title: str | None = None,
               instructions: str | None = None, form_type_ns: str | None = None) -> Element:
    """An `<x xmlns='jabber:x:data'/>` of `form_type` ("form", "result", ...);
    `form_type_ns` adds the hidden FORM_TYPE field first."""
    form = Element(X, {"type": form_type})
    if title:
        SubElement(form, _q("title")).text = title
    if instructions:
        SubElement(form, _q("instructions")).text = instructions
    if form_type_ns:
        fields = [Field("FORM_TYPE", "hidden", values=[form_type_ns]), *fields]
    for item in fields:
        attrs = {"var": item.var}
        if form_type == "form" or item.type == "hidden":
            attrs["type"] = item.type
        if item.label:
            attrs["label"] = item.label
        element = SubElement(form, FIELD, attrs)
        if item.required and form_type == "form":
            SubElement(element, _q("required"))
        for label, value in item.options:
            option = SubElement(element, _q("option"), {"label": label})
            SubElement(option, VALUE).text = value
        for value in item.values:
            SubElement(element, VALUE).text = value
    return form


def form_values(parent: Element | None) -> dict[str, list[str]] | None:
    """The values of the submitted data form under `parent`, by var; None without one."""
    if parent is None:
        return None
    form = parent.find(X)
    if form is None or form.get("type") not in ("submit", None):
        return None
    return {item.get("var", ""): [value.text or "" for value in item.findall(VALUE)]
            for item in form.findall(FIELD)}


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
        field = SubElement(form, FIELD, {"var": spec.var, "type": spec.type})
        if spec.datatype:
            SubElement(field, "{http://jabber.org/protocol/xdata-validate}validate",
                       {"datatype": spec.datatype})
        for value in spec.values:
            SubElement(field, VALUE).text = value
    return form


def read(form: Element, layout: Sequence[Field]) -> dict[str, Any]:
    """The submitted values of the layout's fields that are present (FormError
    for one that does not fit): str, JID text, datetime or list of str."""
    submitted = {field.get("var"): field for field in form.findall(FIELD)}
    data: dict[str, Any] = {}
    for spec in layout:
        field = submitted.get(spec.var)
        if field is None or spec.type == "hidden":
            continue
        values = [value.text or "" for value in field.findall(VALUE)]
        if spec.type == "list-multi":
            data[spec.var] = values
            continue
        if not values or values == [""]:
            continue
        if len(values) > 1:
            raise FormError(f"Field {spec.var!r} takes one value")
        data[spec.var] = _single(spec, values[0])
    return data


def _single(spec: Field, text: str) -> Any:
    if spec.type == "jid-single":
        try:
            return str(parse_jid(text))
        except InvalidJID:
            raise FormError(f"Field {spec.var!r}: invalid JID") from None
    if spec.datatype == "xs:dateTime":
        try:
            return parse_datetime(text)
        except ValueError:
            raise FormError(f"Field {spec.var!r}: invalid timestamp") from None
    return text
