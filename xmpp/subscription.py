"""RFC 6121 section 3 and Appendix A: the presence subscription state machine.

A pure core: it takes the stored state of one roster contact and a subscription
stanza kind, and says what the new state is, whether a roster push is due and
whether the stanza travels on. Storage, roster pushes and presence broadcasts
are the caller's business.

Subscription pre-approval (RFC 6121 3.4) is supported: an outbound
'subscribed' without a pending inbound request marks the contact `approved`
instead of being routed, and the contact's later 'subscribe' is approved at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SUBSCRIBE = "subscribe"
SUBSCRIBED = "subscribed"
UNSUBSCRIBE = "unsubscribe"
UNSUBSCRIBED = "unsubscribed"
KINDS = (SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBE, UNSUBSCRIBED)

SUBSCRIPTIONS = ("none", "to", "from", "both")

# (has 'to', has 'from') <-> the roster 'subscription' attribute (RFC 6121 2.1.2.5)
_SUBSCRIPTION_OF = {
    (False, False): "none", (True, False): "to", (False, True): "from", (True, True): "both",
}


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """What the user's server knows about one contact (RFC 6121 Appendix A.1).

    The nine RFC states are `subscription` plus `ask` ("Pending Out") and
    `pending_in` ("Pending In"). `in_roster` is False only for "None" (no item)
    and for "None + Pending In" when the request came from someone who is not
    in the roster (RFC 6121 3.1.3: a pending request is kept apart from the
    roster). `approved` is a pre-approval (RFC 6121 3.4): the contact's request
    will be approved as soon as it comes. Impossible combinations raise ValueError.
    """

    subscription: str = "none"
    ask: bool = False
    pending_in: bool = False
    in_roster: bool = False
    approved: bool = False

    def __post_init__(self) -> None:
        if self.subscription not in SUBSCRIPTIONS:
            raise ValueError(f"unknown subscription {self.subscription!r}")
        if self.ask and self.has_to:
            raise ValueError("ask (Pending Out) with a subscription 'to' the contact")
        if self.pending_in and self.has_from:
            raise ValueError("pending_in (Pending In) with a subscription 'from' the contact")
        if not self.in_roster and (self.subscription != "none" or self.ask or self.approved):
            raise ValueError("a subscription, an ask or an approval needs a roster item")
        if self.approved and (self.has_from or self.pending_in):
            raise ValueError("a pre-approval with a subscription 'from' or a pending request")

    @property
    def has_to(self) -> bool:
        """The user receives the contact's presence."""
        return self.subscription in ("to", "both")

    @property
    def has_from(self) -> bool:
        """The contact receives the user's presence."""
        return self.subscription in ("from", "both")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one subscription stanza.

    `changed`: the roster item (subscription, ask, or its existence) changed,
    so a roster push is due; a change of `pending_in` alone is not one.
    `deliver`: inbound, deliver the stanza to the user's available resources;
    outbound, route it to the contact.
    `auto_reply`: a presence type the server sends back to the contact on the
    user's behalf.
    """

    state: SubscriptionState
    changed: bool
    deliver: bool
    auto_reply: str | None = None


def _with(state: SubscriptionState, *, to: bool | None = None, from_: bool | None = None,
          **fields: bool) -> SubscriptionState:
    has_to = state.has_to if to is None else to
    has_from = state.has_from if from_ is None else from_
    return replace(state, subscription=_SUBSCRIPTION_OF[(has_to, has_from)], **fields)


def _item(state: SubscriptionState) -> tuple[str, bool, bool, bool]:
    """What the roster item shows: a change of it calls for a roster push."""
    return state.subscription, state.ask, state.in_roster, state.approved


def _outcome(old: SubscriptionState, new: SubscriptionState, deliver: bool,
             auto_reply: str | None = None) -> Outcome:
    changed = _item(old) != _item(new)
    return Outcome(new, changed, deliver, auto_reply)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"not a subscription stanza type: {kind!r}")


def outbound(state: SubscriptionState, kind: str) -> Outcome:
    """Apply a subscription stanza the user sends to the contact (RFC 6121 A.2).

    'subscribe' and 'unsubscribe' are always routed (A.2.1, A.2.2); 'subscribed'
    and 'unsubscribed' only when they answer or cancel something (A.2.3, A.2.4).
    A 'subscribed' that answers nothing is a pre-approval, kept and not routed,
    which an 'unsubscribed' withdraws (RFC 6121 3.4).
    When the contact loses 'from' or gains it, the caller also sends the user's
    unavailable or current presence to the contact (RFC 6121 3.2.2, 3.1.5).
    """
    _check_kind(kind)
    if kind == SUBSCRIBE:
        # Already subscribed: the request is routed but asks for nothing new.
        new = replace(state, in_roster=True, ask=state.ask or not state.has_to)
        return _outcome(state, new, True)
    if kind == UNSUBSCRIBE:
        return _outcome(state, _with(state, to=False, ask=False), True)
    if kind == SUBSCRIBED:
        if state.pending_in:
            return _outcome(state, _with(state, from_=True, pending_in=False, in_roster=True),
                            True)
        if state.has_from:
            return _outcome(state, state, False)
        return _outcome(state, replace(state, approved=True, in_roster=True), False)
    if not (state.has_from or state.pending_in):
        return _outcome(state, replace(state, approved=False), False)
    return _outcome(state, _with(state, from_=False, pending_in=False), True)


def inbound(state: SubscriptionState, kind: str) -> Outcome:
    """Apply a subscription stanza the contact sends to the user (RFC 6121 A.3).

    An inbound 'subscribe' records a pending request (delivered once) or, when
    the contact already has 'from', is answered with an automatic 'subscribed'
    (RFC 6121 3.1.3); a pre-approved one is approved at once, the approval used
    up (3.4). The others act only when they match a subscription or a pending
    request, and are ignored otherwise.
    """
    _check_kind(kind)
    if kind == SUBSCRIBE:
        if state.has_from:
            return _outcome(state, state, False, auto_reply=SUBSCRIBED)
        if state.approved:
            return _outcome(state, _with(state, from_=True, approved=False), False,
                            auto_reply=SUBSCRIBED)
        if state.pending_in:
            return _outcome(state, state, False)
        return _outcome(state, replace(state, pending_in=True), True)
    if kind == SUBSCRIBED:
        if not state.ask:
            return _outcome(state, state, False)
        return _outcome(state, _with(state, to=True, ask=False), True)
    if kind == UNSUBSCRIBE:
        if not (state.has_from or state.pending_in):
            return _outcome(state, state, False)
        return _outcome(state, _with(state, from_=False, pending_in=False), True)
    if not (state.has_to or state.ask):
        return _outcome(state, state, False)
    return _outcome(state, _with(state, to=False, ask=False), True)


def roster_item_attrs(state: SubscriptionState) -> dict[str, str]:
    """The `subscription` and `ask` attributes of the contact's roster item (RFC 6121 2.1.2)."""
    attrs = {"subscription": state.subscription}
    if state.ask:
        attrs["ask"] = "subscribe"
    if state.approved:
        attrs["approved"] = "true"
    return attrs


def presence_recipients_allowed(state: SubscriptionState) -> tuple[bool, bool]:
    """(the contact may receive the user's presence, the user may receive the contact's).

    Used for presence broadcast and for answering probes (RFC 6121 4.2.2, 4.3.2).
    """
    return state.has_from, state.has_to
