"""Per-guild bot settings (DJ role, 24/7) in the gateway's SQLite file.

A table of its own (``guild_settings``) in the same database file as the queues,
read and written the way ``gateway.player.store`` does it: one dedicated thread
owns the connection, the event loop hands it work. Reads go through a bounded
in-memory cache, since every command checks the DJ role.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["GuildSettings", "GuildSettingsStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """One guild's choices.

    Attributes:
        dj_role_id: members with this role may change what everyone hears; None
            lets every listener do it.
        stay: 24/7: stay in the voice channel when nobody is listening.
    """

    dj_role_id: int | None = None
    stay: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain values (the stored JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuildSettings:
        """Inverse of ``as_dict``; unknown or malformed keys fall back to defaults."""
        role = data.get("dj_role_id")
        return cls(
            dj_role_id=role if isinstance(role, int) and not isinstance(role, bool) else None,
            stay=data.get("stay") is True,
        )


class GuildSettingsStore:
    """Loads and saves ``GuildSettings``.

    Args:
        path: database file (the gateway's queue database), or ``":memory:"``.
        cache_size: guilds kept in memory; the least recently used are read from
            disk again when needed (one row per guild, so disk is the real store).
    """

    def __init__(self, path: Path | str, *, cache_size: int = 10_000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._cache: OrderedDict[int, GuildSettings] = OrderedDict()
        self._cache_size = cache_size
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="guild-settings")
        self._connection: sqlite3.Connection | None = None
        self._thread.submit(self._open).result()

    # -- the database thread ----------------------------------------------------------

    def _open(self) -> None:
        self._connection = sqlite3.connect(self.path, check_same_thread=True, timeout=10.0)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(_SCHEMA)
        self._connection.commit()

    def _read(self, guild_id: int) -> GuildSettings:
        assert self._connection is not None
        row = self._connection.execute(
            "SELECT settings FROM guild_settings WHERE guild_id = ?", (str(guild_id),)
        ).fetchone()
        if row is None:
            return GuildSettings()
        try:
            data = json.loads(row[0])
        except ValueError:
            return GuildSettings()
        return GuildSettings.from_dict(data) if isinstance(data, dict) else GuildSettings()

    def _write(self, guild_id: int, settings: GuildSettings) -> None:
        assert self._connection is not None
        self._connection.execute(
            "INSERT INTO guild_settings (guild_id, settings, updated) VALUES (?, ?, ?) "
            "ON CONFLICT(guild_id) DO UPDATE SET settings = excluded.settings, "
            "updated = excluded.updated",
            (str(guild_id), json.dumps(settings.as_dict()), time.time()),
        )
        self._connection.commit()

    # -- the loop's side --------------------------------------------------------------------

    async def get(self, guild_id: int) -> GuildSettings:
        """*guild_id*'s settings (defaults when it never chose any)."""
        cached = self._cache.get(guild_id)
        if cached is not None:
            self._cache.move_to_end(guild_id)
            return cached
        settings = await asyncio.wrap_future(self._thread.submit(self._read, guild_id))
        self._remember(guild_id, settings)
        return settings

    def cached(self, guild_id: int) -> GuildSettings | None:
        """The settings if they are in memory (for synchronous callers)."""
        return self._cache.get(guild_id)

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some fields of *guild_id*'s settings; returns the new settings.

        Raises:
            TypeError: for a field that does not exist.
        """
        settings = replace(await self.get(guild_id), **changes)
        await asyncio.wrap_future(self._thread.submit(self._write, guild_id, settings))
        self._remember(guild_id, settings)
        return settings

    def _remember(self, guild_id: int, settings: GuildSettings) -> None:
        self._cache[guild_id] = settings
        self._cache.move_to_end(guild_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

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
