"""The versioned tables of the gateway's database file, and the steps between versions.

The schema version is the file's (``PRAGMA user_version``), so its steps are written in
one place, here, whichever store uses a table: every store that needs one of these
tables registers ``set_up`` with the ``Database`` (registering it twice runs it once), and
an older file is migrated in place, step by step, before the first operation.

* 0: ``players``: one JSON snapshot of a queue per key (``gateway.player.store``);
* 1: adds ``player_settings``: each key's sound settings (filters, crossfade), kept
  apart from the queue so they outlive it (a queue that empties is deleted; its key's
  settings stay). Only keys with settings other than the defaults have a row;
* 2: adds ``playlists``: saved playlists, one row per owner and name
  (``gateway.playlists``); the name is unique per owner whatever its letter case
  (``name_key``), and the tracks are one JSON list.

A file written by a newer version (a higher number) is used as it is, with what this
version knows: each step only adds.
"""

from __future__ import annotations

import logging
import sqlite3

__all__ = ["SCHEMA_VERSION", "set_up"]

log = logging.getLogger(__name__)

_BASE = """
CREATE TABLE IF NOT EXISTS players (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated REAL NOT NULL
)
"""

#: Steps from each schema version to the next (index = the version they start from).
_MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS player_settings (
        key TEXT PRIMARY KEY,
        settings TEXT NOT NULL,
        updated REAL NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS playlists (
        owner TEXT NOT NULL,
        name_key TEXT NOT NULL,
        name TEXT NOT NULL,
        tracks TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (owner, name_key)
    )
    """,
)
#: The schema version this code writes.
SCHEMA_VERSION = len(_MIGRATIONS)


def set_up(connection: sqlite3.Connection) -> None:
    """The tables, migrated to ``SCHEMA_VERSION`` (on the database thread)."""
    with connection:
        connection.execute(_BASE)
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        log.warning("the queue database was written by a newer version (schema %d, "
                    "ours %d); using what this version knows", version, SCHEMA_VERSION)
        return
    for step in range(int(version), SCHEMA_VERSION):
        with connection:
            connection.execute(_MIGRATIONS[step])
            connection.execute(f"PRAGMA user_version = {step + 1}")
