"""AccountStore: what a registration and a PLAIN login cost."""

from __future__ import annotations

import pytest

from storage.account_material import AccountExists
from storage.accounts import AccountStore
from tests.unit import storage_fixtures

db_url = storage_fixtures.db_url
db = storage_fixtures.db


def test_password_hashing_goes_through_run_blocking_and_a_taken_name_costs_none(db):
    db.migrate()
    hashed = []

    def run_blocking(function, args):
        hashed.append(function.__name__)
        return function(*args)

    accounts = AccountStore(db, iterations=64, run_blocking=run_blocking)
    accounts.create("example.org", "alice", "pw")
    assert hashed == ["scram_material"]
    with pytest.raises(AccountExists):
        accounts.create("example.org", "alice", "other")
    assert hashed == ["scram_material"], "a taken name is refused before any hashing"
    assert AccountStore(db, iterations=64, run_blocking=run_blocking).check_password(
        "example.org", "alice", "pw")
    assert hashed == ["scram_material", "password_matches"]
