"""RFC 6121 Appendix A: the subscription state machine against the RFC's tables."""

import itertools

import pytest

from xmpp.subscription import (
    KINDS,
    Outcome,
    SubscriptionState,
    inbound,
    outbound,
    presence_recipients_allowed,
    roster_item_attrs,
)

# RFC 6121 A.1: the nine defined states, for a contact that is in the roster.
STATES = {
    "None": SubscriptionState("none", in_roster=True),
    "None + Pending Out": SubscriptionState("none", ask=True, in_roster=True),
    "None + Pending In": SubscriptionState("none", pending_in=True, in_roster=True),
    "None + Pending Out+In": SubscriptionState("none", ask=True, pending_in=True, in_roster=True),
    "To": SubscriptionState("to", in_roster=True),
    "To + Pending In": SubscriptionState("to", pending_in=True, in_roster=True),
    "From": SubscriptionState("from", in_roster=True),
    "From + Pending Out": SubscriptionState("from", ask=True, in_roster=True),
    "Both": SubscriptionState("both", in_roster=True),
}
SAME = "no state change"
# RFC 6121 3.4: a pre-approval is kept on the item, beside the nine states.
PREAPPROVED = {
    f"{name} + Pre-approved": SubscriptionState(
        STATES[name].subscription, ask=STATES[name].ask, in_roster=True, approved=True)
    for name in ("None", "None + Pending Out", "To")
}
ALL_STATES = {**STATES, **PREAPPROVED}


def _table(text: str) -> dict[str, tuple[bool, str]]:
    """Parse rows "existing | yes/no | new state" copied from an RFC table."""
    rows = {}
    for line in text.strip().splitlines():
        existing, passes, new = (cell.strip().strip('"') for cell in line.split("|"))
        rows[existing] = (passes.rstrip(" *") == "yes", new)
    assert rows.keys() == STATES.keys()
    return rows


# RFC 6121 A.2.1, outbound "subscribe": ROUTE? / NEW STATE
OUT_SUBSCRIBE = _table("""
    "None"                  | yes | "None + Pending Out"
    "None + Pending Out"    | yes | no state change
    "None + Pending In"     | yes | "None + Pending Out+In"
    "None + Pending Out+In" | yes | no state change
    "To"                    | yes | no state change
    "To + Pending In"       | yes | no state change
    "From"                  | yes | "From + Pending Out"
    "From + Pending Out"    | yes | no state change
    "Both"                  | yes | no state change
""")

# RFC 6121 A.2.2, outbound "unsubscribe": ROUTE? / NEW STATE
OUT_UNSUBSCRIBE = _table("""
    "None"                  | yes | no state change
    "None + Pending Out"    | yes | "None"
    "None + Pending In"     | yes | no state change
    "None + Pending Out+In" | yes | "None + Pending In"
    "To"                    | yes | "None"
    "To + Pending In"       | yes | "None + Pending In"
    "From"                  | yes | no state change
    "From + Pending Out"    | yes | "From"
    "Both"                  | yes | "From"
""")

# RFC 6121 A.2.3, outbound "subscribed", server with pre-approval (3.4): ROUTE? / NEW STATE
OUT_SUBSCRIBED = _table("""
    "None"                  | no  | "None + Pre-approved"
    "None + Pending Out"    | no  | "None + Pending Out + Pre-approved"
    "None + Pending In"     | yes | "From"
    "None + Pending Out+In" | yes | "From + Pending Out"
    "To"                    | no  | "To + Pre-approved"
    "To + Pending In"       | yes | "Both"
    "From"                  | no  | no state change
    "From + Pending Out"    | no  | no state change
    "Both"                  | no  | no state change
""")

# RFC 6121 A.2.4, outbound "unsubscribed": ROUTE? / NEW STATE
OUT_UNSUBSCRIBED = _table("""
    "None"                  | no  | no state change
    "None + Pending Out"    | no  | no state change
    "None + Pending In"     | yes | "None"
    "None + Pending Out+In" | yes | "None + Pending Out"
    "To"                    | no  | no state change
    "To + Pending In"       | yes | "To"
    "From"                  | yes | "None"
    "From + Pending Out"    | yes | "None + Pending Out"
    "Both"                  | yes | "To"
""")

# RFC 6121 A.3.1, inbound "subscribe": DELIVER? / NEW STATE
# (* = the server auto-replies "subscribed" on the user's behalf, RFC 6121 3.1.3)
IN_SUBSCRIBE = _table("""
    "None"                  | yes   | "None + Pending In"
    "None + Pending Out"    | yes   | "None + Pending Out+In"
    "None + Pending In"     | no    | no state change
    "None + Pending Out+In" | no    | no state change
    "To"                    | yes   | "To + Pending In"
    "To + Pending In"       | no    | no state change
    "From"                  | no *  | no state change
    "From + Pending Out"    | no *  | no state change
    "Both"                  | no *  | no state change
""")
AUTO_REPLIED = {"From", "From + Pending Out", "Both"}

# RFC 6121 A.3.2, inbound "unsubscribe": DELIVER? / NEW STATE
IN_UNSUBSCRIBE = _table("""
    "None"                  | no    | no state change
    "None + Pending Out"    | no    | no state change
    "None + Pending In"     | yes * | "None"
    "None + Pending Out+In" | yes * | "None + Pending Out"
    "To"                    | no    | no state change
    "To + Pending In"       | yes * | "To"
    "From"                  | yes * | "None"
    "From + Pending Out"    | yes * | "None + Pending Out"
    "Both"                  | yes * | "To"
""")

# RFC 6121 A.3.3, inbound "subscribed": DELIVER? / NEW STATE
IN_SUBSCRIBED = _table("""
    "None"                  | no  | no state change
    "None + Pending Out"    | yes | "To"
    "None + Pending In"     | no  | no state change
    "None + Pending Out+In" | yes | "To + Pending In"
    "To"                    | no  | no state change
    "To + Pending In"       | no  | no state change
    "From"                  | no  | no state change
    "From + Pending Out"    | yes | "Both"
    "Both"                  | no  | no state change
""")

# RFC 6121 A.3.4, inbound "unsubscribed": DELIVER? / NEW STATE
IN_UNSUBSCRIBED = _table("""
    "None"                  | no  | no state change
    "None + Pending Out"    | yes | "None"
    "None + Pending In"     | no  | no state change
    "None + Pending Out+In" | yes | "None + Pending In"
    "To"                    | yes | "None"
    "To + Pending In"       | yes | "None + Pending In"
    "From"                  | no  | no state change
    "From + Pending Out"    | yes | "From"
    "Both"                  | yes | "From"
""")

TABLES = {
    (outbound, "subscribe"): OUT_SUBSCRIBE,
    (outbound, "unsubscribe"): OUT_UNSUBSCRIBE,
    (outbound, "subscribed"): OUT_SUBSCRIBED,
    (outbound, "unsubscribed"): OUT_UNSUBSCRIBED,
    (inbound, "subscribe"): IN_SUBSCRIBE,
    (inbound, "unsubscribe"): IN_UNSUBSCRIBE,
    (inbound, "subscribed"): IN_SUBSCRIBED,
    (inbound, "unsubscribed"): IN_UNSUBSCRIBED,
}
CASES = [
    pytest.param(direction, kind, name, id=f"{direction.__name__}-{kind}-{name}")
    for (direction, kind), table in TABLES.items()
    for name in table
]


def _item(state: SubscriptionState) -> tuple:
    return (state.subscription, state.ask, state.in_roster, state.approved)


@pytest.mark.parametrize(("direction", "kind", "name"), CASES)
def test_rfc_6121_appendix_a(direction, kind, name):
    passes, new_name = TABLES[direction, kind][name]
    old = STATES[name]
    outcome = direction(old, kind)
    assert outcome.state == (old if new_name == SAME else ALL_STATES[new_name])
    assert outcome.deliver is passes
    # A roster push is due exactly when the item itself changed; Pending In is not
    # part of the item (RFC 6121 2.1.2.5 has no attribute for it).
    assert outcome.changed is (_item(outcome.state) != _item(old))
    auto_replied = direction is inbound and kind == "subscribe" and name in AUTO_REPLIED
    assert outcome.auto_reply == ("subscribed" if auto_replied else None)


def test_tables_cover_every_state_and_kind():
    assert {(d, k) for d, k in TABLES} == set(itertools.product((outbound, inbound), KINDS))


# A contact that is not in the roster: no item ("None"), or a stranger whose request
# is pending (RFC 6121 3.1.3 keeps it apart from the roster, 3.3.3 drops it on
# unsubscribe). Columns: new state, deliver/route, roster push due.
NONE_OUT = SubscriptionState()
STRANGER_IN = SubscriptionState(pending_in=True)
OUTSIDE_ROSTER = [
    (NONE_OUT, outbound, "subscribe", STATES["None + Pending Out"], True, True),
    (NONE_OUT, outbound, "unsubscribe", NONE_OUT, True, False),
    (NONE_OUT, outbound, "subscribed", PREAPPROVED["None + Pre-approved"], False, True),
    (NONE_OUT, outbound, "unsubscribed", NONE_OUT, False, False),
    (NONE_OUT, inbound, "subscribe", STRANGER_IN, True, False),
    (NONE_OUT, inbound, "unsubscribe", NONE_OUT, False, False),
    (NONE_OUT, inbound, "subscribed", NONE_OUT, False, False),
    (NONE_OUT, inbound, "unsubscribed", NONE_OUT, False, False),
    (STRANGER_IN, outbound, "subscribe", STATES["None + Pending Out+In"], True, True),
    (STRANGER_IN, outbound, "unsubscribe", STRANGER_IN, True, False),
    (STRANGER_IN, outbound, "subscribed", STATES["From"], True, True),
    (STRANGER_IN, outbound, "unsubscribed", NONE_OUT, True, False),
    (STRANGER_IN, inbound, "subscribe", STRANGER_IN, False, False),
    (STRANGER_IN, inbound, "unsubscribe", NONE_OUT, True, False),
    (STRANGER_IN, inbound, "subscribed", STRANGER_IN, False, False),
    (STRANGER_IN, inbound, "unsubscribed", STRANGER_IN, False, False),
]


@pytest.mark.parametrize(("old", "direction", "kind", "new", "deliver", "changed"),
                         OUTSIDE_ROSTER)
def test_contact_outside_the_roster(old, direction, kind, new, deliver, changed):
    assert direction(old, kind) == Outcome(new, changed, deliver)


def test_outside_roster_table_covers_every_kind():
    seen = {(old, d, k) for old, d, k, *_ in OUTSIDE_ROSTER}
    assert seen == set(itertools.product((NONE_OUT, STRANGER_IN), (outbound, inbound), KINDS))


def test_pending_in_alone_is_no_roster_push():
    outcome = inbound(STATES["None"], "subscribe")
    assert outcome == Outcome(STATES["None + Pending In"], changed=False, deliver=True)


def test_inbound_subscribe_when_already_subscribed_auto_replies():
    outcome = inbound(STATES["Both"], "subscribe")
    assert outcome == Outcome(STATES["Both"], changed=False, deliver=False,
                              auto_reply="subscribed")


# RFC 6121 3.4: what becomes of a pre-approval. Columns: old state, direction, kind,
# new state, deliver/route, auto-reply.
PRE_NONE, PRE_ASKED, PRE_TO = PREAPPROVED.values()
WITH_PREAPPROVAL = [
    # The contact's request is approved at once, not delivered, the approval used up.
    (PRE_NONE, inbound, "subscribe", STATES["From"], False, "subscribed"),
    (PRE_ASKED, inbound, "subscribe", STATES["From + Pending Out"], False, "subscribed"),
    (PRE_TO, inbound, "subscribe", STATES["Both"], False, "subscribed"),
    # An 'unsubscribed' withdraws it, and is not routed: there was nothing to cancel.
    (PRE_NONE, outbound, "unsubscribed", STATES["None"], False, None),
    (PRE_TO, outbound, "unsubscribed", STATES["To"], False, None),
    # Approving again changes nothing; the user's own subscription goes on as before.
    (PRE_NONE, outbound, "subscribed", PRE_NONE, False, None),
    (PRE_NONE, outbound, "subscribe", PRE_ASKED, True, None),
    (PRE_ASKED, inbound, "subscribed", PRE_TO, True, None),
    (PRE_TO, inbound, "unsubscribed", PRE_NONE, True, None),
]


@pytest.mark.parametrize(("old", "direction", "kind", "new", "deliver", "auto_reply"),
                         WITH_PREAPPROVAL)
def test_pre_approval(old, direction, kind, new, deliver, auto_reply):
    outcome = direction(old, kind)
    assert outcome == Outcome(new, _item(new) != _item(old), deliver, auto_reply)


def test_full_handshake_between_two_servers():
    # Romeo subscribes to Juliet, Juliet approves and subscribes back, Romeo approves.
    states = {"romeo": SubscriptionState(), "juliet": SubscriptionState()}
    steps = [("romeo", "juliet", "subscribe"), ("juliet", "romeo", "subscribed"),
             ("juliet", "romeo", "subscribe"), ("romeo", "juliet", "subscribed")]
    for sender, receiver, kind in steps:
        sent = outbound(states[sender], kind)
        assert sent.deliver
        received = inbound(states[receiver], kind)
        assert received.deliver
        states[sender], states[receiver] = sent.state, received.state
    assert states["romeo"] == states["juliet"] == STATES["Both"]


def test_unsubscribe_both_ways_returns_to_none():
    states = {"romeo": STATES["Both"], "juliet": STATES["Both"]}
    for sender, receiver, kind in [("romeo", "juliet", "unsubscribe"),
                                   ("romeo", "juliet", "unsubscribed")]:
        sent, received = outbound(states[sender], kind), inbound(states[receiver], kind)
        assert sent.deliver and received.deliver and sent.changed and received.changed
        states[sender], states[receiver] = sent.state, received.state
    assert states["romeo"] == states["juliet"] == STATES["None"]


@pytest.mark.parametrize("name", ALL_STATES)
def test_roster_item_attrs(name):
    state = ALL_STATES[name]
    expected = {"subscription": name.split()[0].lower()}
    if "Pending Out" in name:
        expected["ask"] = "subscribe"
    if "Pre-approved" in name:
        expected["approved"] = "true"  # RFC 6121 2.1.2.1
    assert roster_item_attrs(state) == expected


@pytest.mark.parametrize("name", STATES)
def test_presence_recipients_allowed(name):
    subscription = STATES[name].subscription
    assert presence_recipients_allowed(STATES[name]) == (
        subscription in ("from", "both"), subscription in ("to", "both"))


@pytest.mark.parametrize("fields", [
    {"subscription": "remove"},
    {"subscription": "to", "ask": True, "in_roster": True},
    {"subscription": "both", "ask": True, "in_roster": True},
    {"subscription": "from", "pending_in": True, "in_roster": True},
    {"subscription": "both", "pending_in": True, "in_roster": True},
    {"subscription": "to"},
    {"ask": True},
    {"approved": True},
    {"subscription": "from", "approved": True, "in_roster": True},
    {"pending_in": True, "approved": True, "in_roster": True},
])
def test_impossible_states_are_refused(fields):
    with pytest.raises(ValueError):
        SubscriptionState(**fields)


@pytest.mark.parametrize("direction", [outbound, inbound])
@pytest.mark.parametrize("kind", ["probe", "unavailable", "", "Subscribe"])
def test_other_presence_types_are_refused(direction, kind):
    with pytest.raises(ValueError):
        direction(STATES["None"], kind)
