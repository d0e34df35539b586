"""Schema for accounts, rosters (RFC 6121) and offline messages (XEP-0160), as typed models.

Every per-user row carries plain `host` and `username` columns, so an operator
can report with SQL without joins through surrogate keys. Rosters and offline
messages are not tied to `accounts` by a foreign key: like Prosody's stores,
they belong to a (host, username) pair whatever authenticates it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
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

# The MySQL types below are imported when a MySQL engine first asks for them:
# sqlalchemy.dialects.mysql loads the dialect of each MySQL driver, some
# 1 MiB that a server on SQLite or PostgreSQL never uses.


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


def _user_index(table: str, *extra: str, unique: bool = False) -> Index:
    columns = ("host", "username", *extra)
    name = f"{'uq' if unique else 'ix'}_{table}_{'_'.join(columns)}"
    return Index(name, *columns, unique=unique,
                 mysql_length=dict.fromkeys(columns, MYSQL_PREFIX))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    """SCRAM material for one account (like Prosody's internal_hashed): never the password."""

    __tablename__ = "accounts"
    __table_args__ = (_user_index("accounts", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(JID_PART)
    username: Mapped[str] = mapped_column(JID_PART)
    # One salt and iteration count serve both hashes, as in Prosody.
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    iterations: Mapped[int] = mapped_column(Integer)
    sha1_stored_key: Mapped[bytes] = mapped_column(LargeBinary)
    sha1_server_key: Mapped[bytes] = mapped_column(LargeBinary)
    # NULL for an account moved from Prosody 0.12 (SHA-1 only) until a PLAIN login.
    sha256_stored_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sha256_server_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RosterEntry(Base):
    """One contact in a user's roster; its groups live in `roster_groups`."""

    __tablename__ = "roster_items"
    # The unique index starts with (host, username): it serves whole-roster reads too.
    __table_args__ = (
        _user_index("roster_items", "contact", unique=True),
        CheckConstraint(f"subscription IN {SUBSCRIPTIONS!r}", name="subscription"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(JID_PART)
    username: Mapped[str] = mapped_column(JID_PART)
    contact: Mapped[str] = mapped_column(String(2047))
    name: Mapped[str | None] = mapped_column(Text)
    subscription: Mapped[str] = mapped_column(String(4), default="none")
    ask: Mapped[bool] = mapped_column(Boolean, default=False)
    # A subscription pre-approval (RFC 6121 3.4).
    approved: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    groups: Mapped[list[RosterGroup]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin",
        order_by="RosterGroup.name")


class RosterGroup(Base):
    __tablename__ = "roster_groups"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("roster_items.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(1023).with_variant(String(255), "mysql"),
                                      primary_key=True)


class RosterPending(Base):
    """An inbound subscription request awaiting the user's answer ("Pending In")."""

    __tablename__ = "roster_pending"
    __table_args__ = (_user_index("roster_pending", "contact", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(JID_PART)
    username: Mapped[str] = mapped_column(JID_PART)
    contact: Mapped[str] = mapped_column(String(2047))
    stanza: Mapped[str | None] = mapped_column(STANZA_TEXT)


class RosterVersion(Base):
    """The roster version counter of one user (XEP-0237)."""

    __tablename__ = "roster_versions"
    __table_args__ = (_user_index("roster_versions", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(JID_PART)
    username: Mapped[str] = mapped_column(JID_PART)
    version: Mapped[int] = mapped_column(BigInteger)


class OfflineMessage(Base):
    """A message stored for a user who had no available resource."""

    __tablename__ = "offline_messages"
    __table_args__ = (_user_index("offline_messages"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    host: Mapped[str] = mapped_column(JID_PART)
    username: Mapped[str] = mapped_column(JID_PART)
    stanza: Mapped[str] = mapped_column(STANZA_TEXT)
    stamp: Mapped[datetime] = mapped_column(UTCDateTime)


class Upload(Base):
    """One XEP-0363 upload slot of a file-sharing service (mod_http_file_share).

    `host` is the service (the Component or VirtualHost that issued the slot),
    `uploader` the bare JID it was issued to. A slot counts against the quotas
    from `created` on; `completed` is set once the whole file is stored at
    `path` (NULL for an external upload service). Not per-user data of an
    account: the rows and files go when they expire.
    """

    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_host_uploader_created", "host", "uploader", "created",
              mysql_length={"host": MYSQL_PREFIX, "uploader": MYSQL_PREFIX}),
        Index("ix_uploads_host_created", "host", "created", mysql_length={"host": MYSQL_PREFIX}),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    slot: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(JID_PART)
    uploader: Mapped[str] = mapped_column(String(2047))
    filename: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    completed: Mapped[datetime | None] = mapped_column(UTCDateTime)
    path: Mapped[str | None] = mapped_column(Text)


class KeyValItem(Base):
    """One value of a module's keyval or map store (Prosody's `prosody` table).

    A keyval store keeps one value per user under the empty key; a map store
    one per key. `username` is "" for a store of the host itself. `type` says
    how `value` is encoded: "json" or "xml" (one serialized element).
    """

    __tablename__ = "keyval"
    __table_args__ = (
        Index("uq_keyval_host_username_store_key", "host", "username", "store", "key",
              unique=True, mysql_length={"host": MYSQL_PREFIX, "username": MYSQL_PREFIX,
                                         "store": MYSQL_PREFIX, "key": MYSQL_PREFIX}),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    host: Mapped[str] = mapped_column(JID_PART)
    username: Mapped[str] = mapped_column(JID_PART)
    store: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(1023))
    type: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(STANZA_TEXT)


class ArchiveItem(Base):
    """One item of a module's archive store (Prosody's `prosodyarchive` table):
    timestamped, with the JID it is exchanged `with`, found by its `key`.

    Items are in (`when`, `id`) order: by time, and as they were appended
    within one timestamp, so paging never depends on timestamps that may repeat.
    """

    __tablename__ = "archive"
    __table_args__ = (
        Index("uq_archive_host_username_store_key", "host", "username", "store", "key",
              unique=True, mysql_length={"host": MYSQL_PREFIX, "username": MYSQL_PREFIX,
                                         "store": MYSQL_PREFIX}),
        # Pages in (when, id) order by time (migration 0007) ...
        Index("ix_archive_host_username_store_when_id_with", "host", "username", "store",
              "when", "id", "with", mysql_length={"host": MYSQL_PREFIX,
                                                  "username": MYSQL_PREFIX,
                                                  "store": MYSQL_PREFIX, "with": MYSQL_PREFIX}),
        # ... and by `with`, seeking the JID's items instead of filtering the
        # user's whole archive (migration 0008).
        Index("ix_archive_host_username_store_with_when_id", "host", "username", "store",
              "with", "when", "id", mysql_length={"host": MYSQL_PREFIX,
                                                  "username": MYSQL_PREFIX,
                                                  "store": MYSQL_PREFIX, "with": MYSQL_PREFIX}),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    host: Mapped[str] = mapped_column(JID_PART)
    username: Mapped[str] = mapped_column(JID_PART)
    store: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(64))
    when: Mapped[datetime] = mapped_column(UTCDateTime)
    with_: Mapped[str] = mapped_column("with", String(3071))
    type: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(STANZA_TEXT)


# Rows that belong to one (host, username) and go when the account is deleted.
# Later revisions append their per-user models here.
PER_USER_MODELS: list[type[Base]] = [RosterEntry, RosterPending, RosterVersion, OfflineMessage,
                                     KeyValItem, ArchiveItem]
