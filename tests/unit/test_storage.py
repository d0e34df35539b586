"""Storage layer: URLs from Prosody options, migrations, accounts, rosters, offline messages."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, insert, inspect, make_url, select, text
from sqlalchemy.exc import OperationalError

import storage.accounts
from storage import models
from storage.accounts import AccountExists, AccountStore
from storage.db import Database, database_url, storage_error_condition
from storage.offline import OfflineStore
from storage.roster import RosterItem, RosterStore
from tests.unit import storage_fixtures
from xmpp.config import load_config
from xmpp.jid import InvalidJID
from xmpp.scram import derive

# The shared fixtures, bound here so that pytest finds them.
db_url = storage_fixtures.db_url
db = storage_fixtures.db

HOST = "example.com"
ITERATIONS = 64  # keep PBKDF2 cheap in tests
TABLES = {"accounts", "roster_items", "roster_groups", "roster_pending", "roster_versions",
          "offline_messages", "uploads", "keyval", "archive"}
HEAD_REVISION = "0008"


class FakeConfig:
    """The getters of xmpp.config.Config that database_url uses."""

    def __init__(self, base_dir: Path, **options: Any) -> None:
        self.base_dir = base_dir
        self.options = options

    def get(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def get_str(self, name: str, default: str | None) -> str | None:
        value = self.options.get(name, default)
        return None if value is None else str(value)

    def resolve_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path


@pytest.fixture
def accounts(db: Database) -> AccountStore:
    return AccountStore(db, iterations=ITERATIONS)


@pytest.fixture
def roster(db: Database) -> RosterStore:
    return RosterStore(db)


def _t(minutes: int) -> datetime:
    return datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes)


# --- database_url ---------------------------------------------------------------

@pytest.fixture
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIREO_DATABASE_URL", raising=False)


@pytest.mark.usefixtures("no_env_url")
class TestDatabaseUrl:
    def test_default_is_prosody_sqlite_under_data_path(self, tmp_path: Path) -> None:
        url = make_url(database_url(FakeConfig(tmp_path)))
        assert url.drivername == "sqlite"
        assert url.database == str(tmp_path / "data" / "prosody.sqlite")

    @pytest.mark.parametrize("storage", ["internal", "sql",
                                         {"roster": "sql", "accounts": "internal"}])
    def test_storage_backends_mean_sql(self, tmp_path: Path, storage: Any) -> None:
        config = FakeConfig(tmp_path, storage=storage, data_path="/var/lib/vireo")
        assert make_url(database_url(config)).database == "/var/lib/vireo/prosody.sqlite"

    def test_sqlite_relative_database_under_data_path(self, tmp_path: Path) -> None:
        config = FakeConfig(tmp_path, data_path="state",
                            sql={"driver": "SQLite3", "database": "xmpp.db"})
        assert make_url(database_url(config)).database == str(tmp_path / "state" / "xmpp.db")

    def test_sqlite_absolute_database(self, tmp_path: Path) -> None:
        config = FakeConfig(tmp_path, sql={"driver": "SQLite3", "database": "/srv/x.sqlite"})
        assert make_url(database_url(config)).database == "/srv/x.sqlite"

    def test_postgresql(self, tmp_path: Path) -> None:
        config = FakeConfig(tmp_path, storage="sql", sql={
            "driver": "PostgreSQL", "database": "prosody", "host": "db.local", "port": 5433,
            "username": "xmpp", "password": "p@ss:/w rd"})
        url = make_url(database_url(config))
        assert url.drivername == "postgresql+psycopg"
        assert (url.host, url.port, url.database) == ("db.local", 5433, "prosody")
        assert (url.username, url.password) == ("xmpp", "p@ss:/w rd")

    def test_postgresql_local_socket(self, tmp_path: Path) -> None:
        config = FakeConfig(tmp_path, sql={"driver": "PostgreSQL", "database": "prosody"})
        url = make_url(database_url(config))
        assert (url.drivername, url.host, url.database) == ("postgresql+psycopg", None, "prosody")

    def test_mysql(self, tmp_path: Path) -> None:
        config = FakeConfig(tmp_path, sql={"driver": "MySQL", "database": "prosody",
                                           "host": "127.0.0.1", "username": "u", "password": "p"})
        url = make_url(database_url(config))
        assert (url.drivername, url.host, url.database) == ("mysql+pymysql", "127.0.0.1", "prosody")

    @pytest.mark.parametrize("options", [{"storage": "memory"}, {"storage": {"roster": "xep0227"}},
                                         {"sql": {"driver": "Oracle"}}])
    def test_unsupported(self, tmp_path: Path, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            database_url(FakeConfig(tmp_path, **options))

    def test_from_a_lua_config_file(self, tmp_path: Path) -> None:
        path = tmp_path / "prosody.cfg.lua"
        path.write_text('data_path = "state"\n'
                        'sql = { driver = "SQLite3", database = "vireo.sqlite" }\n'
                        'VirtualHost "example.com"\n')
        url = make_url(database_url(load_config(path)))
        assert url.database == str(tmp_path / "state" / "vireo.sqlite")

    def test_environment_wins(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VIREO_DATABASE_URL", "postgresql+psycopg://ops@db/vireo")
        config = FakeConfig(tmp_path, storage="memory", sql={"driver": "MySQL"})
        assert database_url(config) == "postgresql+psycopg://ops@db/vireo"


# --- Database and migrations ----------------------------------------------------

def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names())


def test_migrate_from_empty(db_url: str) -> None:
    database = Database(db_url)
    try:
        assert _tables(database) == set()
        database.migrate()
        assert _tables(database) == TABLES | {"alembic_version"}
        with database.transaction() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == \
                HEAD_REVISION
    finally:
        database.close()


def test_migrate_twice_keeps_data(db: Database) -> None:
    AccountStore(db, ITERATIONS).create(HOST, "juliet", "secret")
    db.migrate()
    again = Database(db.engine.url.render_as_string(hide_password=False))
    try:
        again.migrate()
        assert AccountStore(again, ITERATIONS).users(HOST) == ["juliet"]
    finally:
        again.close()


def test_migrations_match_models(db: Database) -> None:
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), models.metadata) == []


def test_mysql_ddl_indexes_prefixes_of_long_columns() -> None:
    """MySQL cannot index a whole JID part: its indexes take the first 255
    characters of each long column, as migrations 0001-0008 made them."""
    from sqlalchemy.dialects import mysql
    from sqlalchemy.schema import CreateIndex, CreateTable

    def ddl(table: Any) -> list[str]:
        return sorted(str(CreateIndex(index).compile(dialect=mysql.dialect())).strip()
                      for index in table.indexes)

    assert ddl(models.accounts) == [
        "CREATE UNIQUE INDEX uq_accounts_host_username ON accounts (host(255), username(255))"]
    assert ddl(models.archive) == [
        "CREATE INDEX ix_archive_host_username_store_when_id_with ON archive "
        "(host(255), username(255), store(255), `when`, id, `with`(255))",
        "CREATE INDEX ix_archive_host_username_store_with_when_id ON archive "
        "(host(255), username(255), store(255), `with`(255), `when`, id)",
        "CREATE UNIQUE INDEX uq_archive_host_username_store_key ON archive "
        "(host(255), username(255), store(255), `key`)"]
    assert ddl(models.uploads) == [
        "CREATE INDEX ix_uploads_host_created ON uploads (host(255), created)",
        "CREATE INDEX ix_uploads_host_uploader_created ON uploads "
        "(host(255), uploader(255), created)"]
    table = str(CreateTable(models.archive).compile(dialect=mysql.dialect()))
    assert "`when` DATETIME(6) NOT NULL" in table and "value MEDIUMTEXT NOT NULL" in table


def test_concurrent_migrations(db_url: str) -> None:
    # Two processes starting at once: both must succeed, one waiting for the other.
    databases = [Database(db_url), Database(db_url)]
    errors: list[BaseException] = []

    def run(database: Database) -> None:
        try:
            database.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert _tables(databases[0]) == TABLES | {"alembic_version"}
    finally:
        for database in databases:
            database.close()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'v.sqlite'}")
    try:
        with database.engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
    finally:
        database.close()


def test_transaction_rolls_back_on_error(db: Database) -> None:
    store = AccountStore(db, ITERATIONS)
    with pytest.raises(RuntimeError), db.transaction() as connection:
        connection.execute(insert(models.accounts).values(
            host=HOST, username="ghost", salt=b"s", iterations=1, sha1_stored_key=b"",
            sha1_server_key=b"", sha256_stored_key=b"", sha256_server_key=b""))
        raise RuntimeError("boom")
    assert not store.exists(HOST, "ghost")


def test_missing_mysql_driver_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)  # uninstalled, even where it is
    with pytest.raises(RuntimeError, match="pymysql"):
        Database("mysql+pymysql://u:p@127.0.0.1/prosody")


# --- accounts -------------------------------------------------------------------

def test_account_lifecycle(accounts: AccountStore) -> None:
    assert not accounts.exists(HOST, "juliet")
    accounts.create(HOST, "Juliet", "secret")
    assert accounts.exists(HOST, "juliet")
    assert accounts.exists(HOST, "JULIET")
    assert not accounts.exists("other.example", "juliet")
    accounts.create(HOST, "romeo", "x")
    assert accounts.users(HOST) == ["juliet", "romeo"]
    with pytest.raises(AccountExists):
        accounts.create(HOST, "juliet", "again")
    assert accounts.delete(HOST, "juliet")
    assert not accounts.delete(HOST, "juliet")
    assert accounts.users(HOST) == ["romeo"]


def test_invalid_usernames(accounts: AccountStore) -> None:
    with pytest.raises(InvalidJID):
        accounts.create(HOST, "bad user", "x")
    assert not accounts.exists(HOST, "bad user")
    assert not accounts.check_password(HOST, "a@b", "x")
    assert accounts.scram_credentials(HOST, "", "SCRAM-SHA-1") is None
    assert not accounts.set_password(HOST, "a/b", "x")
    assert not accounts.delete(HOST, "a:b")


def test_set_password(accounts: AccountStore) -> None:
    assert not accounts.set_password(HOST, "juliet", "x")
    accounts.create(HOST, "juliet", "old")
    assert accounts.set_password(HOST, "Juliet", "new")
    assert accounts.check_password(HOST, "juliet", "new")
    assert not accounts.check_password(HOST, "juliet", "old")


@pytest.mark.parametrize(("mechanism", "hash_name"), [
    ("SCRAM-SHA-1", "sha1"), ("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-256-PLUS", "sha256")])
def test_scram_material(accounts: AccountStore, mechanism: str, hash_name: str) -> None:
    accounts.create(HOST, "juliet", "pässwörd")
    creds = accounts.scram_credentials(HOST, "juliet", mechanism)
    assert creds is not None
    assert creds.iterations == ITERATIONS
    assert derive("pässwörd", hash_name, creds.salt, creds.iterations) == creds
    assert accounts.scram_credentials(HOST, "romeo", mechanism) is None


def test_scram_unknown_mechanism(accounts: AccountStore) -> None:
    with pytest.raises(ValueError):
        accounts.scram_credentials(HOST, "juliet", "PLAIN")


def test_no_clear_password_stored(db: Database, accounts: AccountStore) -> None:
    password = "correct horse battery staple"
    accounts.create(HOST, "juliet", password)
    accounts.set_password(HOST, "juliet", password)
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM accounts")).all()
    assert len(rows) == 1
    for value in rows[0]:
        if isinstance(value, memoryview):
            value = bytes(value)
        if isinstance(value, bytes):
            assert password.encode() not in value
        else:
            assert password not in str(value)


@pytest.fixture
def pbkdf2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = storage.accounts.password_matches

    def counting(password: str, hash_name: str, creds: Any) -> bool:
        calls.append(password)
        return real(password, hash_name, creds)

    monkeypatch.setattr(storage.accounts, "password_matches", counting)
    return calls


def test_check_password_and_cache(db: Database, pbkdf2_calls: list[str]) -> None:
    AccountStore(db, ITERATIONS).create(HOST, "juliet", "secret")  # another process
    accounts = AccountStore(db, ITERATIONS)
    assert not accounts.check_password(HOST, "juliet", "wrong")
    assert not accounts.check_password(HOST, "romeo", "secret")
    assert pbkdf2_calls == ["wrong"]
    assert accounts.check_password(HOST, "juliet", "secret")
    assert accounts.check_password(HOST, "Juliet", "secret")
    assert pbkdf2_calls == ["wrong", "secret"]  # the second login skipped PBKDF2
    assert not accounts.check_password(HOST, "juliet", "wrong")
    assert pbkdf2_calls[-1] == "wrong"


def test_create_and_set_password_prime_the_cache(accounts: AccountStore,
                                                 pbkdf2_calls: list[str]) -> None:
    accounts.create(HOST, "juliet", "secret")
    assert accounts.check_password(HOST, "juliet", "secret")
    assert pbkdf2_calls == []  # the clear password was at hand when the account was made
    accounts.set_password(HOST, "juliet", "changed")
    assert not accounts.check_password(HOST, "juliet", "secret")
    assert accounts.check_password(HOST, "juliet", "changed")
    assert pbkdf2_calls == ["secret"]


def test_cache_voided_by_another_process(db: Database, pbkdf2_calls: list[str]) -> None:
    server, cli = AccountStore(db, ITERATIONS), AccountStore(db, ITERATIONS)
    server.create(HOST, "juliet", "secret")
    assert server.check_password(HOST, "juliet", "secret")
    cli.set_password(HOST, "juliet", "changed")  # e.g. `passwd` from the command line
    assert not server.check_password(HOST, "juliet", "secret")
    assert server.check_password(HOST, "juliet", "changed")


def test_cache_is_bounded(db: Database, pbkdf2_calls: list[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.accounts, "PASSWORD_CACHE_SIZE", 2)
    cli, store = AccountStore(db, ITERATIONS), AccountStore(db, ITERATIONS)
    for user in ("a", "b", "c"):
        cli.create(HOST, user, "pw")
        assert store.check_password(HOST, user, "pw")
    assert store.check_password(HOST, "c", "pw")  # still cached
    assert len(pbkdf2_calls) == 3
    assert store.check_password(HOST, "a", "pw")  # evicted
    assert len(pbkdf2_calls) == 4
    assert store.check_password(HOST, "a", "pw")  # evicted by c
    assert len(pbkdf2_calls) == 4


# --- roster ---------------------------------------------------------------------

def test_roster_crud_with_groups(roster: RosterStore) -> None:
    assert roster.get_roster(HOST, "juliet") == {}
    assert roster.get_item(HOST, "juliet", "romeo@montague.lit") is None
    item = RosterItem("romeo@montague.lit", "Romeo", "to", ask=False,
                      groups=["Friends", "Lovers", "Friends"])
    roster.put_item(HOST, "juliet", item)
    roster.put_item(HOST, "juliet", RosterItem("nurse@capulet.lit", ask=True))
    assert roster.get_item(HOST, "Juliet", "romeo@montague.lit") == RosterItem(
        "romeo@montague.lit", "Romeo", "to", False, ["Friends", "Lovers"])
    assert roster.get_roster(HOST, "juliet") == {
        "romeo@montague.lit": RosterItem("romeo@montague.lit", "Romeo", "to", False,
                                         ["Friends", "Lovers"]),
        "nurse@capulet.lit": RosterItem("nurse@capulet.lit", None, "none", True, []),
    }
    roster.put_item(HOST, "juliet", RosterItem("romeo@montague.lit", None, "both",
                                               groups=["Lovers", "Verona"]))
    assert roster.get_item(HOST, "juliet", "romeo@montague.lit") == RosterItem(
        "romeo@montague.lit", None, "both", False, ["Lovers", "Verona"])
    assert roster.get_roster(HOST, "romeo") == {}
    assert roster.remove_item(HOST, "juliet", "romeo@montague.lit")
    assert not roster.remove_item(HOST, "juliet", "romeo@montague.lit")
    assert list(roster.get_roster(HOST, "juliet")) == ["nurse@capulet.lit"]


def test_roster_item_keeps_a_pre_approval(roster: RosterStore) -> None:
    roster.put_item(HOST, "juliet", RosterItem("romeo@montague.lit", approved=True))
    assert roster.get_item(HOST, "juliet", "romeo@montague.lit").approved
    roster.put_item(HOST, "juliet", RosterItem("romeo@montague.lit", subscription="from"))
    assert not roster.get_item(HOST, "juliet", "romeo@montague.lit").approved


def test_removed_item_takes_its_groups(db: Database, roster: RosterStore) -> None:
    roster.put_item(HOST, "juliet", RosterItem("romeo@montague.lit", groups=["A", "B"]))
    roster.remove_item(HOST, "juliet", "romeo@montague.lit")
    with db.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(models.roster_groups)) == 0


def test_bad_subscription_refused(roster: RosterStore) -> None:
    with pytest.raises(ValueError):
        roster.put_item(HOST, "juliet", RosterItem("romeo@montague.lit", subscription="maybe"))


def test_pending_in(roster: RosterStore) -> None:
    assert roster.pending_in(HOST, "juliet") == {}
    roster.set_pending_in(HOST, "juliet", "romeo@montague.lit", "<presence type='subscribe'/>")
    roster.set_pending_in(HOST, "juliet", "tybalt@capulet.lit", None)
    again = "<presence type='subscribe'><status>hi</status></presence>"
    roster.set_pending_in(HOST, "juliet", "romeo@montague.lit", again)
    assert roster.pending_in(HOST, "Juliet") == {
        "romeo@montague.lit": again,
        "tybalt@capulet.lit": None,
    }
    assert roster.clear_pending_in(HOST, "juliet", "romeo@montague.lit")
    assert not roster.clear_pending_in(HOST, "juliet", "romeo@montague.lit")
    assert roster.pending_in(HOST, "juliet") == {"tybalt@capulet.lit": None}
    assert roster.pending_in(HOST, "romeo") == {}


def test_roster_version(roster: RosterStore) -> None:
    assert roster.version(HOST, "juliet") == 0
    roster.put_item(HOST, "juliet", RosterItem("romeo@montague.lit"))
    assert roster.version(HOST, "juliet") == 1
    roster.put_item(HOST, "juliet", RosterItem("romeo@montague.lit", subscription="both"))
    assert roster.version(HOST, "Juliet") == 2
    assert not roster.remove_item(HOST, "juliet", "nobody@x.lit")
    roster.set_pending_in(HOST, "juliet", "tybalt@capulet.lit", None)
    assert roster.version(HOST, "juliet") == 2
    assert roster.remove_item(HOST, "juliet", "romeo@montague.lit")
    assert roster.version(HOST, "juliet") == 3
    assert roster.version(HOST, "romeo") == 0


def test_contact_for_update_writes_changes_only(roster: RosterStore) -> None:
    romeo = "romeo@montague.lit"
    with roster.contact_for_update(HOST, "Juliet", romeo) as record:
        assert (record.item, record.pending_in) == (None, False)
        record.pending_in, record.request = True, "<presence type='subscribe'/>"
    assert record.version == 0  # a pending request is no roster change
    assert roster.pending_in(HOST, "juliet") == {romeo: "<presence type='subscribe'/>"}
    with roster.contact_for_update(HOST, "juliet", romeo) as record:
        assert record.pending_in
        record.item, record.pending_in = RosterItem(romeo, subscription="from"), False
    assert record.version == roster.version(HOST, "juliet") == 1
    assert roster.pending_in(HOST, "juliet") == {}
    with roster.contact_for_update(HOST, "juliet", romeo) as record:
        record.item.groups.append("Verona")
        record.item.groups.remove("Verona")
    assert record.version == 1
    with pytest.raises(RuntimeError), roster.contact_for_update(HOST, "juliet", romeo) as record:
        record.item = None
        raise RuntimeError("the change fails: nothing is written")
    assert roster.get_item(HOST, "juliet", romeo) == RosterItem(romeo, subscription="from")


def test_changes_of_one_roster_wait_for_each_other(roster: RosterStore) -> None:
    """A change that starts while another is between its read and its write waits
    for that write and starts from it: it cannot write back the state it would
    have read before (a lost update, as when a contact's repeated request undid
    the user's approval of it)."""
    romeo = "romeo@montague.lit"
    roster.put_item(HOST, "juliet", RosterItem(romeo, subscription="to"))
    roster.set_pending_in(HOST, "juliet", romeo, None)
    second_read: list[tuple[str, bool]] = []
    second_done = threading.Event()

    def second_change() -> None:
        with roster.contact_for_update(HOST, "juliet", romeo) as record:
            second_read.append((record.item.subscription, record.pending_in))
        second_done.set()

    second = threading.Thread(target=second_change)
    with roster.contact_for_update(HOST, "juliet", romeo) as record:
        second.start()
        assert not second_done.wait(0.3), "the second change did not wait for the first"
        record.item.subscription, record.pending_in = "both", False
    second.join(10)
    assert second_read == [("both", False)]
    assert record.version == 2


# --- offline messages -----------------------------------------------------------

def test_offline_store_and_pop_oldest_first(db: Database) -> None:
    offline = OfflineStore(db)
    offline.store(HOST, "juliet", "<message id='2'/>", _t(2))
    offline.store(HOST, "juliet", "<message id='1'/>", _t(1))
    offline.store(HOST, "juliet", "<message id='3'/>", _t(2))
    offline.store(HOST, "romeo", "<message id='r'/>", _t(0))
    assert offline.count(HOST, "juliet") == 3
    assert offline.pop_all(HOST, "Juliet") == [
        ("<message id='1'/>", _t(1)), ("<message id='2'/>", _t(2)), ("<message id='3'/>", _t(2))]
    assert offline.count(HOST, "juliet") == 0
    assert offline.pop_all(HOST, "juliet") == []
    assert offline.count(HOST, "romeo") == 1


def test_offline_stamps_are_utc(db: Database) -> None:
    offline = OfflineStore(db)
    local = datetime(2026, 1, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    offline.store(HOST, "juliet", "<message/>", local)
    [(_, stamp)] = offline.pop_all(HOST, "juliet")
    assert stamp == local
    assert stamp.tzinfo == UTC
    assert stamp.hour == 12 and stamp.microsecond == 123456
    with pytest.raises(ValueError):
        offline.store(HOST, "juliet", "<message/>", datetime(2026, 1, 1))


def test_offline_limit(db: Database) -> None:
    offline = OfflineStore(db, max_per_user=2)
    assert offline.store(HOST, "juliet", "<message id='1'/>", _t(1))
    assert offline.store(HOST, "juliet", "<message id='2'/>", _t(2))
    assert not offline.store(HOST, "juliet", "<message id='3'/>", _t(3))
    assert offline.store(HOST, "romeo", "<message id='4'/>", _t(4))
    assert [xml for xml, _ in offline.pop_all(HOST, "juliet")] == [
        "<message id='1'/>", "<message id='2'/>"]
    assert offline.store(HOST, "juliet", "<message id='5'/>", _t(5))


def test_offline_pop_many(db: Database) -> None:
    offline = OfflineStore(db)
    count = 1200  # more than one DELETE batch
    with db.transaction() as connection:
        connection.execute(insert(models.offline_messages), [
            {"host": HOST, "username": "juliet", "stanza": f"<m n='{n}'/>", "stamp": _t(n)}
            for n in range(count)])
    popped = offline.pop_all(HOST, "juliet")
    assert [xml for xml, _ in popped] == [f"<m n='{n}'/>" for n in range(count)]
    assert offline.count(HOST, "juliet") == 0


# --- deleting an account --------------------------------------------------------

def test_delete_account_removes_user_data(db: Database, accounts: AccountStore,
                                          roster: RosterStore) -> None:
    offline = OfflineStore(db)
    for user in ("juliet", "romeo"):
        accounts.create(HOST, user, "pw")
        roster.put_item(HOST, user, RosterItem("nurse@capulet.lit", groups=["Staff", "Old"]))
        roster.set_pending_in(HOST, user, "tybalt@capulet.lit", "<presence/>")
        offline.store(HOST, user, "<message/>", _t(0))
    assert accounts.delete(HOST, "Juliet")
    assert roster.get_roster(HOST, "juliet") == {}
    assert roster.pending_in(HOST, "juliet") == {}
    assert roster.version(HOST, "juliet") == 0
    assert offline.count(HOST, "juliet") == 0
    with db.engine.connect() as connection:  # the groups went with their items
        assert connection.scalar(select(func.count()).select_from(models.roster_groups)) == 2
    assert accounts.users(HOST) == ["romeo"]
    assert list(roster.get_roster(HOST, "romeo")) == ["nurse@capulet.lit"]
    assert roster.pending_in(HOST, "romeo") == {"tybalt@capulet.lit": "<presence/>"}
    assert offline.count(HOST, "romeo") == 1


# -- failures -----------------------------------------------------------------------------

def test_a_full_sqlite_database_is_a_resource_constraint(tmp_path: Path) -> None:
    database = Database(storage_fixtures.sqlite_url(tmp_path))
    database.migrate()
    offline = OfflineStore(database)
    with database.engine.connect() as connection:  # the database may not grow
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
    event.listen(database.engine, "connect", lambda dbapi, _record: dbapi.execute(
        f"PRAGMA max_page_count={pages}"))
    database.engine.dispose()
    stamp = datetime.now(UTC)
    try:
        with pytest.raises(OperationalError) as caught:
            for _ in range(1000):
                offline.store(HOST, "juliet", "<message>" + "x" * 4000 + "</message>", stamp)
        assert storage_error_condition(caught.value) == "resource-constraint"
    finally:
        database.close()


def test_postgresql_out_of_room_is_a_resource_constraint() -> None:
    full = OperationalError("INSERT", {}, psycopg.errors.DiskFull())
    assert storage_error_condition(full) == "resource-constraint"
    gone = OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))
    assert storage_error_condition(gone) == "internal-server-error"
