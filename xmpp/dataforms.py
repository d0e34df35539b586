"""XEP-0004 data forms: building them and reading submitted values."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns


def _q(name: str) -> str:
    return f"{{{ns.DATA_FORMS}}}{name}"


@dataclass
class Field:
    var: str
    type: str = "text-single"
    label: str | None = None
    values: list[str] = field(default_factory=list)
    required: bool = False
    options: list[tuple[str, str]] = field(default_factory=list)  # (label, value)


def build_form(form_type: str, fields: list[Field], *, title: str | None = None,
               instructions: str | None = None, form_type_ns: str | None = None) -> Element:
    """An `<x xmlns='jabber:x:data'/>` of `form_type` ("form", "result", ...);
    `form_type_ns` adds the hidden FORM_TYPE field first."""
    form = Element(_q("x"), {"type": form_type})
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
        element = SubElement(form, _q("field"), attrs)
        if item.required and form_type == "form":
            SubElement(element, _q("required"))
        for label, value in item.options:
            option = SubElement(element, _q("option"), {"label": label})
            SubElement(option, _q("value")).text = value
        for value in item.values:
            SubElement(element, _q("value")).text = value
    return form


def form_values(parent: Element | None) -> dict[str, list[str]] | None:
    """The values of the submitted data form under `parent`, by var; None without one."""
    if parent is None:
        return None
    form = parent.find(_q("x"))
    if form is None or form.get("type") not in ("submit", None):
        return None
    return {item.get("var", ""): [value.text or "" for value in item.findall(_q("value"))]
            for item in form.findall(_q("field"))}
