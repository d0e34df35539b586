"""xmpp.lru: the bounded caches behind mod_pep and mod_blocklist."""

from __future__ import annotations

import pytest

from xmpp.lru import LRUCache


def test_the_least_recently_used_entry_goes_first():
    cache: LRUCache[str, int] = LRUCache(2)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.set("c", 3)
    assert "b" not in cache and len(cache) == 2
    assert cache.get_or_make("b", lambda: 4) == 4 and "a" not in cache
    assert cache.pop("b") == 4 and cache.pop("b") is None


def test_falsy_values_are_kept_and_size_is_positive():
    cache: LRUCache[str, frozenset[str]] = LRUCache(1)
    made = []
    for _ in range(2):
        cache.get_or_make("x", lambda: made.append(1) or frozenset())
    assert made == [1]
    with pytest.raises(ValueError):
        LRUCache(0)
