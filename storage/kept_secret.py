"""A secret that outlives restarts and is the same in every process on one
database: the configured one, else one made on first use and kept in a
module's keyval store."""

from __future__ import annotations

import secrets
from typing import Any


def kept_secret(configured: str | None, store: Any) -> str:
    """`configured` if the option is set, else the secret kept in `store` (a
    module's keyval store, for the host itself), made there on first use."""
    if configured:
        return configured
    kept = store.get(None)
    if not isinstance(kept, dict) or not isinstance(kept.get("secret"), str):
        # Of workers starting together, the first to add wins; all read its value.
        store.add(None, "", {"secret": secrets.token_urlsafe(32)})
        kept = store.get(None)
    return kept["secret"]
