"""Queues that survive a gateway restart: one SQLite row per player.

The standard library's ``sqlite3`` on one dedicated thread (SQLite connections are
not shared across threads); the event loop hands it writes without waiting on
the disk beyond a queue hop. ``":memory:"`` keeps everything in memory (tests).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["QueueStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS players (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated REAL NOT NULL
)
"""


class QueueStore:
    """Saves and loads player snapshots (``PlayerCore.snapshot``).

    Args:
        path: database file, or ``":memory:"``.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="queue-store")
        self._connection: sqlite3.Connection | None = None
        self._thread.submit(self._open).result()

    def _open(self) -> None:
        self._connection = sqlite3.connect(self.path, check_same_thread=True)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(_SCHEMA)
        self._connection.commit()

    def _save(self, key: str, state: dict[str, Any]) -> None:
        assert self._connection is not None
        self._connection.execute(
            "INSERT INTO players (key, state, updated) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET state = excluded.state, updated = excluded.updated",
            (key, json.dumps(state), time.time()),
        )
        self._connection.commit()

    def _delete(self, key: str) -> None:
        assert self._connection is not None
        self._connection.execute("DELETE FROM players WHERE key = ?", (key,))
        self._connection.commit()

    def _load_all(self) -> dict[str, dict[str, Any]]:
        assert self._connection is not None
        rows = self._connection.execute("SELECT key, state FROM players").fetchall()
        out = {}
        for key, state in rows:
            try:
                out[key] = json.loads(state)
            except ValueError:
                continue
        return out

    async def save(self, key: str, state: dict[str, Any]) -> None:
        """Store *key*'s snapshot (replacing the previous one)."""
        await asyncio.wrap_future(self._thread.submit(self._save, key, state))

    async def delete(self, key: str) -> None:
        """Forget *key*."""
        await asyncio.wrap_future(self._thread.submit(self._delete, key))

    async def load_all(self) -> dict[str, dict[str, Any]]:
        """Every stored snapshot by key."""
        return await asyncio.wrap_future(self._thread.submit(self._load_all))

    def close(self) -> None:
        """Close the database (waits for pending writes). Idempotent."""
        def close_connection() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        try:
            self._thread.submit(close_connection).result()
        except RuntimeError:
            return
        self._thread.shutdown(wait=True)
