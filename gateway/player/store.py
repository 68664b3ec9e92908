"""Queues that survive a gateway restart: one SQLite row per player.

The rows live in the gateway's database file (``gateway.database.Database``: one thread,
one connection, one corruption and lock policy for every table). ``":memory:"`` keeps
everything in memory (tests).

Its tables (``players``, and ``player_settings`` for each key's sound settings, kept
apart from the queue so they outlive it) and their schema versions are the file's
(``gateway.schema``), migrated in place before the first operation so older files keep
working.

Callers of ``save`` get ``DatabaseError`` and are expected to keep the state and save it
again later; ``failed_saves`` counts every save that did not land.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.database import Database, DatabaseError
from gateway.schema import SCHEMA_VERSION, set_up
from gateway.settings import setting_default

__all__ = ["SCHEMA_VERSION", "QueueStore"]

log = logging.getLogger(__name__)

#: The snapshot key whose value goes to ``player_settings``.
SETTINGS_KEY = "settings"


def _is_default(settings: object) -> bool:
    """Sound settings that change nothing (no filters, no crossfade)."""
    if not isinstance(settings, dict):
        return True
    return not settings.get("filters") and not settings.get("crossfade")


def _write_settings(connection: sqlite3.Connection, key: str, settings: object) -> None:
    if _is_default(settings):
        connection.execute("DELETE FROM player_settings WHERE key = ?", (key,))
        return
    connection.execute(
        "INSERT INTO player_settings (key, settings, updated) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET settings = excluded.settings, "
        "updated = excluded.updated",
        (key, json.dumps(settings), time.time()),
    )


def _decode(key: str, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        state = None
    if not isinstance(state, dict):
        log.warning("the saved queue of %s is unreadable; ignoring it", key,
                    extra={"session_id": key})
        return None
    return state


class QueueStore:
    """Saves and loads player snapshots (``PlayerCore.snapshot`` plus the shell's keys).

    Args:
        database: the gateway's database, or a path to open one of its own (closed
            with the store).
        lock_timeout: with a path: seconds a locked database is retried.

    Raises (on construction):
        DatabaseError: the database cannot be opened.
    """

    def __init__(self, database: Database | Path | str, *,
                 lock_timeout: float = setting_default("queue_lock_timeout")) -> None:
        self._owned = not isinstance(database, Database)
        self.database = (database if isinstance(database, Database)
                         else Database(database, lock_timeout=lock_timeout))
        self.database.add_setup(set_up)
        #: Saves that did not land.
        self.failed_saves = 0

    @property
    def corrupt_recoveries(self) -> int:
        """Damaged database files moved aside."""
        return self.database.corrupt_recoveries

    @property
    def lock_retries(self) -> int:
        """Retries of a locked database."""
        return self.database.lock_retries

    async def save(self, key: str, state: dict[str, Any]) -> None:
        """Store *key*'s snapshot (replacing the previous one); its ``settings`` go to
        their own table.

        Raises:
            DatabaseError: it was not stored (counted in ``failed_saves``).
        """
        await self.save_many([(key, state)])

    async def save_many(self, states: list[tuple[str, dict[str, Any]]]) -> None:
        """Store several keys' snapshots in one transaction (the background saves of
        playing positions): all of them, or none.

        Raises:
            DatabaseError: none was stored (counted once in ``failed_saves``).
        """
        rows = []
        for key, state in states:
            state = dict(state)
            settings = state.pop(SETTINGS_KEY, None)
            rows.append((key, json.dumps(state), settings))

        def write(connection: sqlite3.Connection) -> None:
            with connection:
                for key, text, settings in rows:
                    connection.execute(
                        "INSERT INTO players (key, state, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET state = excluded.state, "
                        "updated = excluded.updated",
                        (key, text, time.time()),
                    )
                    if settings is not None:
                        _write_settings(connection, key, settings)

        await self._counted(write, "saving a queue" if len(rows) == 1 else "saving queues")

    async def save_settings(self, key: str, settings: dict[str, Any]) -> None:
        """Store *key*'s sound settings alone (the defaults delete its row).

        Raises:
            DatabaseError: it was not stored (counted in ``failed_saves``).
        """
        def write(connection: sqlite3.Connection) -> None:
            with connection:
                _write_settings(connection, key, settings)

        await self._counted(write, "saving sound settings")

    async def _counted(self, write: Callable[[sqlite3.Connection], None], what: str) -> None:
        try:
            await self.database.run(write, what)
        except DatabaseError:
            self.failed_saves += 1
            raise

    async def delete(self, key: str) -> None:
        """Forget *key*'s queue (its sound settings stay).

        Raises:
            DatabaseError: on failure.
        """
        def delete(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute("DELETE FROM players WHERE key = ?", (key,))

        await self.database.run(delete, "forgetting a queue")

    async def load(self, key: str) -> dict[str, Any] | None:
        """*key*'s snapshot (with its ``settings``), or None.

        Raises:
            DatabaseError: on failure.
        """
        def read(connection: sqlite3.Connection) -> tuple[str | None, str | None]:
            row = connection.execute("SELECT state FROM players WHERE key = ?",
                                     (key,)).fetchone()
            extra = connection.execute("SELECT settings FROM player_settings WHERE key = ?",
                                       (key,)).fetchone()
            return (None if row is None else str(row[0]),
                    None if extra is None else str(extra[0]))

        text, settings_text = await self.database.run(read, "loading a queue")
        state = _decode(key, text)
        settings = _decode(key, settings_text)
        if settings is None:
            return state
        state = state if state is not None else {}
        state[SETTINGS_KEY] = settings
        return state

    async def load_all(self) -> dict[str, dict[str, Any]]:
        """Every stored snapshot by key (unreadable rows are skipped, logged).

        Raises:
            DatabaseError: on failure.
        """
        def read(connection: sqlite3.Connection) -> list[tuple[str, str]]:
            return connection.execute("SELECT key, state FROM players").fetchall()

        out: dict[str, dict[str, Any]] = {}
        for key, text in await self.database.run(read, "loading queues"):
            state = _decode(key, text)
            if state is not None:
                out[key] = state
        return out

    async def count(self) -> int:
        """How many queues are stored.

        Raises:
            DatabaseError: on failure.
        """
        def read(connection: sqlite3.Connection) -> int:
            (count,) = connection.execute("SELECT COUNT(*) FROM players").fetchone()
            return int(count)

        return await self.database.run(read, "counting queues")

    async def aclose(self) -> None:
        """Close the database if the store opened it (the gateway closes its own).
        Idempotent."""
        if self._owned:
            await self.database.aclose()
