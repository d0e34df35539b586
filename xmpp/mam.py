"""XEP-0313 Message Archive Management for users, without sockets or storage:
which messages are archived (with XEP-0334 hints), the archive ids they carry
(XEP-0359), how a query reads (data form and XEP-0059 paging), preferences,
and the messages a result is made of. xmpp.modules.mam wires it to the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import dataforms, rsm
from xmpp import namespaces as ns
from xmpp.dataforms import Field
from xmpp.errors import StanzaError
from xmpp.jid import InvalidJID, parse_jid
from xmpp.stanza import namespace_of

NS = "urn:xmpp:mam:2"
NS_EXTENDED = "urn:xmpp:mam:2#extended"
STANZA_ID_NS = "urn:xmpp:sid:0"
FORWARD_NS = "urn:xmpp:forward:0"
HINTS_NS = "urn:xmpp:hints"
QUERY = f"{{{NS}}}query"
PREFS = f"{{{NS}}}prefs"
STANZA_ID = f"{{{STANZA_ID_NS}}}stanza-id"
BODY = f"{{{ns.CLIENT}}}body"
MESSAGE = f"{{{ns.CLIENT}}}message"

DEFAULT_PAGE = 20  # XEP-0313 leaves it to the server; Prosody's
CHATSTATES = "http://jabber.org/protocol/chatstates"

QUERY_FORM = (
    Field("FORM_TYPE", "hidden", values=[NS]),
    Field("with", "jid-single"),
    Field("start", "text-single", datatype="xs:dateTime"),
    Field("end", "text-single", datatype="xs:dateTime"),
    Field("before-id", "text-single"),
    Field("after-id", "text-single"),
    Field("ids", "list-multi"),
)

# Elements whose presence makes a message worth archiving (Prosody's should_store).
_WORTH_KEEPING = (
    (BODY, "body"), (f"{{{ns.CLIENT}}}subject", "subject"),
    ("{urn:xmpp:eme:0}encryption", "encrypted"),
    ("{jabber:x:conference}x", "invite"),
    ("{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}invite",
     "invite"),
)
_WORTH_KEEPING_NS = (("urn:xmpp:receipts", "receipt"), ("urn:xmpp:chat-markers:0", "marker"),
                     ("urn:xmpp:jingle-message:0", "jingle call"),
                     ("urn:xmpp:jingle-message:1", "jingle call"))


def should_store(stanza: Element) -> tuple[bool, str]:
    """Whether a message is worth archiving, and why (Prosody's rules): never
    headlines, groupchat, or what `no-store`/`no-permanent-store` hints at;
    errors only when addressed to a full JID (bounces of one's own messages);
    otherwise what hints `store` or carries content (a body, a subject, ...)."""
    kind = stanza.get("type", "normal")
    if kind in ("headline", "groupchat"):
        return False, kind
    if kind == "error":
        return "/" in stanza.get("to", ""), "bounce"
    if stanza.find(f"{{{HINTS_NS}}}no-store") is not None \
            or stanza.find(f"{{{HINTS_NS}}}no-permanent-store") is not None:
        return False, "hint"
    if stanza.find(f"{{{HINTS_NS}}}store") is not None:
        return True, "hint"
    for path, why in _WORTH_KEEPING:
        if stanza.find(path) is not None:
            return True, why
    for child in stanza:
        for namespace, why in _WORTH_KEEPING_NS:
            if child.tag.startswith(f"{{{namespace}}}"):
                return True, why
    return False, "default"


def for_storage(stanza: Element, dont_archive: frozenset[str]) -> Element | None:
    """The copy to archive: without children in the `dont_archive` namespaces
    (chat states by default); None when nothing would be left."""
    if not dont_archive:
        return stanza
    for child in stanza:
        if namespace_of(child.tag) in dont_archive:
            break
    else:  # the usual case, without building the list below
        return stanza if len(stanza) else None
    kept = [child for child in stanza if namespace_of(child.tag) not in dont_archive]
    if not kept:
        return None
    copy_ = Element(stanza.tag, stanza.attrib)
    copy_.text = stanza.text
    copy_.extend(kept)
    return copy_


def strip_stanza_ids(stanza: Element, by: str) -> None:
    """Remove <stanza-id/>s claiming to be from `by` (a bare JID): only the
    server puts ids there, so a client's would be a forgery."""
    for child in stanza.findall(STANZA_ID):
        if _same_jid(child.get("by", ""), by):
            stanza.remove(child)


def add_stanza_id(stanza: Element, key: str, by: str) -> None:
    SubElement(stanza, STANZA_ID, {"id": key, "by": by})


def has_stanza_id(stanza: Element, by: str) -> bool:
    return any(child.get("by") == by for child in stanza.findall(STANZA_ID))


def _same_jid(text: str, bare: str) -> bool:
    if text == bare:  # the server's own ids, on every archived message
        return True
    try:
        return str(parse_jid(text)) == bare
    except InvalidJID:
        return False


# -- queries ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """One archive query, checked and bounded."""

    query_id: str | None = None
    with_: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    after: tuple[str, ...] = ()  # items strictly after each of these ...
    before: tuple[str, ...] = ()  # ... and strictly before each of these
    range_after: tuple[str, ...] = ()  # the form's after-id/before-id alone (for the count)
    range_before: tuple[str, ...] = ()
    ids: tuple[str, ...] | None = None
    limit: int = DEFAULT_PAGE
    reverse: bool = False  # the page is the last one before `before` (RSM <before/>)
    flip: bool = False  # <flip-page/>: items in the other order

    def filters(self, *, paged: bool = True) -> dict[str, Any]:
        """Keyword filters for ArchiveStore.find/count; without the RSM
        cursor when not `paged` (the count covers the whole result set)."""
        return {"start": self.start, "end": self.end, "with_": self.with_, "ids": self.ids,
                "after": self.after if paged else self.range_after,
                "before": self.before if paged else self.range_before}


def parse_query(query: Element, *, max_results: int) -> ArchiveQuery:
    """The query in <query/>; StanzaError bad-request for a malformed one or
    for more `ids` than a page may hold."""
    fields: dict[str, Any] = {}
    form = query.find(dataforms.X)
    if form is not None:
        kind = dataforms.form_type(form)
        if kind != NS:
            raise StanzaError("bad-request", f"Unexpected FORM_TYPE, expected '{NS}'")
        try:
            fields = dataforms.read(form, QUERY_FORM)
        except dataforms.FormError as error:
            raise StanzaError("bad-request", str(error)) from None
    ids = fields.get("ids")
    if ids is not None and len(ids) > max_results:
        # bad-request, not policy-violation: clients that know only RFC 3920's
        # conditions (slixmpp) cannot even report the latter.
        raise StanzaError("bad-request", f"At most {max_results} ids in one query")
    try:
        page = rsm.parse_request(query)
    except ValueError as error:
        raise StanzaError("bad-request", str(error)) from None
    page = page or rsm.PageRequest()
    limit = min(DEFAULT_PAGE if page.max is None else page.max, max_results)
    with_ = fields.get("with")
    if with_ is not None:
        # Prosody keeps the bare JID an item is exchanged with, so it matches on that.
        with_ = str(parse_jid(with_).bare)
    range_after = _one(fields.get("after-id"))
    range_before = _one(fields.get("before-id"))
    reverse = page.before is not None
    return ArchiveQuery(
        query_id=query.get("queryid"), with_=with_, start=fields.get("start"),
        end=fields.get("end"), range_after=range_after, range_before=range_before,
        after=range_after + _one(page.after), before=range_before + _one(page.before),
        ids=tuple(ids) if ids is not None else None, limit=limit, reverse=reverse,
        flip=reverse != (query.find(f"{{{NS}}}flip-page") is not None))


def _one(key: str | None) -> tuple[str, ...]:
    return (key,) if key else ()


def run_query(store: Any, user: str | None, query: ArchiveQuery, *,
              include_total: bool) -> tuple[list[Any], Element]:
    """One page of an archive (ArchiveStore) for `query`: its records in the
    order to send them, and the <fin/> that ends the answer. Shared by the
    archives of users (mod_mam) and of rooms (mod_muc_mam). The archived
    stanzas are only forwarded (result_message), so they come unparsed."""
    with store.reading() as connection:
        try:
            records = store.find(user, **query.filters(), limit=query.limit + 1,
                                 reverse=query.reverse, as_sent=True,
                                 connection=connection) if query.limit else []
        except KeyError:
            raise StanzaError("item-not-found", "No such archive item") from None
        total = None
        if include_total or query.limit == 0:
            total = store.count(user, connection, **query.filters(paged=False))
    more = len(records) > query.limit
    records = records[:query.limit]
    chronological = records[::-1] if query.reverse else records
    first = chronological[0].key if chronological else None
    last = chronological[-1].key if chronological else None
    complete = not more if query.limit else total == 0
    ordered = chronological[::-1] if query.flip != query.reverse else chronological
    return ordered, fin(first, last, total, complete)


def result_message(to: str, query_id: str | None, key: str, when: datetime,
                   item: Element) -> Element:
    """One archived message as a query result (XEP-0313 4.2, XEP-0297)."""
    message = Element(MESSAGE, {"to": to})
    result = SubElement(message, f"{{{NS}}}result", {"id": key})
    if query_id is not None:
        result.set("queryid", query_id)
    forwarded = SubElement(result, f"{{{FORWARD_NS}}}forwarded")
    SubElement(forwarded, f"{{{ns.DELAY}}}delay", {"stamp": timestamp(when)})
    forwarded.append(item)
    return message


def fin(first: str | None, last: str | None, count: int | None, complete: bool) -> Element:
    """The IQ result's payload: the page's RSM set (no queryid, as mam:2 has it)."""
    done = Element(f"{{{NS}}}fin")
    if complete:
        done.set("complete", "true")
    done.append(rsm.result_set(first, last, count))
    return done


def timestamp(when: datetime) -> str:
    """XEP-0082 DateTime in UTC, with microseconds when there are any."""
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}"
    return text + "Z"


# -- preferences -------------------------------------------------------------------------

POLICIES = ("always", "never", "roster")


@dataclass(frozen=True, slots=True)
class ArchivePrefs:
    """A user's archiving preferences (XEP-0313 section 6.1)."""

    default: str = "always"
    always: frozenset[str] = field(default_factory=frozenset)
    never: frozenset[str] = field(default_factory=frozenset)

    def rule_for(self, jid: str) -> str:
        """"always", "never" or "roster" for messages exchanged with `jid`."""
        if jid in self.always:
            return "always"
        if jid in self.never:
            return "never"
        return self.default

    def to_xml(self) -> Element:
        prefs = Element(PREFS, {"default": self.default})
        for name, jids in (("always", self.always), ("never", self.never)):
            group = SubElement(prefs, f"{{{NS}}}{name}")
            for jid in sorted(jids):
                SubElement(group, f"{{{NS}}}jid").text = jid
        return prefs

    def to_json(self) -> dict[str, Any]:
        return {"default": self.default, "always": sorted(self.always),
                "never": sorted(self.never)}

    @classmethod
    def from_json(cls, data: Any) -> ArchivePrefs | None:
        if not isinstance(data, dict) or data.get("default") not in POLICIES:
            return None
        return cls(data["default"], frozenset(data.get("always", ())),
                   frozenset(data.get("never", ())))


def prefs_from_xml(prefs: Element, current: ArchivePrefs) -> ArchivePrefs:
    """New preferences from a <prefs/> set; StanzaError bad-request for an
    unknown default, and JIDs that do not parse are left out (as Prosody)."""
    default = prefs.get("default", current.default)
    if default not in POLICIES:
        raise StanzaError("bad-request", f"default must be one of {', '.join(POLICIES)}")
    always = set(_jids(prefs.findall(f"{{{NS}}}always/{{{NS}}}jid")))
    never = set(_jids(prefs.findall(f"{{{NS}}}never/{{{NS}}}jid"))) - always
    return ArchivePrefs(default, frozenset(always), frozenset(never))


def _jids(elements: Iterable[Element]) -> Iterable[str]:
    for element in elements:
        try:
            yield str(parse_jid((element.text or "").strip()))
        except InvalidJID:
            continue


def policy_option(value: Any) -> str:
    """Prosody's default_archive_policy: "always", "never", "roster", or a boolean."""
    if value is True:
        return "always"
    if value is False:
        return "never"
    if value in POLICIES:
        return value
    raise ValueError(f"default_archive_policy must be one of {POLICIES} or a boolean")


_PERIOD = re.compile(r"\s*(\d+)\s*([dwmy]?)", re.IGNORECASE)
_DAY = 86400
_UNITS = {"": 1, "d": _DAY, "w": 7 * _DAY, "m": 31 * _DAY, "y": 365.2425 * _DAY}


def parse_period(value: Any) -> float | None:
    """Prosody 0.12's archive_expires_after: seconds, or a count of days,
    weeks, months or years ("1w", "30d", "1y"); None for "never"; ValueError
    for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    text = str(value).strip().lower()
    if text == "never":
        return None
    match = _PERIOD.match(text)
    if not match:
        raise ValueError(f"cannot read {value!r} as a period (e.g. \"1w\", \"30d\", \"never\")")
    return int(match.group(1)) * _UNITS[match.group(2)]

