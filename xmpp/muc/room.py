"""XEP-0045 one room as a state machine: occupants (one nick may hold several
sessions of one user), roles and affiliations, configuration, subject and
history. It takes a stanza (already stamped with its real `from`) and `now`
and returns an Outcome: the stanzas to send and what the service must store.
It never routes, stores or reads the clock itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.muc import names as n
from xmpp.muc.history import History, HistoryEntry, parse_request
from xmpp.muc.roomconfig import (
    PRIVACY_FIELDS,
    RoomConfig,
    apply_form,
    config_form,
    submitted_fields,
)
from xmpp.stanza import make_iq_result

# Errors from an occupant's server that mean the occupant is gone (Prosody's kickable errors).
KICKABLE_ERRORS = frozenset({
    "gone", "internal-server-error", "item-not-found", "jid-malformed", "recipient-unavailable",
    "redirect", "remote-server-not-found", "remote-server-timeout", "service-unavailable",
})
NOT_IN_ROOM = "You are not currently connected to this chat"
RELAY_MAC_BYTES = 9
VCARD = "{vcard-temp}vCard"
UNBOUNDED_HISTORY = 2 ** 31  # Prosody's max_history_messages default is math.huge


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """What the service decides for all its rooms (Prosody's options)."""

    max_nick_length: int = 23
    max_occupants: int | None = None
    max_history: int = UNBOUNDED_HISTORY  # max_history_messages
    owners: frozenset[str] = frozenset()  # component admins, owners of every room
    archive: bool = False  # mod_muc_mam is loaded
    log_all_rooms: bool = False
    log_by_default: bool = True
    log_presences: bool = False
    occupant_id: bool = True  # muc_occupant_id
    # Presence changes (joins, nick and status changes) a session may send: a
    # burst, then so many a second; more are refused (Prosody has no limit).
    presence_burst: int = 10
    presence_rate: float = 1.0


@dataclass(slots=True)
class Occupant:
    nick: str
    jid: str  # room@service/nick
    bare: str  # the user's real bare JID
    role: str
    # real full JID -> that session's last presence, in join order
    sessions: dict[str, Element] = field(default_factory=dict)

    @property
    def presence(self) -> Element:
        """The presence the room shows for the occupant: its latest session's."""
        return next(reversed(self.sessions.values()))


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    key: str
    stanza: Element
    when: float
    with_: str


@dataclass(frozen=True, slots=True)
class Destruction:
    reason: str | None
    alternate: str | None
    password: str | None


@dataclass(slots=True)
class Outcome:
    """What handling one stanza asks of the service."""

    stanzas: list[Element] = field(default_factory=list)
    save: bool = False  # configuration, affiliations or subject changed
    archive: list[ArchiveItem] = field(default_factory=list)
    destroyed: Destruction | None = None


def error_reply(stanza: Element, error: StanzaError, by: str) -> Element:
    return error.to_reply(stanza, by=by)


def _copy(template: Element, to: str) -> Element:
    """`template` addressed to `to`, sharing its children (never mutated once sent)."""
    stanza = Element(template.tag, template.attrib)
    stanza.set("to", to)
    stanza.text = template.text
    stanza.extend(template)
    return stanza


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Room:
    """One room: its settings, affiliations, occupants, subject and history."""

    def __init__(self, jid: str, config: RoomConfig, policy: RoomPolicy, *,
                 new_id: Callable[[], str], affiliations: dict[str, str] | None = None,
                 subject: tuple[str, str] | None = None, locked: bool = False,
                 salt: str | None = None) -> None:
        self.jid = jid
        self.config = config
        self.policy = policy
        self.new_id = new_id
        self.affiliations: dict[str, str] = dict(affiliations or {})
        self.subject = subject  # (text, nick of who set it)
        self.locked = locked
        self.salt = salt or new_id()
        self.occupants: dict[str, Occupant] = {}
        self.by_session: dict[str, Occupant] = {}
        # real JID -> (tokens, when counted) of the presence-change bucket
        self.presence_tokens: dict[str, tuple[float, float]] = {}
        self.history = History(self.history_length)

    # -- state the service stores -----------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_json(), "affiliations": self.affiliations,
                "subject": list(self.subject) if self.subject else None, "salt": self.salt}

    @classmethod
    def from_json(cls, jid: str, data: dict[str, Any], policy: RoomPolicy,
                  new_id: Callable[[], str]) -> Room:
        subject = data.get("subject")
        return cls(jid, RoomConfig.from_json(data.get("config", {})), policy, new_id=new_id,
                   affiliations=data.get("affiliations"),
                   subject=(subject[0], subject[1]) if subject else None, salt=data.get("salt"))

    # -- derived state ----------------------------------------------------------------

    @property
    def history_length(self) -> int:
        return min(self.config.history_length, self.policy.max_history)

    @property
    def empty(self) -> bool:
        return not self.occupants

    @property
    def archiving(self) -> bool:
        """Whether the room's messages go to its archive (mod_muc_mam's rules)."""
        if not self.policy.archive:
            return False
        if self.policy.log_all_rooms:
            return True
        return self.policy.log_by_default if self.config.archiving is None \
            else self.config.archiving

    def affiliation(self, bare: str) -> str:
        if bare in self.policy.owners:
            return "owner"
        return self.affiliations.get(bare, "none")

    def default_role(self, affiliation: str) -> str:
        if affiliation in ("owner", "admin"):
            return "moderator"
        if affiliation == "member" or not self.config.moderated:
            return "participant"
        return "visitor"

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid}/{nick}"

    def occupant_id(self, bare: str) -> str:
        """XEP-0421: stable per user and room, unlinkable across rooms."""
        digest = hashlib.sha256(f"{self.salt}\0{bare}".encode()).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def sessions(self) -> Iterator[tuple[Occupant, str]]:
        for occupant in list(self.occupants.values()):
            for real in occupant.sessions:
                yield occupant, real

    # -- entry points -------------------------------------------------------------------

    def handle(self, stanza: Element, now: float, outcome: Outcome | None = None) -> Outcome:
        """Any stanza addressed to the room or one of its occupants."""
        outcome = outcome if outcome is not None else Outcome()
        try:
            if stanza.tag == n.PRESENCE:
                self._presence(stanza, now, outcome)
            elif stanza.tag == n.MESSAGE:
                self._message(stanza, now, outcome)
            elif stanza.tag == n.IQ:
                self._iq(stanza, now, outcome)
        except StanzaError as error:
            if stanza.get("type") != "error":
                outcome.stanzas.append(error_reply(stanza, error, self.jid))
        return outcome

    # -- presence -----------------------------------------------------------------------

    def _presence(self, stanza: Element, now: float, out: Outcome) -> None:
        real = stanza.get("from", "")
        to = parse_jid(stanza.get("to", ""))
        kind = stanza.get("type")
        occupant = self.by_session.get(real)
        if kind == "error":
            if occupant is not None:
                self._remove(occupant, out, codes=(n.SHUTDOWN_ERROR,))
            return
        if kind == "unavailable":
            if occupant is not None:
                self._leave(occupant, real, stanza, out, now)
            return
        if kind == "probe":
            self._probe(stanza, occupant, to, out)
            return
        if kind is not None:
            return  # subscriptions mean nothing to a room
        if to.resource is None:
            raise StanzaError("jid-malformed", "A nickname is required to join")
        self._spend_presence(real, now)
        if occupant is None:
            self.join(stanza, to.resource, now, out)
        elif occupant.nick == to.resource:
            occupant.sessions[real] = stanza
            self._broadcast_presence(occupant, out)
            self._log_presence(occupant, stanza, now, out)
        else:
            self._change_nick(occupant, real, stanza, to.resource, now, out)

    def _spend_presence(self, real: str, now: float) -> None:
        """A presence flood from one session is refused with the wait it needs."""
        policy = self.policy
        tokens, then = self.presence_tokens.get(real, (float(policy.presence_burst), now))
        tokens = min(float(policy.presence_burst), tokens + (now - then) * policy.presence_rate)
        if tokens < 1:
            self.presence_tokens[real] = (tokens, now)
            wait = (1 - tokens) / policy.presence_rate
            raise StanzaError("policy-violation", f"Too many presence changes: try again in "
                              f"{wait:.1f} s", "wait")
        self.presence_tokens[real] = (tokens - 1, now)
        if len(self.presence_tokens) > 2 * len(self.by_session) + 100:
            # Sessions that left (or never got in) keep no bucket for long.
            self.presence_tokens = {jid: state for jid, state in self.presence_tokens.items()
                                    if jid in self.by_session}

    def check_nick(self, nick: str) -> None:
        if len(nick) > self.policy.max_nick_length:
            raise StanzaError("not-acceptable", f"Nicknames are limited to "
                              f"{self.policy.max_nick_length} characters", "modify")

    def join(self, stanza: Element, nick: str, now: float, out: Outcome,
             created: bool = False) -> None:
        """A session enters the room under `nick` (XEP-0045 7.2)."""
        real = stanza.get("from", "")
        bare = str(parse_jid(real).bare)
        muc_x = stanza.find(n.X_MUC)
        if muc_x is None:
            raise StanzaError("item-not-found", NOT_IN_ROOM)
        self.check_nick(nick)
        affiliation = self.affiliation(bare)
        if self.locked and affiliation != "owner":
            raise StanzaError("item-not-found", "This room is locked")
        if affiliation == "outcast":
            raise StanzaError("forbidden", "You have been banned from this room")
        if self.config.members_only and affiliation == "none":
            raise StanzaError("registration-required", "Membership is required to enter "
                              "this room")
        if self.config.password and muc_x.findtext(f"{{{n.MUC}}}password") \
                != self.config.password:
            raise StanzaError("not-authorized", "A password is required to enter this room")
        occupant = self.occupants.get(nick)
        if occupant is not None and occupant.bare != bare:
            raise StanzaError("conflict", "This nickname is in use")
        if occupant is None and self.policy.max_occupants is not None \
                and len(self.occupants) >= self.policy.max_occupants \
                and affiliation not in ("owner", "admin"):
            raise StanzaError("service-unavailable", "This room is full", "wait")
        first = occupant is None
        if occupant is None:
            occupant = Occupant(nick, self.occupant_jid(nick), bare,
                                self.default_role(affiliation))
            self.occupants[nick] = occupant
        occupant.sessions[real] = stanza
        self.by_session[real] = occupant
        for other in self.occupants.values():
            if other is not occupant:
                out.stanzas.append(self._occupant_presence(
                    other, real, visible=self._sees_jids(occupant)))
        codes = [n.SELF]
        if self.config.whois == "anyone":
            codes.append(n.NON_ANONYMOUS)
        if self.archiving:
            codes.append(n.LOGGING_ON)
        if created:
            codes.append(n.CREATED)
        if first:
            self._broadcast_presence(occupant, out, self_codes=codes, self_only=real)
        out.stanzas.append(self._occupant_presence(occupant, real, visible=True,
                                                   codes=codes))
        for entry in self.history.select(parse_request(muc_x, now),
                                         self.config.default_history_messages):
            out.stanzas.append(_copy(entry.stanza, real))
        out.stanzas.append(self._subject_message(real))
        self._log_presence(occupant, stanza, now, out)

    def _broadcast_presence(self, occupant: Occupant, out: Outcome, *,
                            kind: str | None = None, codes: Iterable[str] = (),
                            self_codes: Iterable[str] = (n.SELF,),
                            extra: Iterable[Element] = (), nick: str | None = None,
                            self_only: str | None = None,
                            actor: Iterable[Element] = ()) -> None:
        """The occupant's presence to everyone in the room. `self_only` is a
        session of the occupant that gets its own copy elsewhere (a joining one)."""
        codes = tuple(codes)
        self_codes = tuple(codes) + tuple(c for c in self_codes if c not in codes)
        shown = occupant.role in self.config.presence_broadcast or kind == "unavailable"
        templates: dict[bool, Element] = {}
        for other, real in self.sessions():
            if other is occupant:
                if real != self_only:
                    out.stanzas.append(self._occupant_presence(
                        occupant, real, visible=True, kind=kind, codes=self_codes,
                        extra=extra, nick=nick, actor=actor))
                continue
            if not shown:
                continue
            visible = self._sees_jids(other)
            template = templates.get(visible)
            if template is None:
                template = templates[visible] = self._occupant_presence(
                    occupant, None, visible=visible, kind=kind, codes=codes, extra=extra,
                    nick=nick, actor=actor)
            out.stanzas.append(_copy(template, real))

    def _sees_jids(self, viewer: Occupant) -> bool:
        return self.config.whois == "anyone" or viewer.role == "moderator"

    def _occupant_presence(self, occupant: Occupant, to: str | None, *, visible: bool,
                           kind: str | None = None, codes: Iterable[str] = (),
                           extra: Iterable[Element] = (), nick: str | None = None,
                           actor: Iterable[Element] = ()) -> Element:
        source = occupant.presence
        attrs = {"from": occupant.jid}
        if to is not None:
            attrs["to"] = to
        if kind is not None:
            attrs["type"] = kind
        presence = Element(n.PRESENCE, attrs)
        for child in source:
            if child.tag not in (n.X_MUC, n.X_USER, f"{{{n.OCCUPANT_ID}}}occupant-id"):
                presence.append(child)
        x = SubElement(presence, n.X_USER)
        item = SubElement(x, f"{{{n.MUC_USER}}}item", {
            "affiliation": self.affiliation(occupant.bare),
            "role": "none" if kind == "unavailable" else occupant.role})
        if visible:
            item.set("jid", to if to in occupant.sessions else source.get("from", ""))
        if nick is not None:
            item.set("nick", nick)
        item.extend(actor)
        x.extend(extra)
        for code in codes:
            SubElement(x, f"{{{n.MUC_USER}}}status", {"code": code})
        if self.policy.occupant_id:
            SubElement(presence, f"{{{n.OCCUPANT_ID}}}occupant-id",
                       {"id": self.occupant_id(occupant.bare)})
        return presence

    def _subject_message(self, to: str) -> Element:
        text, nick = self.subject or ("", "")
        message = Element(n.MESSAGE, {"from": self.occupant_jid(nick) if nick else self.jid,
                                      "to": to, "type": "groupchat"})
        SubElement(message, n.SUBJECT).text = text or None
        return message

    def _leave(self, occupant: Occupant, real: str, stanza: Element, out: Outcome,
               now: float) -> None:
        occupant.sessions[real] = stanza
        if len(occupant.sessions) > 1:
            # Another session keeps the nick: only this one sees itself leave.
            out.stanzas.append(self._occupant_presence(occupant, real, visible=True,
                                                       kind="unavailable", codes=(n.SELF,)))
            del occupant.sessions[real]
            del self.by_session[real]
            return
        self._broadcast_presence(occupant, out, kind="unavailable")
        self._log_presence(occupant, stanza, now, out)
        self._forget(occupant)

    def _forget(self, occupant: Occupant) -> None:
        for real in occupant.sessions:
            self.by_session.pop(real, None)
        if self.occupants.get(occupant.nick) is occupant:
            del self.occupants[occupant.nick]

    def _remove(self, occupant: Occupant, out: Outcome, *, codes: Iterable[str],
                actor: Iterable[Element] = (), extra: Iterable[Element] = ()) -> None:
        """Take every session of the occupant out (kick, ban, errors), telling all."""
        self._broadcast_presence(occupant, out, kind="unavailable", codes=codes, actor=actor,
                                 extra=extra)
        self._forget(occupant)

    def _change_nick(self, occupant: Occupant, real: str, stanza: Element, nick: str,
                     now: float, out: Outcome) -> None:
        """XEP-0045 7.6: the session leaves its nick (status 303) and takes `nick`."""
        self.check_nick(nick)
        bare = occupant.bare
        dest = self.occupants.get(nick)
        if dest is not None and dest.bare != bare:
            raise StanzaError("conflict", "This nickname is in use")
        if dest is None and self.policy.max_occupants is not None \
                and len(self.occupants) >= self.policy.max_occupants + 1:
            raise StanzaError("service-unavailable", "This room is full", "wait")
        if len(occupant.sessions) > 1:
            out.stanzas.append(self._occupant_presence(
                occupant, real, visible=True, kind="unavailable", nick=nick,
                codes=(n.NICK_CHANGED, n.SELF)))
            del occupant.sessions[real]
        else:
            self._broadcast_presence(occupant, out, kind="unavailable", nick=nick,
                                     codes=(n.NICK_CHANGED,))
            self._forget(occupant)
        if dest is None:
            dest = Occupant(nick, self.occupant_jid(nick), bare, occupant.role)
            self.occupants[nick] = dest
        dest.sessions[real] = stanza
        self.by_session[real] = dest
        self._broadcast_presence(dest, out)
        self._log_presence(dest, stanza, now, out)

    def _probe(self, stanza: Element, prober: Occupant | None, to: JID, out: Outcome) -> None:
        if prober is None:
            raise StanzaError("not-acceptable", NOT_IN_ROOM)
        probed = self.occupants.get(to.resource or "")
        real = stanza.get("from", "")
        if probed is not None:
            out.stanzas.append(self._occupant_presence(probed, real,
                                                       visible=self._sees_jids(prober)))

    def _log_presence(self, occupant: Occupant, stanza: Element, now: float,
                      out: Outcome) -> None:
        """muc_log_presences: joins, leaves and changes go to the archive too."""
        if not (self.policy.log_presences and self.archiving):
            return
        logged = self._occupant_presence(occupant, None, visible=False,
                                         kind=stanza.get("type"))
        out.archive.append(ArchiveItem(self.new_id(), logged, now, occupant.jid))

    # -- messages ------------------------------------------------------------------------

    def _message(self, stanza: Element, now: float, out: Outcome) -> None:
        real = stanza.get("from", "")
        to = parse_jid(stanza.get("to", ""))
        kind = stanza.get("type", "normal")
        occupant = self.by_session.get(real)
        if kind == "error":
            if occupant is not None and _kickable(stanza):
                self._remove(occupant, out, codes=(n.SHUTDOWN_ERROR,))
            return
        if to.resource is not None:
            self._private_message(stanza, occupant, to.resource, kind, out)
        elif kind == "groupchat":
            self._groupchat(stanza, occupant, now, out)
        else:
            self._bare_message(stanza, occupant, out)

    def _groupchat(self, stanza: Element, occupant: Occupant | None, now: float,
                   out: Outcome) -> None:
        if occupant is None:
            raise StanzaError("not-acceptable", NOT_IN_ROOM)
        if n.ROLES[occupant.role] < n.ROLES["participant"]:
            raise StanzaError("forbidden", "You do not have permission to speak in this room")
        subject = stanza.find(n.SUBJECT)
        body = stanza.find(n.BODY)
        if subject is not None and body is None:
            if occupant.role != "moderator" and not self.config.changesubject:
                raise StanzaError("forbidden", "You are not allowed to change the subject")
            self.subject = (subject.text or "", occupant.nick)
            out.save = self.config.persistent
        self.broadcast_message(stanza, occupant, now, out,
                               historic=body is not None or subject is not None)

    def broadcast_message(self, stanza: Element, occupant: Occupant | None, now: float,
                          out: Outcome, *, historic: bool) -> Element:
        """Send a groupchat message from `occupant` (or the room) to everyone;
        historic ones go to the history and, when the room logs, the archive."""
        attrs = {"from": occupant.jid if occupant else self.jid, "type": "groupchat"}
        if stanza.get("id"):
            attrs["id"] = stanza.get("id", "")
        template = Element(n.MESSAGE, attrs)
        stanza_id_tag = f"{{{n.STANZA_ID}}}stanza-id"
        for child in stanza:
            if child.tag == f"{{{n.OCCUPANT_ID}}}occupant-id":
                continue  # only the room says who an occupant is
            if child.tag == stanza_id_tag and child.get("by") == self.jid:
                continue  # a forged archive id
            template.append(child)
        if occupant is not None and self.policy.occupant_id:
            SubElement(template, f"{{{n.OCCUPANT_ID}}}occupant-id",
                       {"id": self.occupant_id(occupant.bare)})
        key = None
        if historic and self.archiving:
            key = self.new_id()
            SubElement(template, stanza_id_tag, {"id": key, "by": self.jid})
            out.archive.append(ArchiveItem(key, template, now, occupant.jid if occupant
                                           else self.jid))
        for _other, real in self.sessions():
            out.stanzas.append(_copy(template, real))
        if historic:
            entry = Element(template.tag, template.attrib)
            entry.extend(template)
            SubElement(entry, n.DELAY, {"stamp": _stamp(now), "from": self.jid})
            self.history.add(HistoryEntry.of(entry, now, key))
        return template

    def _private_message(self, stanza: Element, sender: Occupant | None, nick: str,
                         kind: str, out: Outcome) -> None:
        if kind == "groupchat":
            raise StanzaError("bad-request", "Groupchat messages go to the room's bare JID")
        if sender is None:
            raise StanzaError("not-acceptable", NOT_IN_ROOM)
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "Recipient not in room")
        template = Element(n.MESSAGE, {**stanza.attrib, "from": sender.jid})
        template.extend(child for child in stanza if child.tag != n.X_USER)
        SubElement(template, n.X_USER)  # XEP-0045 7.5: marks it as a private message
        for real in target.sessions:
            out.stanzas.append(_copy(template, real))

    def _bare_message(self, stanza: Element, occupant: Occupant | None, out: Outcome) -> None:
        x = stanza.find(n.X_USER)
        if x is not None and (x.find(f"{{{n.MUC_USER}}}invite") is not None
                              or x.find(f"{{{n.MUC_USER}}}decline") is not None):
            self._invitations(stanza, x, out)
            return
        form = stanza.find(f"{{{ns.DATA_FORMS}}}x")
        if form is not None and submitted_fields(form).get("FORM_TYPE") == [n.MUC_REQUEST]:
            self._voice_request(stanza, occupant, submitted_fields(form), out)
            return
        raise StanzaError("bad-request", "Messages to the room must be of type groupchat")

    def _invitations(self, stanza: Element, x: Element, out: Outcome) -> None:
        """Mediated invitations and declines (XEP-0045 7.8.2, 7.8.2 declines)."""
        real = stanza.get("from", "")
        inviter_bare = str(parse_jid(real).bare)
        for invite in x.findall(f"{{{n.MUC_USER}}}invite"):
            invitee = _jid_attr(invite, "to")
            if self.config.members_only:
                needed = "member" if self.config.allow_member_invites else "admin"
                if n.AFFILIATIONS[self.affiliation(inviter_bare)] < n.AFFILIATIONS[needed]:
                    raise StanzaError("forbidden", "You may not invite people to this room")
                if self.affiliation(invitee) == "none":
                    self.affiliations[invitee] = "member"
                    out.save = True
            message = Element(n.MESSAGE, {"from": self.jid, "to": str(invitee)})
            if stanza.get("id"):
                message.set("id", stanza.get("id", ""))
            sent = SubElement(message, n.X_USER)
            forwarded = SubElement(sent, f"{{{n.MUC_USER}}}invite", {"from": real})
            reason = invite.findtext(f"{{{n.MUC_USER}}}reason")
            if reason:
                SubElement(forwarded, f"{{{n.MUC_USER}}}reason").text = reason
            if self.config.password:
                SubElement(sent, f"{{{n.MUC_USER}}}password").text = self.config.password
            SubElement(message, n.BODY).text = (
                f"{inviter_bare} invited you to the room {self.jid}"
                + (f" ({reason})" if reason else ""))
            out.stanzas.append(message)
        for decline in x.findall(f"{{{n.MUC_USER}}}decline"):
            inviter = _jid_attr(decline, "to")
            message = Element(n.MESSAGE, {"from": self.jid, "to": inviter})
            told = SubElement(SubElement(message, n.X_USER), f"{{{n.MUC_USER}}}decline",
                              {"from": real})
            reason = decline.findtext(f"{{{n.MUC_USER}}}reason")
            if reason:
                SubElement(told, f"{{{n.MUC_USER}}}reason").text = reason
            out.stanzas.append(message)

    def _voice_request(self, stanza: Element, occupant: Occupant | None,
                       values: dict[str, list[str]], out: Outcome) -> None:
        """XEP-0045 7.13 and 8.6: a visitor asks for voice; a moderator's answer grants it."""
        if occupant is None:
            raise StanzaError("not-acceptable", NOT_IN_ROOM)
        if "muc#request_allow" in values:
            if occupant.role != "moderator":
                raise StanzaError("forbidden", "Only moderators may answer voice requests")
            target = self.occupants.get((values.get("muc#roomnick") or [""])[0])
            if target is not None and values["muc#request_allow"][:1] in (["1"], ["true"]) \
                    and target.role == "visitor":
                target.role = "participant"
                self._broadcast_presence(target, out)
            return
        if occupant.role != "visitor":
            return  # already has voice: nothing to ask for
        form = Element(f"{{{ns.DATA_FORMS}}}x", {"type": "form"})
        SubElement(form, f"{{{ns.DATA_FORMS}}}title").text = "Voice request"
        for var, kind, value in (("FORM_TYPE", "hidden", n.MUC_REQUEST),
                                 ("muc#role", "list-single", "participant"),
                                 ("muc#jid", "jid-single", occupant.bare),
                                 ("muc#roomnick", "text-single", occupant.nick),
                                 ("muc#request_allow", "boolean", "0")):
            field_ = SubElement(form, f"{{{ns.DATA_FORMS}}}field", {"var": var, "type": kind})
            SubElement(field_, f"{{{ns.DATA_FORMS}}}value").text = value
        template = Element(n.MESSAGE, {"from": self.jid})
        template.append(form)
        for moderator, real in self.sessions():
            if moderator.role == "moderator":
                out.stanzas.append(_copy(template, real))

    # -- IQs ---------------------------------------------------------------------------

    def _iq(self, stanza: Element, now: float, out: Outcome) -> None:
        kind = stanza.get("type")
        to = parse_jid(stanza.get("to", ""))
        real = stanza.get("from", "")
        if kind in ("result", "error"):
            if to.resource is not None:
                self._relay_reply(stanza, real, to.resource, out)
            return
        if len(stanza) != 1:
            raise StanzaError("bad-request")
        payload = stanza[0]
        if to.resource is not None:
            self._iq_to_occupant(stanza, payload, to.resource, real, out)
            return
        handlers = {
            (f"{{{n.MUC_ADMIN}}}query", "get"): self._admin_get,
            (f"{{{n.MUC_ADMIN}}}query", "set"): self._admin_set,
            (f"{{{n.MUC_OWNER}}}query", "get"): self._owner_get,
            (f"{{{n.MUC_OWNER}}}query", "set"): self._owner_set,
            (f"{{{ns.DISCO_INFO}}}query", "get"): self._disco_info,
            (f"{{{ns.DISCO_ITEMS}}}query", "get"): self._disco_items,
        }
        handler = handlers.get((payload.tag, kind or ""))
        if handler is None:
            raise StanzaError("service-unavailable")
        answer = handler(payload, real, out)
        out.stanzas.append(make_iq_result(stanza, answer))

    def _iq_to_occupant(self, stanza: Element, payload: Element, nick: str, real: str,
                        out: Outcome) -> None:
        """XEP-0410 self-ping, or an IQ relayed to another occupant (XEP-0045
        7.7) under the sender's occupant JID, with an id that routes the answer back."""
        sender = self.by_session.get(real)
        if sender is None:
            raise StanzaError("not-acceptable", NOT_IN_ROOM)
        if payload.tag == f"{{{ns.PING}}}ping" and sender.nick == nick:
            out.stanzas.append(make_iq_result(stanza))
            return
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "Recipient not in room")
        # COMPAT: vCard requests go to the user's account, as Prosody sends them.
        to = target.bare if payload.tag == VCARD else next(reversed(target.sessions))
        relayed = Element(stanza.tag, {"type": stanza.get("type", ""), "from": sender.jid,
                                       "to": to, "id": self._relay_id(real, stanza.get("id", ""))})
        relayed.extend(stanza)
        out.stanzas.append(relayed)

    def _relay_id(self, requester: str, iq_id: str) -> str:
        token = f"{requester}\0{iq_id}".encode()
        return base64.urlsafe_b64encode(self._relay_mac(token) + token).decode()

    def _relay_mac(self, token: bytes) -> bytes:
        return hmac.new(self.salt.encode(), token, hashlib.sha256).digest()[:RELAY_MAC_BYTES]

    def _relay_reply(self, stanza: Element, real: str, nick: str, out: Outcome) -> None:
        """The answer to a relayed IQ goes back to whoever asked, if the id is ours."""
        responder = self.by_session.get(real)
        if responder is None and "/" not in real:  # a vCard answered by the account
            responder = next((o for o in self.occupants.values() if o.bare == real), None)
        if responder is None:
            return
        try:
            raw = base64.urlsafe_b64decode(stanza.get("id", "").encode())
        except ValueError:
            return
        mac, token = raw[:RELAY_MAC_BYTES], raw[RELAY_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._relay_mac(token)):
            return
        requester, _, iq_id = token.decode(errors="replace").partition("\0")
        asker = self.by_session.get(requester)
        if asker is None or asker.nick != nick:
            return
        answer = Element(stanza.tag, {"type": stanza.get("type", ""), "to": requester,
                                      "id": iq_id, "from": responder.jid})
        answer.extend(stanza)
        out.stanzas.append(answer)

    def _disco_info(self, payload: Element, real: str, out: Outcome) -> Element:
        if payload.get("node"):
            raise StanzaError("item-not-found")
        query = Element(f"{{{ns.DISCO_INFO}}}query")
        identity = {"category": "conference", "type": "text"}
        if self.config.name:
            identity["name"] = self.config.name
        SubElement(query, f"{{{ns.DISCO_INFO}}}identity", identity)
        config = self.config
        features = [
            ns.DISCO_INFO, ns.DISCO_ITEMS, n.MUC, f"{n.MUC}#stable_id",
            "http://jabber.org/protocol/muc#self-ping-optimization",
            "muc_persistent" if config.persistent else "muc_temporary",
            "muc_public" if config.public else "muc_hidden",
            "muc_membersonly" if config.members_only else "muc_open",
            "muc_moderated" if config.moderated else "muc_unmoderated",
            "muc_nonanonymous" if config.whois == "anyone" else "muc_semianonymous",
            "muc_passwordprotected" if config.password else "muc_unsecured",
        ]
        if self.policy.occupant_id:
            features.append(n.OCCUPANT_ID)
        if self.archiving:
            features.extend(("urn:xmpp:mam:2", n.STANZA_ID, "urn:xmpp:message-moderate:1"))
        for var in features:
            SubElement(query, f"{{{ns.DISCO_INFO}}}feature", {"var": var})
        form = SubElement(query, f"{{{ns.DATA_FORMS}}}x", {"type": "result"})
        for var, value in (("FORM_TYPE", n.MUC_ROOMINFO),
                           ("muc#roominfo_description", config.description),
                           ("muc#roominfo_occupants", str(len(self.occupants))),
                           ("muc#roominfo_subject", self.subject[0] if self.subject else ""),
                           ("muc#roominfo_changesubject", "1" if config.changesubject else "0"),
                           ("muc#roomconfig_roomname", config.name),
                           ("muc#roominfo_lang", config.language)):
            field_ = SubElement(form, f"{{{ns.DATA_FORMS}}}field", {"var": var})
            if var == "FORM_TYPE":
                field_.set("type", "hidden")
            SubElement(field_, f"{{{ns.DATA_FORMS}}}value").text = value
        return query

    def _disco_items(self, payload: Element, real: str, out: Outcome) -> Element:
        query = Element(f"{{{ns.DISCO_ITEMS}}}query")
        if self.config.whois == "anyone" or real in self.by_session:
            for occupant in self.occupants.values():
                SubElement(query, f"{{{ns.DISCO_ITEMS}}}item",
                           {"jid": occupant.jid, "name": occupant.nick})
        return query

    # -- roles and affiliations (XEP-0045 sections 8 to 10) ------------------------------

    def _admin_get(self, payload: Element, real: str, out: Outcome) -> Element:
        items = payload.findall(f"{{{n.MUC_ADMIN}}}item")
        if len(items) != 1:
            raise StanzaError("bad-request", "Ask for one role or affiliation")
        item = items[0]
        bare = str(parse_jid(real).bare)
        query = Element(f"{{{n.MUC_ADMIN}}}query")
        if item.get("affiliation") is not None:
            wanted = item.get("affiliation", "")
            if wanted not in n.AFFILIATIONS or wanted == "none":
                raise StanzaError("bad-request", "Unknown affiliation")
            mine = self.affiliation(bare)
            may = n.AFFILIATIONS[mine] >= n.AFFILIATIONS["admin"] or (
                wanted == "member" and mine == "member" and self.config.members_only)
            if not may:
                raise StanzaError("forbidden", "You are not allowed to see this list")
            for jid, affiliation in sorted(self.affiliations.items()):
                if affiliation == wanted:
                    SubElement(query, f"{{{n.MUC_ADMIN}}}item",
                               {"jid": jid, "affiliation": affiliation})
            return query
        wanted = item.get("role", "")
        if wanted not in n.ROLES or wanted == "none":
            raise StanzaError("bad-request", "Ask for one role or affiliation")
        asker = self.by_session.get(real)
        if asker is None or asker.role != "moderator":
            raise StanzaError("forbidden", "Only moderators may see this list")
        for occupant in self.occupants.values():
            if occupant.role == wanted:
                SubElement(query, f"{{{n.MUC_ADMIN}}}item", {
                    "nick": occupant.nick, "role": occupant.role, "jid": occupant.bare,
                    "affiliation": self.affiliation(occupant.bare)})
        return query

    def _admin_set(self, payload: Element, real: str, out: Outcome) -> Element | None:
        items = payload.findall(f"{{{n.MUC_ADMIN}}}item")
        if not items:
            raise StanzaError("bad-request", "No item to change")
        for item in items:
            reason = item.findtext(f"{{{n.MUC_ADMIN}}}reason")
            if item.get("affiliation") is not None and item.get("jid") is not None:
                self.set_affiliation(real, _jid_attr(item, "jid"), item.get("affiliation", ""),
                                     reason, out)
            elif item.get("role") is not None and item.get("nick") is not None:
                self.set_role(real, item.get("nick", ""), item.get("role", ""), reason, out)
            else:
                raise StanzaError("bad-request", "An item needs a jid and an affiliation, or "
                                  "a nick and a role")
        return None

    def _actor(self, real: str, reason: str | None) -> list[Element]:
        """The <actor/> and <reason/> of an item when someone acted on an occupant."""
        children = []
        occupant = self.by_session.get(real)
        if occupant is not None:
            children.append(Element(f"{{{n.MUC_USER}}}actor", {"nick": occupant.nick}))
        if reason:
            reason_element = Element(f"{{{n.MUC_USER}}}reason")
            reason_element.text = reason
            children.append(reason_element)
        return children

    def set_role(self, real: str, nick: str, role: str, reason: str | None,
                 out: Outcome) -> None:
        if role not in n.ROLES:
            raise StanzaError("bad-request", "Unknown role")
        actor = self.by_session.get(real)
        if actor is None or actor.role != "moderator":
            raise StanzaError("forbidden", "Only moderators may change roles")
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "No occupant with this nickname")
        actor_rank = n.AFFILIATIONS[self.affiliation(actor.bare)]
        target_rank = n.AFFILIATIONS[self.affiliation(target.bare)]
        if target_rank >= n.AFFILIATIONS["admin"] and role != "moderator":
            raise StanzaError("not-allowed", "Admins and owners keep their role")
        if (role == "moderator" or target.role == "moderator") \
                and actor_rank < n.AFFILIATIONS["admin"]:
            raise StanzaError("not-allowed", "Only admins and owners grant or revoke "
                              "moderation")
        if target.role == role:
            return
        if role == "none":
            self._remove(target, out, codes=(n.KICKED,), actor=self._actor(real, reason))
            return
        target.role = role
        self._broadcast_presence(target, out, actor=self._actor(real, reason))

    def set_affiliation(self, real: str, jid: str, affiliation: str, reason: str | None,
                        out: Outcome) -> None:
        if affiliation not in n.AFFILIATIONS:
            raise StanzaError("bad-request", "Unknown affiliation")
        target = str(parse_jid(jid).bare)
        actor_affiliation = self.affiliation(str(parse_jid(real).bare))
        current = self.affiliation(target)
        if actor_affiliation != "owner":
            if actor_affiliation != "admin":
                raise StanzaError("forbidden", "Only admins and owners change affiliations")
            if n.AFFILIATIONS[current] >= n.AFFILIATIONS["admin"] \
                    or n.AFFILIATIONS[affiliation] >= n.AFFILIATIONS["admin"]:
                raise StanzaError("not-allowed", "Only owners change admins and owners")
        if target in self.policy.owners and affiliation != "owner":
            raise StanzaError("not-acceptable", "Service admins are owners of every room",
                              "modify")
        if current == "owner" and affiliation != "owner" and not any(
                jid_ != target and aff == "owner" for jid_, aff in self.affiliations.items()):
            raise StanzaError("conflict", "The room must keep an owner")
        if affiliation == "none":
            self.affiliations.pop(target, None)
        else:
            self.affiliations[target] = affiliation
        out.save = True
        actor = self._actor(real, reason)
        for occupant in [o for o in self.occupants.values() if o.bare == target]:
            if affiliation == "outcast":
                self._remove(occupant, out, codes=(n.BANNED,), actor=actor)
            elif self.config.members_only and affiliation == "none":
                self._remove(occupant, out, codes=(n.AFFILIATION_CHANGED,), actor=actor)
            else:
                occupant.role = self.default_role(affiliation)
                self._broadcast_presence(occupant, out, actor=actor)

    # -- the owner (XEP-0045 section 10) ---------------------------------------------------

    def _require_owner(self, real: str) -> None:
        if self.affiliation(str(parse_jid(real).bare)) != "owner":
            raise StanzaError("forbidden", "Only owners may configure the room")

    def _archiving_field(self) -> bool | None:
        if not self.policy.archive or self.policy.log_all_rooms:
            return None
        return self.archiving

    def _owner_get(self, payload: Element, real: str, out: Outcome) -> Element:
        self._require_owner(real)
        query = Element(f"{{{n.MUC_OWNER}}}query")
        query.append(config_form(self.config, archiving=self._archiving_field(),
                                 max_history=self.policy.max_history))
        return query

    def _owner_set(self, payload: Element, real: str, out: Outcome) -> Element | None:
        self._require_owner(real)
        destroy = payload.find(f"{{{n.MUC_OWNER}}}destroy")
        if destroy is not None:
            alternate = destroy.get("jid")
            if alternate is not None:
                alternate = _jid_attr(destroy, "jid")
            self.destroy(Destruction(destroy.findtext(f"{{{n.MUC_OWNER}}}reason"), alternate,
                                     destroy.findtext(f"{{{n.MUC_OWNER}}}password")), out)
            return None
        form = payload.find(f"{{{ns.DATA_FORMS}}}x")
        if form is None:
            raise StanzaError("bad-request", "Expected a form or <destroy/>")
        if form.get("type") == "cancel":
            if self.locked:
                self.destroy(Destruction(None, None, None), out)
            return None
        if form.get("type") != "submit":
            raise StanzaError("bad-request", "Expected a submitted form")
        values = submitted_fields(form)
        form_type = values.pop("FORM_TYPE", None)
        if values and form_type != [n.MUC_ROOMCONFIG]:
            raise StanzaError("bad-request", "Form is not of type room configuration")
        old_archiving = self.archiving
        self.config, changed = apply_form(self.config, values,
                                          archiving_offered=self._archiving_field() is not None,
                                          max_history=self.policy.max_history)
        self.history.resize(self.history_length)
        self.locked = False
        out.save = True
        codes = []
        if changed - PRIVACY_FIELDS:
            codes.append(n.CONFIG_CHANGED)
        if "whois" in changed:
            codes.append(n.NOW_NON_ANONYMOUS if self.config.whois == "anyone"
                         else n.NOW_SEMI_ANONYMOUS)
        if self.archiving != old_archiving:
            codes.append(n.LOGGING_ON if self.archiving else n.LOGGING_OFF)
        if codes:
            template = Element(n.MESSAGE, {"from": self.jid, "type": "groupchat"})
            x = SubElement(template, n.X_USER)
            for code in codes:
                SubElement(x, f"{{{n.MUC_USER}}}status", {"code": code})
            out.stanzas.extend(_copy(template, session) for _o, session in self.sessions())
        if "whois" in changed:
            for occupant in list(self.occupants.values()):
                self._broadcast_presence(occupant, out)
        if "members_only" in changed and self.config.members_only:
            # XEP-0045 9.4: who is no member now has to go (status 322).
            for occupant in list(self.occupants.values()):
                if self.affiliation(occupant.bare) == "none":
                    self._remove(occupant, out, codes=(n.NOW_MEMBERS_ONLY,))
        return None

    def destroy(self, destruction: Destruction, out: Outcome) -> None:
        """XEP-0045 10.9: everyone leaves, told where to go instead."""
        destroy = Element(f"{{{n.MUC_USER}}}destroy")
        if destruction.alternate:
            destroy.set("jid", destruction.alternate)
        if destruction.reason:
            SubElement(destroy, f"{{{n.MUC_USER}}}reason").text = destruction.reason
        if destruction.password:
            SubElement(destroy, f"{{{n.MUC_USER}}}password").text = destruction.password
        for occupant, real in self.sessions():
            presence = Element(n.PRESENCE, {"from": occupant.jid, "to": real,
                                            "type": "unavailable"})
            x = SubElement(presence, n.X_USER)
            SubElement(x, f"{{{n.MUC_USER}}}item", {"affiliation": "none", "role": "none"})
            x.append(destroy)
            out.stanzas.append(presence)
        self.occupants.clear()
        self.by_session.clear()
        out.destroyed = destruction


def _kickable(stanza: Element) -> bool:
    error = stanza.find(f"{{{ns.CLIENT}}}error")
    if error is None:
        return True
    return any(child.tag.rpartition("}")[2] in KICKABLE_ERRORS for child in error)


def _jid_attr(element: Element, name: str) -> str:
    try:
        return str(parse_jid(element.get(name, "")))
    except InvalidJID:
        raise StanzaError("jid-malformed", f"Invalid JID in '{name}'") from None

