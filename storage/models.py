"""Schema for accounts, rosters (RFC 6121) and offline messages (XEP-0160), as Core tables.

Every per-user row carries plain `host` and `username` columns, so an operator
can report with SQL without joins through surrogate keys. Rosters and offline
messages are not tied to `accounts` by a foreign key: like Prosody's stores,
they belong to a (host, username) pair whatever authenticates it.

Core `Table`s, not ORM models: the store classes speak Core statements, and
sqlalchemy.orm (some 6 MiB of a server's memory) is never imported to run one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex
from sqlalchemy.types import TypeEngine

# Stable constraint names, so later Alembic revisions can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A JID part may take 1023 bytes (RFC 7622). MySQL cannot index that much, so
# its indexes cover a prefix (ignored by the other dialects).
JID_PART = String(1023)
MYSQL_PREFIX = 255

# The MySQL types and index prefixes below reach SQLAlchemy when a MySQL
# engine first asks for them: sqlalchemy.dialects.mysql loads the dialect of
# each MySQL driver, some 1 MiB that a server on SQLite or PostgreSQL never
# uses. (An index's `mysql_length=` option would load it at import, to check
# the option's name.)
_MYSQL_LENGTH = "mysql_length"


class StanzaText(TypeDecorator[str]):
    """Text for stanzas; MEDIUMTEXT on MySQL, whose TEXT stops at 64 KiB,
    below Prosody's default c2s stanza size limit."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":
            from sqlalchemy.dialects.mysql import MEDIUMTEXT

            return dialect.type_descriptor(MEDIUMTEXT())
        return super().load_dialect_impl(dialect)


STANZA_TEXT = StanzaText()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

SUBSCRIPTIONS = ("none", "to", "from", "both")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite and MySQL keep no offset, so values are stored as naive UTC there
    and given back aware; naive input is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":  # microseconds, as the other backends keep
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _index(name: str, *columns: str, prefixed: Iterable[str], unique: bool = False) -> Index:
    """An index whose `prefixed` columns MySQL indexes by their first MYSQL_PREFIX
    characters (_create_index_on_mysql)."""
    return Index(name, *columns, unique=unique,
                 info={_MYSQL_LENGTH: dict.fromkeys(prefixed, MYSQL_PREFIX)})


@compiles(CreateIndex, "mysql")
def _create_index_on_mysql(create: CreateIndex, compiler: Any, **kw: Any) -> str:
    """MySQL's CREATE INDEX, with the prefix lengths the index's info gives (its
    dialect is loaded by now: it is compiling)."""
    lengths = create.element.info.get(_MYSQL_LENGTH)
    if lengths:
        create.element.dialect_options["mysql"]["length"] = lengths
    return compiler.visit_create_index(create, **kw)


def _user_index(table: str, *extra: str, unique: bool = False) -> Index:
    columns = ("host", "username", *extra)
    name = f"{'uq' if unique else 'ix'}_{table}_{'_'.join(columns)}"
    return _index(name, *columns, prefixed=columns, unique=unique)


metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _user_columns() -> tuple[Column[str], Column[str]]:
    """The (host, username) pair every per-user row carries."""
    return (Column("host", JID_PART, nullable=False),
            Column("username", JID_PART, nullable=False))


# SCRAM material for one account (like Prosody's internal_hashed): never the password.
accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True),
    *_user_columns(),
    # One salt and iteration count serve both hashes, as in Prosody.
    Column("salt", LargeBinary, nullable=False),
    Column("iterations", Integer, nullable=False),
    Column("sha1_stored_key", LargeBinary, nullable=False),
    Column("sha1_server_key", LargeBinary, nullable=False),
    # NULL for an account moved from Prosody 0.12 (SHA-1 only) until a PLAIN login.
    Column("sha256_stored_key", LargeBinary),
    Column("sha256_server_key", LargeBinary),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    _user_index("accounts", unique=True),
)

# One contact in a user's roster; its groups live in `roster_groups`.
roster_items = Table(
    "roster_items", metadata,
    Column("id", Integer, primary_key=True),
    *_user_columns(),
    Column("contact", String(2047), nullable=False),
    Column("name", Text),
    Column("subscription", String(4), nullable=False, default="none"),
    Column("ask", Boolean, nullable=False, default=False),
    # A subscription pre-approval (RFC 6121 3.4).
    Column("approved", Boolean, nullable=False, default=False, server_default=false()),
    # The unique index starts with (host, username): it serves whole-roster reads too.
    _user_index("roster_items", "contact", unique=True),
    CheckConstraint(f"subscription IN {SUBSCRIPTIONS!r}", name="subscription"),
)

roster_groups = Table(
    "roster_groups", metadata,
    Column("item_id", ForeignKey("roster_items.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(1023).with_variant(String(255), "mysql"), primary_key=True),
)

# An inbound subscription request awaiting the user's answer ("Pending In").
roster_pending = Table(
    "roster_pending", metadata,
    Column("id", Integer, primary_key=True),
    *_user_columns(),
    Column("contact", String(2047), nullable=False),
    Column("stanza", STANZA_TEXT),
    _user_index("roster_pending", "contact", unique=True),
)

# The roster version counter of one user (XEP-0237).
roster_versions = Table(
    "roster_versions", metadata,
    Column("id", Integer, primary_key=True),
    *_user_columns(),
    Column("version", BigInteger, nullable=False),
    _user_index("roster_versions", unique=True),
)

# A message stored for a user who had no available resource.
offline_messages = Table(
    "offline_messages", metadata,
    Column("id", BIG_ID, primary_key=True),
    *_user_columns(),
    Column("stanza", STANZA_TEXT, nullable=False),
    Column("stamp", UTCDateTime, nullable=False),
    _user_index("offline_messages"),
)

# One XEP-0363 upload slot of a file-sharing service (mod_http_file_share).
#
# `host` is the service (the Component or VirtualHost that issued the slot),
# `uploader` the bare JID it was issued to. A slot counts against the quotas
# from `created` on; `completed` is set once the whole file is stored at
# `path` (NULL for an external upload service). Not per-user data of an
# account: the rows and files go when they expire.
uploads = Table(
    "uploads", metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("slot", String(64), nullable=False, unique=True),
    Column("host", JID_PART, nullable=False),
    Column("uploader", String(2047), nullable=False),
    Column("filename", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("completed", UTCDateTime),
    Column("path", Text),
    _index("ix_uploads_host_uploader_created", "host", "uploader", "created",
           prefixed=("host", "uploader")),
    _index("ix_uploads_host_created", "host", "created", prefixed=("host",)),
)

# One value of a module's keyval or map store (Prosody's `prosody` table).
#
# A keyval store keeps one value per user under the empty key; a map store
# one per key. `username` is "" for a store of the host itself. `type` says
# how `value` is encoded: "json" or "xml" (one serialized element).
keyval = Table(
    "keyval", metadata,
    Column("id", BIG_ID, primary_key=True),
    *_user_columns(),
    Column("store", String(255), nullable=False),
    Column("key", String(1023), nullable=False),
    Column("type", String(8), nullable=False),
    Column("value", STANZA_TEXT, nullable=False),
    _index("uq_keyval_host_username_store_key", "host", "username", "store", "key",
           prefixed=("host", "username", "store", "key"), unique=True),
)

# One item of a module's archive store (Prosody's `prosodyarchive` table):
# timestamped, with the JID it is exchanged `with`, found by its `key`.
#
# Items are in (`when`, `id`) order: by time, and as they were appended
# within one timestamp, so paging never depends on timestamps that may repeat.
archive = Table(
    "archive", metadata,
    Column("id", BIG_ID, primary_key=True),
    *_user_columns(),
    Column("store", String(255), nullable=False),
    Column("key", String(64), nullable=False),
    Column("when", UTCDateTime, nullable=False),
    Column("with", String(3071), nullable=False),
    Column("type", String(8), nullable=False),
    Column("value", STANZA_TEXT, nullable=False),
    _index("uq_archive_host_username_store_key", "host", "username", "store", "key",
           prefixed=("host", "username", "store"), unique=True),
    # Pages in (when, id) order by time (migration 0007) ...
    _index("ix_archive_host_username_store_when_id_with", "host", "username", "store",
           "when", "id", "with", prefixed=("host", "username", "store", "with")),
    # ... and by `with`, seeking the JID's items instead of filtering the
    # user's whole archive (migration 0008).
    _index("ix_archive_host_username_store_with_when_id", "host", "username", "store",
           "with", "when", "id", prefixed=("host", "username", "store", "with")),
)


# Rows that belong to one (host, username) and go when the account is deleted.
# Later revisions append their per-user tables here.
PER_USER_TABLES: list[Table] = [roster_items, roster_pending, roster_versions,
                                offline_messages, keyval, archive]
