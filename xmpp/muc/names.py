"""Namespaces, roles, affiliations and status codes of XEP-0045 and its companions."""

from __future__ import annotations

from xmpp import namespaces as ns

MUC = "http://jabber.org/protocol/muc"
MUC_USER = f"{MUC}#user"
MUC_ADMIN = f"{MUC}#admin"
MUC_OWNER = f"{MUC}#owner"
MUC_ROOMCONFIG = f"{MUC}#roomconfig"
MUC_ROOMINFO = f"{MUC}#roominfo"
MUC_REQUEST = f"{MUC}#request"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
CONFERENCE = "jabber:x:conference"
STANZA_ID = "urn:xmpp:sid:0"
HATS = "xmpp:prosody.im/protocol/hats:1"

X_MUC = f"{{{MUC}}}x"
X_USER = f"{{{MUC_USER}}}x"
MESSAGE = f"{{{ns.CLIENT}}}message"
PRESENCE = f"{{{ns.CLIENT}}}presence"
IQ = f"{{{ns.CLIENT}}}iq"
BODY = f"{{{ns.CLIENT}}}body"
SUBJECT = f"{{{ns.CLIENT}}}subject"
DELAY = f"{{{ns.DELAY}}}delay"

# Ranks: who may act on whom.
ROLES = {"none": 0, "visitor": 1, "participant": 2, "moderator": 3}
AFFILIATIONS = {"outcast": -1, "none": 0, "member": 1, "admin": 2, "owner": 3}

# Status codes of XEP-0045 section 15.6.
NON_ANONYMOUS = "100"
CONFIG_CHANGED = "104"
SELF = "110"
LOGGING_ON = "170"
LOGGING_OFF = "171"
NOW_NON_ANONYMOUS = "172"
NOW_SEMI_ANONYMOUS = "173"
CREATED = "201"
BANNED = "301"
NICK_CHANGED = "303"
KICKED = "307"
AFFILIATION_CHANGED = "321"
NOW_MEMBERS_ONLY = "322"
SHUTDOWN_ERROR = "333"
