"""XEP-0059 Result Set Management: the <set/> a requester pages with, and the one
a result ends with (the idea of Prosody's util/rsm)."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement

NS = "http://jabber.org/protocol/rsm"
SET = f"{{{NS}}}set"


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What the requester asked for: at most `max` items, after item `after`
    or before item `before` (`before=""`: the last page)."""

    max: int | None = None
    after: str | None = None
    before: str | None = None


def parse_request(parent: Element) -> PageRequest | None:
    """The <set/> in `parent`, if any; ValueError for a `max` that is no
    non-negative integer."""
    rsm = parent.find(SET)
    if rsm is None:
        return None
    max_text = rsm.findtext(f"{{{NS}}}max")
    limit = None
    if max_text is not None:
        max_text = max_text.strip()
        if not max_text.isdigit() or not max_text.isascii():
            raise ValueError("<max/> must be a non-negative integer")
        # More digits than any limit could use: capped before int() sees them.
        limit = int(max_text) if len(max_text) <= 12 else 10 ** 12
    before = rsm.find(f"{{{NS}}}before")
    return PageRequest(max=limit, after=rsm.findtext(f"{{{NS}}}after"),
                       before=None if before is None else (before.text or ""))


def result_set(first: str | None, last: str | None, count: int | None) -> Element:
    """The <set/> closing a page: its first and last item and the total count."""
    rsm = Element(SET)
    if first is not None:
        SubElement(rsm, f"{{{NS}}}first").text = first
    if last is not None:
        SubElement(rsm, f"{{{NS}}}last").text = last
    if count is not None:
        SubElement(rsm, f"{{{NS}}}count").text = str(count)
    return rsm
