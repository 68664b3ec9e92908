"""The gateway's SQLite file (the "queue database", ``GATEWAY_QUEUE_DB``): one thread,
one connection, one policy for what goes wrong.

Every table of the file (the players' queues and sound settings, the bot's guild
settings) goes through one ``Database``: the standard library's ``sqlite3`` on one
dedicated thread (a connection is not shared across threads), which the event loop hands
work without waiting on the disk beyond a queue hop. ``":memory:"`` keeps everything in
memory (tests).

What can go wrong with the file, and what happens then, for every table alike:

* **corrupt** (not a database, or a failed integrity check, at open or later): one
  error line names the file; it is moved aside once (``<name>.corrupt-<time>``, with its
  ``-wal``/``-shm`` files), an empty database takes its place, every table's setup runs
  again on it, and the operation runs once more;
* **locked** or busy (another process holds a write lock): retried with doubling delays
  until ``lock_timeout``, then ``DatabaseError``;
* any other failure (disk full, read-only): ``DatabaseError``.

Tables are set up by the stores that use them (``add_setup``): each setup is run on the
thread before the next operation, and again on a fresh file after a corrupt one was
moved aside. ``aclose`` closes the connection on the thread without blocking the event
loop, so the shutdown deadline stays in force; a lock wait in progress gives up at once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.settings import setting_default
from lifecycle import Backoff, declare

__all__ = ["Database", "DatabaseError", "Setup"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A table's setup: idempotent DDL (and migrations) run on the database thread.
Setup = Callable[[sqlite3.Connection], None]

SQLITE_THREAD = declare(
    "sqlite", owner="Database",
    what="every statement on the gateway's SQLite file (queues, sound and guild settings)",
    ends="`Database.aclose()`, last in `Gateway.stop`, without blocking the event loop",
    thread=True)

#: SQLite's own wait for a lock, per statement (seconds). Short, so that our own
#: retry loop (which logs and counts) does the waiting.
_BUSY_TIMEOUT = 0.2
#: First delay between retries of a locked database; doubles up to ``_MAX_DELAY``.
_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0


class DatabaseError(Exception):
    """A database operation failed; ``str()`` says why, in words."""


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _is_corrupt(exc: sqlite3.Error) -> bool:
    """SQLite's own verdict (``SQLITE_CORRUPT``, ``SQLITE_NOTADB`` and their extended
    codes), or our integrity check's (a plain ``DatabaseError`` without a code). Locks,
    disk, permissions and misuse are other errors."""
    name = getattr(exc, "sqlite_errorname", None)
    if name is not None:
        return str(name).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return type(exc) is sqlite3.DatabaseError


class _Closing(sqlite3.OperationalError):
    """A lock wait cut short because the database is closing."""


class Database:
    """The owner of one SQLite file.

    Args:
        path: the database file, or ``":memory:"``.
        lock_timeout: seconds a locked database is retried before an operation fails.

    Raises (on construction):
        DatabaseError: the database cannot be opened (locked for longer than
            *lock_timeout*, or its directory is not writable).
    """

    def __init__(self, path: Path | str, *,
                 lock_timeout: float = setting_default("queue_lock_timeout")) -> None:
        self.path = str(path)
        self.lock_timeout = lock_timeout
        self._memory = self.path == ":memory:"
        #: Damaged files moved aside, and retries of a locked database.
        self.corrupt_recoveries = 0
        self.lock_retries = 0
        #: Every table's setup, in the order added; the first ``_set_up`` of them ran
        #: on the current connection.
        self._setups: list[Setup] = []
        self._set_up = 0
        self._closing = False
        self._closed = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=SQLITE_THREAD.name)
        self._connection: sqlite3.Connection | None = None
        try:
            self._thread.submit(self._open).result()
        except BaseException:
            self._thread.shutdown(wait=True)
            raise

    # -- on the database thread ---------------------------------------------------------

    def _open(self) -> None:
        if not self._memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the directory of the queue database {self.path}: "
                    f"{exc.strerror}") from exc
        try:
            self._retry(self._connect)
        except sqlite3.Error as exc:
            if not _is_corrupt(exc):
                raise DatabaseError(f"cannot open the queue database {self.path}: {exc}") from exc
            self._move_aside(str(exc))
            try:
                self._connect()
            except sqlite3.Error as again:
                raise DatabaseError(
                    f"cannot open the queue database {self.path}: {again}") from again

    def _connect(self) -> None:
        self._close_connection()
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, check_same_thread=True)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            if not self._memory:
                (result,) = connection.execute("PRAGMA quick_check").fetchone()
                if result != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {result}")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._set_up = 0

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
        log.error("the queue database %s is damaged (%s); moved it to %s and started empty "
                  "(no saved queues or settings)", self.path, reason, aside.name)

    def _retry(self, operation: Callable[[], T]) -> T:
        """Run *operation*, retrying while the database is locked (doubling delays,
        up to ``lock_timeout`` in all). Blocks the database thread only."""
        deadline = time.monotonic() + self.lock_timeout
        backoff = Backoff(_FIRST_DELAY, cap=_MAX_DELAY)
        while True:
            try:
                return operation()
            except sqlite3.Error as exc:
                delay = backoff.base
                if not _is_locked(exc) or time.monotonic() + delay > deadline:
                    raise
                if self._closing:
                    raise _Closing("the database is closing") from exc
                self.lock_retries += 1
                log.warning("the queue database is locked; retrying in %.2f s", delay)
                time.sleep(backoff.next())

    def _attempt(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            self._connect()
        connection = self._connection
        assert connection is not None
        while self._set_up < len(self._setups):
            self._setups[self._set_up](connection)
            self._set_up += 1
        return operation(connection)

    def _run(self, operation: Callable[[sqlite3.Connection], T], what: str) -> T:
        """One operation with lock retries; a damaged file is moved aside and the
        operation runs once more on the fresh database."""
        try:
            return self._retry(lambda: self._attempt(operation))
        except _Closing as exc:
            raise DatabaseError(f"{what} failed: the queue database is closing") from exc
        except sqlite3.Error as exc:
            if _is_locked(exc):
                raise DatabaseError(
                    f"{what} failed: the queue database stayed locked for "
                    f"{self.lock_timeout:g} s") from exc
            if not _is_corrupt(exc):
                raise DatabaseError(f"{what} failed: {exc}") from exc
            self._move_aside(str(exc))
            try:
                return self._retry(lambda: self._attempt(operation))
            except sqlite3.Error as again:
                raise DatabaseError(f"{what} failed: {again}") from again

    # -- the event loop's side -----------------------------------------------------------

    def add_setup(self, setup: Setup) -> None:
        """Have *setup* run on the database thread before the next operation (and on
        every fresh file after a damaged one). It must be idempotent; one added again
        (two stores of the same tables) runs once."""
        if setup not in self._setups:
            self._setups.append(setup)

    async def run(self, operation: Callable[[sqlite3.Connection], T], what: str) -> T:
        """Run ``operation(connection)`` on the database thread (inside ``with
        connection:`` if it writes). *what* names it in errors ("saving a queue").
        Cancelling abandons the wait, not the operation.

        Raises:
            DatabaseError: it failed (locked too long, closed, or another failure).
        """
        try:
            future = self._thread.submit(self._run, operation, what)
        except RuntimeError as exc:  # shut down
            raise DatabaseError(f"{what} failed: the queue database is closed") from exc
        return await asyncio.wrap_future(future)

    async def aclose(self) -> None:
        """Finish the work queued so far (a lock wait gives up at once), close the
        connection and let the thread end. Idempotent; never blocks the event loop."""
        if self._closed:
            return
        self._closed = self._closing = True
        try:
            future = self._thread.submit(self._close_connection)
        except RuntimeError:
            return
        try:
            await asyncio.wrap_future(future)
        finally:
            self._thread.shutdown(wait=False)
