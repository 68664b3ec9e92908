"""Per-guild bot settings (DJ role, 24/7, default volume, announcement channel,
autoplay) in the gateway's SQLite file.

A table of its own (``guild_settings``) in the gateway's database file, through the
gateway's one ``Database`` (one thread, one connection, one corruption policy for every
table). Reads go through a bounded in-memory cache, since every command checks the DJ
role.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

from gateway.database import Database

__all__ = ["MAX_VOLUME", "GuildSettings", "GuildSettingsStore"]

#: Highest volume, percent (the player's gain of 2).
MAX_VOLUME = 200

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
        volume: the volume (percent, 0-200) a session starts at when the bot joins
            with nothing queued; None: as the guild's player was left.
        announce_channel_id: the text channel of the now-playing messages; None:
            where the command that started playback came from.
        autoplay: when the queue runs out, related tracks follow.
    """

    dj_role_id: int | None = None
    stay: bool = False
    volume: int | None = None
    announce_channel_id: int | None = None
    autoplay: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain values (the stored JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuildSettings:
        """Inverse of ``as_dict``; unknown or malformed keys fall back to defaults."""
        role, volume, channel = (data.get("dj_role_id"), data.get("volume"),
                                 data.get("announce_channel_id"))
        return cls(
            dj_role_id=role if _whole(role) else None,
            stay=data.get("stay") is True,
            volume=volume if _whole(volume) and 0 <= volume <= MAX_VOLUME else None,
            announce_channel_id=channel if _whole(channel) else None,
            autoplay=data.get("autoplay") is True,
        )


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class GuildSettingsStore:
    """Loads and saves ``GuildSettings``.

    Args:
        database: the gateway's database (``Gateway.database``), or a path to open
            one of its own (closed with the store).
        cache_size: guilds kept in memory; the least recently used are read from
            disk again when needed (one row per guild, so disk is the real store).
    """

    def __init__(self, database: Database | Path | str, *, cache_size: int = 10_000) -> None:
        self._owned = not isinstance(database, Database)
        self.database = database if isinstance(database, Database) else Database(database)
        self.database.add_setup(_set_up)
        self._cache: OrderedDict[int, GuildSettings] = OrderedDict()
        self._cache_size = cache_size

    async def get(self, guild_id: int) -> GuildSettings:
        """*guild_id*'s settings (defaults when it never chose any).

        Raises:
            DatabaseError: it could not be read.
        """
        cached = self._cache.get(guild_id)
        if cached is not None:
            self._cache.move_to_end(guild_id)
            return cached

        def read(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT settings FROM guild_settings WHERE guild_id = ?", (str(guild_id),)
            ).fetchone()
            return None if row is None else str(row[0])

        settings = _decode(await self.database.run(read, "reading a guild's settings"))
        self._remember(guild_id, settings)
        return settings

    def cached(self, guild_id: int) -> GuildSettings | None:
        """The settings if they are in memory (for synchronous callers)."""
        return self._cache.get(guild_id)

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some fields of *guild_id*'s settings; returns the new settings.

        Raises:
            TypeError: for a field that does not exist.
            DatabaseError: they could not be saved (nothing changed).
        """
        settings = replace(await self.get(guild_id), **changes)
        text = json.dumps(settings.as_dict())

        def write(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute(
                    "INSERT INTO guild_settings (guild_id, settings, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(guild_id) DO UPDATE SET settings = excluded.settings, "
                    "updated = excluded.updated",
                    (str(guild_id), text, time.time()),
                )

        await self.database.run(write, "saving a guild's settings")
        self._remember(guild_id, settings)
        return settings

    def _remember(self, guild_id: int, settings: GuildSettings) -> None:
        self._cache[guild_id] = settings
        self._cache.move_to_end(guild_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def aclose(self) -> None:
        """Close the database if the store opened it (the gateway closes its own).
        Idempotent."""
        if self._owned:
            await self.database.aclose()


def _set_up(connection: sqlite3.Connection) -> None:
    with connection:
        connection.execute(_SCHEMA)


def _decode(text: str | None) -> GuildSettings:
    if text is None:
        return GuildSettings()
    try:
        data = json.loads(text)
    except ValueError:
        return GuildSettings()
    return GuildSettings.from_dict(data) if isinstance(data, dict) else GuildSettings()
