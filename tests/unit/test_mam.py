"""XEP-0313 protocol core (xmpp.mam), data forms, RSM and carbons eligibility, without sockets."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement, fromstring

import pytest

from xmpp import mam, rsm
from xmpp.errors import StanzaError
from xmpp.modules.carbons import should_copy
from xmpp.modules.mam import PrefsCache

CLIENT = "{jabber:client}"


def message(kind: str = "chat", body: str | None = "hi", to: str = "bob@example.org",
            *children: str) -> Element:
    stanza = Element(f"{CLIENT}message", {"type": kind, "to": to, "from": "alice@example.org/a"})
    if body is not None:
        SubElement(stanza, f"{CLIENT}body").text = body
    for child in children:
        SubElement(stanza, child)
    return stanza


@pytest.mark.parametrize(("stanza", "expected"), [
    (message(), True),
    (message("normal"), True),
    (message("headline"), False),
    (message("groupchat"), False),
    (message("chat", None), False),
    (message("chat", None, "bob@example.org", "{urn:xmpp:hints}store"), True),
    (message("chat", "x", "bob@example.org", "{urn:xmpp:hints}no-store"), False),
    (message("chat", "x", "bob@example.org", "{urn:xmpp:hints}no-permanent-store"), False),
    (message("chat", None, "bob@example.org", "{urn:xmpp:receipts}received"), True),
    (message("chat", None, "bob@example.org", "{urn:xmpp:chat-markers:0}displayed"), True),
    (message("chat", None, "bob@example.org",
             "{http://jabber.org/protocol/chatstates}composing"), False),
    (message("error", None, "alice@example.org/a"), True),
    (message("error", None, "alice@example.org"), False),
])
def test_what_is_archived(stanza: Element, expected: bool) -> None:
    assert mam.should_store(stanza)[0] is expected


def test_storage_copy_leaves_out_chat_states() -> None:
    states = frozenset({mam.CHATSTATES})
    typing = message("chat", "hi", "bob@example.org", f"{{{mam.CHATSTATES}}}active")
    stored = mam.for_storage(typing, states)
    assert stored is not typing and [c.tag for c in stored] == [f"{CLIENT}body"]
    assert len(typing) == 2
    only_state = message("chat", None, "bob@example.org", f"{{{mam.CHATSTATES}}}composing")
    assert mam.for_storage(only_state, states) is None
    plain = message()
    assert mam.for_storage(plain, states) is plain


def test_forged_stanza_ids_are_stripped_others_kept() -> None:
    stanza = message()
    SubElement(stanza, mam.STANZA_ID, {"id": "forged", "by": "Bob@Example.org"})
    SubElement(stanza, mam.STANZA_ID, {"id": "theirs", "by": "room@muc.example.org"})
    mam.strip_stanza_ids(stanza, "bob@example.org")
    assert [e.get("id") for e in stanza.findall(mam.STANZA_ID)] == ["theirs"]
    mam.add_stanza_id(stanza, "k1", "bob@example.org")
    assert mam.has_stanza_id(stanza, "bob@example.org")


def query(inner: str = "", queryid: str = "q1") -> Element:
    return fromstring(f"<query xmlns='urn:xmpp:mam:2' queryid='{queryid}'>{inner}</query>")


def form(**fields: str | list[str]) -> str:
    xml = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>urn:xmpp:mam:2</value></field>")
    for name, values in fields.items():
        values = values if isinstance(values, list) else [values]
        xml += f"<field var='{name}'>" + "".join(f"<value>{v}</value>" for v in values)
        xml += "</field>"
    return xml + "</x>"


def rsm_set(inner: str) -> str:
    return f"<set xmlns='{rsm.NS}'>{inner}</set>"


def test_query_form_and_paging_are_read() -> None:
    parsed = mam.parse_query(query(form(**{
        "with": "Bob@Example.org/phone", "start": "2026-12-01T10:00:00Z",
        "end": "2026-12-02T10:00:00.5+01:00", "after-id": "a1", "before-id": "b1"})
        + rsm_set("<max>10</max><after>c1</after>")), max_results=50)
    assert parsed.query_id == "q1" and parsed.with_ == "bob@example.org"
    assert parsed.start == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parsed.end == datetime(2026, 12, 2, 9, 0, 0, 500000, tzinfo=UTC)
    assert parsed.limit == 10 and not parsed.reverse and not parsed.flip
    assert parsed.after == ("a1", "c1") and parsed.before == ("b1",)
    assert parsed.filters(paged=False)["after"] == ("a1",)


def test_last_page_and_flip_page() -> None:
    last = mam.parse_query(query(rsm_set("<before/>")), max_results=50)
    assert last.reverse and last.flip and last.before == () and last.limit == mam.DEFAULT_PAGE
    flipped = mam.parse_query(query(rsm_set("<before/>") + "<flip-page/>"), max_results=50)
    assert flipped.reverse and not flipped.flip


def test_page_size_is_bounded() -> None:
    assert mam.parse_query(query(rsm_set("<max>1000000000000000000000</max>")),
                           max_results=50).limit == 50


@pytest.mark.parametrize("inner", [
    form(start="yesterday"),
    form(end="2026-13-45T00:00:00Z"),
    form(start="2026-12-01T10:00:00"),  # no zone
    form(**{"with": "a" * 3000}),
    form(**{"with": "@example.org"}),
    form(start=["2026-12-01T10:00:00Z", "2026-12-02T10:00:00Z"]),
    form(ids=["x"] * 51),
    rsm_set("<max>-1</max>"),
    rsm_set("<max>ten</max>"),
    rsm_set("<max>\u0661</max>"),  # an Arabic-Indic digit is no XML integer
    "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>other</value>"
    "</field></x>",
])
def test_malformed_queries_are_bad_requests(inner: str) -> None:
    with pytest.raises(StanzaError) as error:
        mam.parse_query(query(inner), max_results=50)
    assert error.value.condition == "bad-request"


def test_prefs_round_trip_and_rules() -> None:
    current = mam.ArchivePrefs()
    prefs = mam.prefs_from_xml(fromstring(
        "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>Bob@Example.org</jid>"
        "<jid>not a jid@</jid></always><never><jid>eve@example.org</jid>"
        "<jid>bob@example.org</jid></never></prefs>"), current)
    assert prefs == mam.ArchivePrefs("roster", frozenset({"bob@example.org"}),
                                     frozenset({"eve@example.org"}))
    assert prefs.rule_for("bob@example.org") == "always"
    assert prefs.rule_for("eve@example.org") == "never"
    assert prefs.rule_for("carol@example.org") == "roster"
    assert mam.ArchivePrefs.from_json(prefs.to_json()) == prefs
    assert mam.prefs_from_xml(prefs.to_xml(), current) == prefs
    assert mam.ArchivePrefs.from_json({"default": "sometimes"}) is None
    with pytest.raises(StanzaError):
        mam.prefs_from_xml(fromstring("<prefs xmlns='urn:xmpp:mam:2' default='x'/>"), current)


@pytest.mark.parametrize(("value", "seconds"), [
    ("1w", 7 * 86400), ("30d", 30 * 86400), ("2 y", 2 * 365.2425 * 86400), ("3600", 3600),
    (86400, 86400), ("never", None), ("NEVER", None), ("1m", 31 * 86400),
])
def test_expiry_periods_read_as_prosody_does(value: object, seconds: float | None) -> None:
    assert mam.parse_period(value) == seconds


def test_unreadable_expiry_and_policy_are_refused() -> None:
    with pytest.raises(ValueError):
        mam.parse_period("soon")
    assert mam.policy_option(True) == "always" and mam.policy_option(False) == "never"
    assert mam.policy_option("roster") == "roster"
    with pytest.raises(ValueError):
        mam.policy_option("sometimes")


def test_result_and_fin_elements() -> None:
    when = datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC)
    result = mam.result_message("alice@example.org/a", "q1", "k1", when, message())
    assert result.find("{urn:xmpp:mam:2}result").get("id") == "k1"
    delay = result.find(".//{urn:xmpp:delay}delay")
    assert delay.get("stamp") == "2026-12-01T10:00:00.250000Z"
    done = mam.fin("k1", "k9", 42, complete=True)
    assert done.get("complete") == "true" and done.get("queryid") is None
    assert done.findtext(f"{{{rsm.NS}}}set/{{{rsm.NS}}}count") == "42"


@pytest.mark.parametrize(("stanza", "sent", "expected"), [
    (message(), True, (True, "type")),
    (message("normal"), False, (True, "type")),
    (message("normal", None), False, (False, "default")),
    (message("headline"), False, (False, "default")),
    (message("chat", "x", "bob@example.org", "{urn:xmpp:carbons:2}private"), True,
     (False, "private")),
    (message("chat", "x", "bob@example.org", "{urn:xmpp:hints}no-copy"), False,
     (False, "hint")),
    (message("chat", "x", "bob@example.org/r", "{http://jabber.org/protocol/muc#user}x"),
     False, (False, "muc-pm")),
])
def test_carbons_eligibility(stanza: Element, sent: bool, expected: tuple[bool, str]) -> None:
    assert should_copy(stanza, sent, "bob@example.org") == expected


def test_carbons_copy_bounces_from_bare_jids_only() -> None:
    bounce = Element(f"{CLIENT}message", {"type": "error", "from": "bob@example.org",
                                          "to": "alice@example.org/a"})
    assert should_copy(bounce, False, "alice@example.org") == (True, "bounce")
    bounce.set("from", "bob@example.org/phone")
    assert should_copy(bounce, False, "alice@example.org")[0] is False


class MemoryKeyval:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.reads = 0

    def get(self, user: str) -> object:
        self.reads += 1
        return self.values.get(user)

    def set(self, user: str, value: object) -> None:
        self.values[user] = value


def test_prefs_are_read_once_and_smart_enable_waits_for_a_mam_client() -> None:
    store = MemoryKeyval()
    plain = PrefsCache(store, "always", smart_enable=False)
    assert plain.get("alice").default == "always"
    assert plain.get("alice").default == "always" and store.reads == 1
    remembered = MemoryKeyval()
    smart = PrefsCache(remembered, "roster", smart_enable=True)
    assert smart.get("bob").default == "never"
    assert smart.get("bob", explicit=True).default == "roster"
    assert smart.get("bob").default == "roster"
    assert remembered.values["bob"] == {"default": "roster", "always": [], "never": []}
