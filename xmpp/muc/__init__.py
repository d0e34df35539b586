"""XEP-0045 Multi-User Chat without sockets or storage (the core of Prosody's mod_muc).

`room.Room` is one room's state machine: it takes stanzas and `now` and
returns the stanzas to send; `service.MucService` keeps the rooms of one
component host and decides who may create them; xmpp.modules.muc wires it
to the server.
"""
