"""The account commands' DB-API path (storage.account_rows) against the SQLAlchemy store."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Row, make_url, select, text
from sqlalchemy.engine import URL

from storage import account_rows
from storage.account_material import AccountExists
from storage.accounts import AccountStore
from storage.db import MIGRATIONS_DIR, Database
from storage.dburl import _render, direct_url
from storage.models import PER_USER_TABLES, accounts
from storage.roster import RosterItem, RosterStore
from storage.schema_head import HEAD_REVISION
from tests.unit import storage_fixtures
from xmpp.jid import InvalidJID
from xmpp.scram import derive

db_url = storage_fixtures.db_url
db = storage_fixtures.db

HOST = "example.com"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rows(db: Database, db_url: str):
    connected = account_rows.connect(db_url)
    assert connected is not None
    yield connected
    connected.close()


def _stored(db: Database, username: str) -> Row:
    with db.engine.connect() as connection:
        return connection.execute(select(accounts).where(accounts.c.username == username)).one()


def _column_types(db: Database, username: str) -> list[str]:
    """How the backend holds each column of the row (SQLite types values, not columns)."""
    if db.backend != "sqlite":
        return []  # PostgreSQL's columns are typed by the schema
    columns = [column.name for column in accounts.columns]
    with db.engine.connect() as connection:
        return list(connection.execute(text(
            f"SELECT {', '.join(f'typeof({name})' for name in columns)} "
            "FROM accounts WHERE username = :user"), {"user": username}).one())


def test_rows_are_the_ones_the_sqlalchemy_store_writes(db: Database, rows) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    AccountStore(db).create(HOST, "orm", "pw-orm")
    rows.create(HOST, "Direct", "pw-direct")
    orm, direct = _stored(db, "orm"), _stored(db, "direct")
    assert _column_types(db, "orm") == _column_types(db, "direct")
    assert direct.host == HOST and direct.iterations == orm.iterations
    assert direct.created_at.tzinfo is not None and direct.created_at >= before
    for hash_name in ("sha1", "sha256"):
        expected = derive("pw-direct", hash_name, direct.salt, direct.iterations)
        assert getattr(direct, f"{hash_name}_stored_key") == expected.stored_key
        assert getattr(direct, f"{hash_name}_server_key") == expected.server_key
    store = AccountStore(db)
    assert store.check_password(HOST, "direct", "pw-direct")
    assert store.scram_mechanisms(HOST) == {"SCRAM-SHA-1", "SCRAM-SHA-256"}


def test_account_commands(db: Database, rows) -> None:
    store, roster = AccountStore(db), RosterStore(db)
    assert not rows.exists(HOST, "juliet")
    rows.create(HOST, "juliet", "old")
    with pytest.raises(AccountExists):
        rows.create(HOST, "Juliet", "again")
    with pytest.raises(InvalidJID):
        rows.create(HOST, "a/b", "pw")
    assert rows.exists(HOST, "JULIET") and not rows.exists(HOST, "a/b")
    assert store.check_password(HOST, "juliet", "old")
    assert not store.check_password(HOST, "juliet", "new")
    store.create(HOST, "romeo", "pw")
    for user in ("juliet", "romeo"):
        roster.put_item(HOST, user, RosterItem("nurse@capulet.lit", groups=["Staff"]))
    assert rows.delete(HOST, "Juliet")
    assert not rows.delete(HOST, "juliet") and not rows.delete(HOST, "a/b")
    assert store.users(HOST) == ["romeo"]
    assert roster.get_roster(HOST, "juliet") == {}
    assert list(roster.get_roster(HOST, "romeo")) == ["nurse@capulet.lit"]


def test_per_user_tables_are_the_schemas() -> None:
    tables = tuple(table.name for table in PER_USER_TABLES)
    assert tables == account_rows.PER_USER_TABLES


def test_head_revision_is_alembics() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_no_direct_path_before_the_schema_is_current(db_url: str, tmp_path: Path) -> None:
    """The SQLAlchemy path creates and migrates; the DB-API path only serves a current schema."""
    missing = tmp_path / "absent" / "x.sqlite"
    assert account_rows.connect(f"sqlite:///{missing}") is None
    assert not missing.parent.exists()
    assert account_rows.connect(db_url) is None  # empty: not migrated
    assert account_rows.connect("mysql+pymysql://u@h/db") is None


def test_a_current_schema_starts_without_alembic(db: Database, db_url: str) -> None:
    script = ("import sys; from storage.db import Database; d = Database(sys.argv[1]); "
              "d.migrate(); assert 'alembic' not in sys.modules, 'alembic imported'")
    result = subprocess.run([sys.executable, "-c", script, db_url], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("parts", [
    {"drivername": "postgresql+psycopg", "username": "o p+s@r", "password": "p:a/s@%",
     "host": "::1", "port": 5433, "database": "vireo"},
    {"drivername": "postgresql+psycopg", "host": "db", "database": "vireo"},
    {"drivername": "sqlite", "database": "/var/lib/a b/prosody.sqlite"},
])
def test_urls_are_sqlalchemys(parts: dict) -> None:
    rendered = _render(**parts)
    assert rendered == URL.create(**parts).render_as_string(hide_password=False)
    direct, parsed = direct_url(rendered), make_url(rendered)
    assert direct is not None
    assert (direct.database, direct.username, direct.password, direct.host, direct.port) == \
        (parsed.database, parsed.username, parsed.password, parsed.host, parsed.port)


def test_query_options_reach_libpq() -> None:
    direct = direct_url("postgresql+psycopg://postgres@127.0.0.1:5432/test"
                        "?options=-csearch_path%3Dx")
    assert direct is not None and direct.parameters == (("options", "-csearch_path=x"),)
    assert direct_url("sqlite:////tmp/x.sqlite?mode=ro") is None
