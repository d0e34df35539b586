"""The `cluster = { redis = "redis://...", node = "name" }` option (Vireo's own;
Prosody has none), read and checked once so `app.py check` and the module agree."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xmpp.config import Config, ConfigError

DEFAULT_NODE_TIMEOUT = 10.0  # seconds without a heartbeat before a node counts as dead
DEFAULT_PREFIX = "vireo:"
DEFAULT_QUEUE_LIMIT = 100_000  # envelopes held for other nodes while Redis is unreachable
NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_ADDRESS = "127.0.0.1"
KEYS = ("redis", "node", "node_timeout", "prefix", "address", "queue_limit")


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    redis: str
    node: str
    node_timeout: float = DEFAULT_NODE_TIMEOUT
    prefix: str = DEFAULT_PREFIX
    # The interface other nodes reach this one at for HTTP requests it holds
    # (a BOSH session's): loopback for nodes of one machine.
    address: str = DEFAULT_ADDRESS
    queue_limit: int = DEFAULT_QUEUE_LIMIT


def cluster_options(config: Config) -> ClusterOptions | None:
    """The node's cluster settings, None when it runs alone; ConfigError when the
    option is set but unusable (a node that guessed would split the cluster)."""
    value = config.get("cluster")
    if value is None:
        return None

    def invalid(problem: str) -> ConfigError:
        return ConfigError(str(config.path), None, f"option 'cluster': {problem}")

    if not isinstance(value, dict):
        raise invalid('expected a table { redis = "redis://...", node = "name" }')
    unknown = sorted(str(key) for key in value if key not in KEYS)
    if unknown:
        raise invalid(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    url, node = value.get("redis"), value.get("node")
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise invalid("'redis' must be a redis://, rediss:// or unix:// URL")
    if not isinstance(node, str) or not NODE_NAME.fullmatch(node):
        raise invalid("'node' must be a name of letters, digits, '_', '.' or '-'")
    timeout = _number(value.get("node_timeout", DEFAULT_NODE_TIMEOUT))
    if timeout is None or not 1 <= timeout <= 3600:
        raise invalid("'node_timeout' must be a number of seconds from 1 to 3600")
    prefix = value.get("prefix", DEFAULT_PREFIX)
    if not isinstance(prefix, str):
        raise invalid("'prefix' must be a string")
    address = value.get("address", DEFAULT_ADDRESS)
    if not isinstance(address, str) or not address or address == "*":
        raise invalid("'address' must be the IP address other nodes reach this one at")
    queue_limit = value.get("queue_limit", DEFAULT_QUEUE_LIMIT)
    if isinstance(queue_limit, float) and queue_limit.is_integer():
        queue_limit = int(queue_limit)  # Lua numbers are read as floats
    if isinstance(queue_limit, bool) or not isinstance(queue_limit, int) or queue_limit < 1:
        raise invalid("'queue_limit' must be a whole number of stanzas, at least 1")
    return ClusterOptions(url, node, float(timeout), prefix, address, queue_limit)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
