"""The clients the invite page suggests, per platform: a list kept in the
project (clients.json), never fetched. `preauth`: the client takes the
invite's `xmpp:` URI and registers by itself; the others register on the
web sign-up page first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "clients.json"


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    platforms: tuple[str, ...]
    url: str
    preauth: bool


@cache
def load_clients(path: Path = DATA) -> tuple[Client, ...]:
    return tuple(Client(entry["id"], entry["name"], tuple(entry["platforms"]), entry["url"],
                        bool(entry["preauth"]))
                 for entry in json.loads(path.read_text(encoding="utf-8")))


def by_platform(clients: tuple[Client, ...]) -> dict[str, list[Client]]:
    """Platform -> its clients, platforms in first-seen order."""
    platforms: dict[str, list[Client]] = {}
    for client in clients:
        for platform in client.platforms:
            platforms.setdefault(platform, []).append(client)
    return platforms
