"""XEP-0202 Entity Time: the server's clock in UTC (mod_time)."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement

from xmpp.moduleapi import ModuleContext

NS = "urn:xmpp:time"


def setup(m: ModuleContext) -> None:
    m.add_feature(NS)
    m.hook_iq("get", f"{{{NS}}}time", lambda request: entity_time(m.now()))


def entity_time(now: float) -> Element:
    answer = Element(f"{{{NS}}}time")
    SubElement(answer, f"{{{NS}}}tzo").text = "+00:00"
    SubElement(answer, f"{{{NS}}}utc").text = datetime.fromtimestamp(now, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    return answer
