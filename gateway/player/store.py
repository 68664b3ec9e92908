"""Queues that survive a gateway restart: one SQLite row per player.

The standard library's ``sqlite3`` on one dedicated thread (SQLite connections are
not shared across threads); the event loop hands it work without waiting on the
disk beyond a queue hop. ``":memory:"`` keeps everything in memory (tests).

What can go wrong with the file, and what happens then:

* **corrupt** (not a database, or a failed integrity check, at open or later): one
  error line names the file; it is moved aside (``<name>.corrupt-<time>``, with its
  ``-wal``/``-shm`` files) and an empty database takes its place;
* **locked** or busy (another process holds a write lock): retried with doubling
  delays until ``lock_timeout``, then ``QueueStoreError``;
* any other failure (disk full, read-only): ``QueueStoreError``.

Schema versions (``PRAGMA user_version``), migrated in place at open so older files
keep working:

* 0: ``players`` (one JSON snapshot of a queue per key);
* 1: adds ``player_settings``: each key's sound settings (filters, crossfade), kept
  apart from the queue so they outlive it (a queue that empties is deleted; its
  key's settings stay). Only keys with settings other than the defaults have a row.

Callers of ``save`` get ``QueueStoreError`` and are expected to keep the state and
save it again later; ``failed_saves`` counts every save that did not land.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["SCHEMA_VERSION", "QueueStore", "QueueStoreError"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
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
)
#: The schema version this code writes.
SCHEMA_VERSION = len(_MIGRATIONS)
#: The snapshot key whose value goes to ``player_settings``.
SETTINGS_KEY = "settings"

#: SQLite's own wait for a lock, per statement (seconds). Short, so that our own
#: retry loop (which logs and counts) does the waiting.
_BUSY_TIMEOUT = 0.2
#: First delay between retries of a locked database; doubles up to ``_MAX_DELAY``.
_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0


class QueueStoreError(Exception):
    """A store operation failed; ``str()`` says why, in words."""


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _is_default(settings: object) -> bool:
    """Sound settings that change nothing (no filters, no crossfade)."""
    if not isinstance(settings, dict):
        return True
    return not settings.get("filters") and not settings.get("crossfade")


def _is_corrupt(exc: sqlite3.Error) -> bool:
    # OperationalError is a DatabaseError too, but it means locks, disk or
    # permissions, never a damaged file.
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.OperationalError)


class QueueStore:
    """Saves and loads player snapshots (``PlayerCore.snapshot`` plus the shell's keys).

    Args:
        path: database file, or ``":memory:"``.
        lock_timeout: seconds a locked database is retried before an operation
            fails.

    Raises (on construction):
        QueueStoreError: the database cannot be opened (locked for longer than
            *lock_timeout*, or its directory is not writable).
    """

    def __init__(self, path: Path | str, *, lock_timeout: float = 5.0) -> None:
        self.path = str(path)
        self.lock_timeout = lock_timeout
        self._memory = self.path == ":memory:"
        #: Saves that did not land, databases moved aside, lock retries.
        self.failed_saves = 0
        self.corrupt_recoveries = 0
        self.lock_retries = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="queue-store")
        self._connection: sqlite3.Connection | None = None
        try:
            self._thread.submit(self._open).result()
        except BaseException:
            self._thread.shutdown(wait=True)
            raise

    # -- on the store thread -------------------------------------------------------

    def _open(self) -> None:
        if not self._memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise QueueStoreError(
                    f"cannot create the directory of the queue database {self.path}: "
                    f"{exc.strerror}") from exc
        try:
            self._retry(self._connect_and_check)
        except sqlite3.Error as exc:
            if not _is_corrupt(exc):
                raise QueueStoreError(
                    f"cannot open the queue database {self.path}: {exc}") from exc
            self._move_aside(str(exc))
            try:
                self._connect_and_check()
            except sqlite3.Error as again:
                raise QueueStoreError(
                    f"cannot open the queue database {self.path}: {again}") from again

    def _connect_and_check(self) -> None:
        self._close_connection()
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, check_same_thread=True)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
            connection.commit()
            self._migrate(connection)
            if not self._memory:
                (result,) = connection.execute("PRAGMA quick_check").fetchone()
                if result != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {result}")
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> None:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            log.warning("the queue database was written by a newer version (schema %d, "
                        "ours %d); using what this version knows", version, SCHEMA_VERSION)
            return
        for step in range(int(version), SCHEMA_VERSION):
            with connection:
                connection.execute(_MIGRATIONS[step])
                connection.execute(f"PRAGMA user_version = {step + 1}")

    def _close_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None

    def _move_aside(self, reason: str) -> None:
        """The file is damaged: keep it for inspection under another name and
        start empty. One log line says so."""
        self._close_connection()
        self.corrupt_recoveries += 1
        if self._memory:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        source = Path(self.path)
        aside = source.with_name(f"{source.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{source}{suffix}")
            if part.exists():
                part.replace(Path(f"{aside}{suffix}"))
        log.error("the queue database %s is damaged (%s); moved it to %s and started "
                  "with no saved queues", self.path, reason, aside.name)

    def _retry(self, operation: Callable[[], T]) -> T:
        """Run *operation*, retrying while the database is locked (doubling delays,
        up to ``lock_timeout`` in all). Blocks the store thread only."""
        deadline = time.monotonic() + self.lock_timeout
        delay = _FIRST_DELAY
        while True:
            try:
                return operation()
            except sqlite3.Error as exc:
                if not _is_locked(exc) or time.monotonic() + delay > deadline:
                    raise
                self.lock_retries += 1
                log.warning("the queue database is locked; retrying in %.2f s", delay)
                time.sleep(delay)
                delay = min(_MAX_DELAY, delay * 2)

    def _run(self, operation: Callable[[sqlite3.Connection], T], what: str) -> T:
        """One store operation with lock retries; a damaged file is moved aside and
        the operation runs once more on the fresh database."""
        def attempt() -> T:
            if self._connection is None:
                self._connect_and_check()
            assert self._connection is not None
            return operation(self._connection)

        try:
            return self._retry(attempt)
        except sqlite3.Error as exc:
            if _is_locked(exc):
                raise QueueStoreError(
                    f"{what} failed: the queue database stayed locked for "
                    f"{self.lock_timeout:g} s") from exc
            if not _is_corrupt(exc):
                raise QueueStoreError(f"{what} failed: {exc}") from exc
            self._move_aside(str(exc))
            try:
                return self._retry(attempt)
            except sqlite3.Error as again:
                raise QueueStoreError(f"{what} failed: {again}") from again

    def _save(self, key: str, state: dict[str, Any]) -> None:
        state = dict(state)
        settings = state.pop(SETTINGS_KEY, None)
        text = json.dumps(state)

        def write(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute(
                    "INSERT INTO players (key, state, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET state = excluded.state, "
                    "updated = excluded.updated",
                    (key, text, time.time()),
                )
                if settings is not None:
                    self._write_settings(connection, key, settings)

        self._run(write, "saving a queue")

    @staticmethod
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

    def _save_settings(self, key: str, settings: dict[str, Any]) -> None:
        def write(connection: sqlite3.Connection) -> None:
            with connection:
                self._write_settings(connection, key, settings)

        self._run(write, "saving sound settings")

    def _save_counted(self, key: str, state: dict[str, Any]) -> None:
        try:
            self._save(key, state)
        except QueueStoreError:
            self.failed_saves += 1
            raise

    def _delete(self, key: str) -> None:
        def delete(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute("DELETE FROM players WHERE key = ?", (key,))

        self._run(delete, "forgetting a queue")

    def _load(self, key: str) -> dict[str, Any] | None:
        def read(connection: sqlite3.Connection) -> tuple[str | None, str | None]:
            row = connection.execute("SELECT state FROM players WHERE key = ?",
                                     (key,)).fetchone()
            extra = connection.execute("SELECT settings FROM player_settings WHERE key = ?",
                                       (key,)).fetchone()
            return (None if row is None else str(row[0]),
                    None if extra is None else str(extra[0]))

        text, settings_text = self._run(read, "loading a queue")
        state = self._decode(key, text)
        settings = self._decode(key, settings_text)
        if settings is None:
            return state
        state = state if state is not None else {}
        state[SETTINGS_KEY] = settings
        return state

    def _load_all(self) -> dict[str, dict[str, Any]]:
        def read(connection: sqlite3.Connection) -> list[tuple[str, str]]:
            return connection.execute("SELECT key, state FROM players").fetchall()

        out: dict[str, dict[str, Any]] = {}
        for key, text in self._run(read, "loading queues"):
            state = self._decode(key, text)
            if state is not None:
                out[key] = state
        return out

    def _count(self) -> int:
        def read(connection: sqlite3.Connection) -> int:
            (count,) = connection.execute("SELECT COUNT(*) FROM players").fetchone()
            return int(count)

        return self._run(read, "counting queues")

    @staticmethod
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

    # -- the async API -------------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        try:
            future = self._thread.submit(function, *args)
        except RuntimeError as exc:  # shut down
            raise QueueStoreError("the queue database is closed") from exc
        return await asyncio.wrap_future(future)

    async def save(self, key: str, state: dict[str, Any]) -> None:
        """Store *key*'s snapshot (replacing the previous one).

        Raises:
            QueueStoreError: it was not stored (counted in ``failed_saves``).
        """
        await self._call(self._save_counted, key, state)

    async def save_settings(self, key: str, settings: dict[str, Any]) -> None:
        """Store *key*'s sound settings alone (the defaults delete its row).

        Raises:
            QueueStoreError: it was not stored (counted in ``failed_saves``).
        """
        try:
            await self._call(self._save_settings, key, settings)
        except QueueStoreError:
            self.failed_saves += 1
            raise

    async def delete(self, key: str) -> None:
        """Forget *key*'s queue (its sound settings stay).

        Raises:
            QueueStoreError: on failure.
        """
        await self._call(self._delete, key)

    async def load(self, key: str) -> dict[str, Any] | None:
        """*key*'s snapshot, or None.

        Raises:
            QueueStoreError: on failure.
        """
        return await self._call(self._load, key)

    async def load_all(self) -> dict[str, dict[str, Any]]:
        """Every stored snapshot by key (unreadable rows are skipped, logged).

        Raises:
            QueueStoreError: on failure.
        """
        return await self._call(self._load_all)

    async def count(self) -> int:
        """How many queues are stored.

        Raises:
            QueueStoreError: on failure.
        """
        return await self._call(self._count)

    def close(self) -> None:
        """Close the database (waits for pending writes). Idempotent."""
        try:
            self._thread.submit(self._close_connection).result()
        except RuntimeError:
            return
        self._thread.shutdown(wait=True)
