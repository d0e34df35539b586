"""What one node of a cluster at a time may hold, as a module asks for it.

An external component's domain, an outgoing s2s link, a BOSH session: each
lives on one node, and the others reach it there. A module says what it holds
and asks where the rest is through general events, fired on its host:

- `ownership-claim` (`kind`, `key`, `replace`): a handler sets `holder` to the
  other node that holds it already (the claim is refused), unless `replace`,
  which takes it over (that node then gets `ownership-lost`);
- `ownership-release` (`kind`, `key`);
- `ownership-lost` (`kind`, `key`), fired on every host: another node took over;
- `ownership-forward` (`kind`, `key`, `stanza`, `origin`): a handler that sent
  the stanza to the node holding it returns that node's name;
- `ownership-forwarded` (`kind`, `key`, `stanza`), fired globally on the holder
  with what another node forwarded: truthy when the holding module took it
  (a `<db:verify/>` for the s2s link), else the stanza is routed again there;
- `ownership-locate` (`kind`, `key`): a handler sets `http` to the base URL of
  the node holding it, for an HTTP request to be passed on;
- `ownership-holder-gone` (`node`), fired on every host: that node stopped
  beating, so what was forwarded to it and waits for an answer gets none (its
  claims have lapsed: a module may ask again, of whoever holds them now).

On a lone server nobody answers: every claim succeeds and nothing is elsewhere.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

from xmpp.moduleapi import ModuleContext

#: The HTTP header a node puts on a request it passes on (it is not passed on again).
FORWARDED_HEADER = "X-Vireo-Forwarded"


class Ownership:
    """One kind of thing a module holds (`component`, `bosh` ...), through `m`'s host."""

    def __init__(self, m: ModuleContext, kind: str) -> None:
        self.m = m
        self.kind = kind

    def claim(self, name: str, *, replace: bool = False) -> str | None:
        """None when this node holds `name` now, else the node that does."""
        return self.m.fire_event("ownership-claim", kind=self.kind, key=name,
                                 replace=replace, holder=None).holder

    def release(self, name: str) -> None:
        self.m.fire("ownership-release", kind=self.kind, key=name)

    def forward(self, name: str, stanza: Element, origin: Any) -> str | None:
        """The node holding `name` the stanza went to (None: it went nowhere)."""
        return self.m.fire("ownership-forward", kind=self.kind, key=name,
                           stanza=stanza, origin=origin) or None

    def locate(self, name: str) -> str | None:
        """The base URL of the node holding `name`, when another one does."""
        return self.m.fire_event("ownership-locate", kind=self.kind, key=name,
                                 http=None).http
