"""The newest schema revision, so that a start or an account command can see
that the schema is current without importing Alembic (about 0.2 s of imports).

Bump HEAD_REVISION with every new file in migrations/versions: a unit test
compares it with Alembic's head.
"""

from __future__ import annotations

from collections.abc import Iterable

HEAD_REVISION = "0008"
VERSION_QUERY = "SELECT version_num FROM alembic_version"


def is_current(rows: Iterable[tuple[str, ...]]) -> bool:
    """Whether the rows of VERSION_QUERY say the schema is at HEAD_REVISION."""
    return [row[0] for row in rows] == [HEAD_REVISION]
