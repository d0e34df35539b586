"""The database URL for Prosody's `storage`/`sql` options, without SQLAlchemy.

Kept apart from storage.db so that the account commands, which speak DB-API
directly (storage.account_rows), can find the database without importing
SQLAlchemy. The URLs are SQLAlchemy's form, which storage.db hands on as is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

ENV_URL = "VIREO_DATABASE_URL"
DEFAULT_SQLITE_FILE = "prosody.sqlite"  # Prosody's default `sql.database`

_SQL_BACKENDS = {"internal", "sql"}
_DRIVERS = {"sqlite3": "sqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def _render(drivername: str, *, username: str | None = None, password: str | None = None,
            host: str | None = None, port: int | None = None,
            database: str | None = None) -> str:
    """A URL as SQLAlchemy's URL.render_as_string(hide_password=False) writes it."""
    url = f"{drivername}://"
    if username is not None:
        url += quote(username, safe=" +")
        if password is not None:
            url += ":" + quote(str(password), safe=" +")
        url += "@"
    if host is not None:
        url += f"[{host}]" if ":" in host else host
    if port is not None:
        url += f":{port}"
    if database is not None:
        url += f"/{database}"
    return url


def database_url(config: Any) -> str:
    """The SQLAlchemy URL for Prosody's `storage`, `sql` and `data_path` options.

    `VIREO_DATABASE_URL` in the environment wins over the configuration.
    Raises ValueError for a storage backend or SQL driver we do not have.
    """
    if url := os.environ.get(ENV_URL):
        return url
    storage = config.get("storage", "internal")
    backends = set(storage.values()) if isinstance(storage, dict) else {storage}
    if unknown := backends - _SQL_BACKENDS:
        raise ValueError(f"unsupported storage backend(s) {sorted(map(str, unknown))}: "
                         f"only 'internal' and 'sql' are available")
    sql = config.get("sql") or {}
    if not isinstance(sql, dict):
        raise ValueError("the 'sql' option must be a table")
    driver = str(sql.get("driver", "SQLite3"))
    drivername = _DRIVERS.get(driver.lower())
    if drivername is None:
        raise ValueError(f"unsupported sql driver {driver!r}: use SQLite3, PostgreSQL or MySQL")
    if drivername == "sqlite":
        database = Path(str(sql.get("database", DEFAULT_SQLITE_FILE)))
        if not database.is_absolute():
            database = config.resolve_path(config.get_str("data_path", "data")) / database
        return _render("sqlite", database=str(database))
    port = sql.get("port")
    return _render(drivername, username=sql.get("username"), password=sql.get("password"),
                   host=sql.get("host"), port=int(port) if port is not None else None,
                   database=sql.get("database"))


@dataclass(frozen=True)
class DirectUrl:
    """A URL the plain DB-API drivers take as is: sqlite3, or psycopg for PostgreSQL."""

    backend: str  # "sqlite" or "postgresql"
    database: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    # libpq parameters from the query string (options, sslmode...), as SQLAlchemy passes them.
    parameters: tuple[tuple[str, str], ...] = ()


def direct_url(url: str) -> DirectUrl | None:
    """The parts of an SQLite or psycopg URL; None for any other (another
    driver, SQLite with options), which then takes the SQLAlchemy path."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        database = rest.removeprefix("/")
        if not database or "?" in database or database == ":memory:":
            return None
        return DirectUrl("sqlite", database)
    if scheme not in ("postgresql+psycopg", "postgresql") or not rest:
        return None
    parts = urlsplit(f"//{rest}")
    try:
        port = parts.port
        parameters = tuple(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        return None
    return DirectUrl("postgresql", unquote(parts.path.removeprefix("/")),
                     username=unquote(parts.username) if parts.username is not None else None,
                     password=unquote(parts.password) if parts.password is not None else None,
                     host=parts.hostname, port=port, parameters=parameters)
