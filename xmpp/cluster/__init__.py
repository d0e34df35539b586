"""Several Vireo nodes as one server (issue 21): PostgreSQL keeps what is stored,
Redis what is live (which node holds which session, stanzas between nodes).

Only `xmpp.modules.cluster` imports the Redis side (`xmpp.cluster.node`), and it
loads only when the `cluster` option is set: a single process pays nothing.
`options` and `wire` are pure and need no Redis.
"""
