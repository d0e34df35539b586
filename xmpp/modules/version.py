"""XEP-0092 Software Version: name, version and OS of the server (mod_version)."""

from __future__ import annotations

import platform
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.moduleapi import ModuleContext

QUERY = f"{{{ns.VERSION}}}query"
SERVER_NAME = "Vireo"
SERVER_VERSION = "0.1.0"


def setup(m: ModuleContext) -> None:
    m.add_feature(ns.VERSION)
    query = Element(QUERY)
    SubElement(query, f"{{{ns.VERSION}}}name").text = SERVER_NAME
    SubElement(query, f"{{{ns.VERSION}}}version").text = SERVER_VERSION
    if not m.config.get_bool("hide_os_type", False):
        SubElement(query, f"{{{ns.VERSION}}}os").text = platform.system()
    m.hook_iq("get", QUERY, lambda request: query)
