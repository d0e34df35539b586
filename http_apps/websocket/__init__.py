"""XMPP over WebSocket (RFC 7395): Prosody's mod_websocket.

handshake.py checks the HTTP Upgrade request (RFC 6455 section 4.2); frames.py
is the WebSocket frame layer with its limits (over wsproto); framing.py reads
and writes RFC 7395's <open/>/<close/> framing; session.py runs the c2s session
machine over it; views.py is the HTTP endpoint and the thin socket loop.
All but views.py are sans-I/O.
"""
