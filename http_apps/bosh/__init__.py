"""BOSH (XEP-0124) carrying XMPP client streams (XEP-0206): Prosody's mod_bosh.

body.py parses and writes the <body/> wrapper; session.py is the pure session
state (rid window, hold, wait, inactivity); transport.py lets the c2s session
machine run over it; manager.py keeps the live sessions and parks held requests;
views.py is the HTTP endpoint.
"""
