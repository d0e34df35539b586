"""`python -m storage.migrate`: bring the schema of $VIREO_MIGRATE_URL up to date.

The server runs this in a child process when its schema is not current
(storage.db.Database.migrate_in_child), so that Alembic and what it imports
(some 10 MiB) never load into the long-running process.
"""

from __future__ import annotations

import logging
import os
import sys

from storage.db import Database

URL_ENV = "VIREO_MIGRATE_URL"


def main() -> int:
    # The parent relays these lines to its own log.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    database = Database(os.environ[URL_ENV])
    try:
        database.migrate()
    finally:
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
