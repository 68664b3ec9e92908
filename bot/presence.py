"""Leaving voice channels where nobody listens (unless the guild chose 24/7).

Whenever someone's voice state changes in a guild where the bot is connected,
``check`` counts the people (not bots) in the bot's channel. With nobody left it
starts one timer for that guild; anyone coming back cancels it. When the timer
runs out, and the guild still has nobody listening and 24/7 off, ``on_empty``
runs (the bot pauses and leaves). One task per guild at most, owned here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from applog import session_logger
from bot.guild_settings import GuildSettingsStore
from bot.voice import VoiceBridge

__all__ = ["EmptyChannelWatcher", "listeners"]

log = logging.getLogger(__name__)


def listeners(channel: Any, *, besides: int | None = None) -> list[Any]:
    """People (not bots) in *channel*, except the member *besides*."""
    members = getattr(channel, "members", None) or []
    return [m for m in members if not getattr(m, "bot", False) and m.id != besides]


class EmptyChannelWatcher:
    """Per-guild "nobody is listening" timers.

    Args:
        voice: where the bot is connected.
        settings: per-guild settings (24/7).
        leave_after: seconds with nobody listening before ``on_empty`` runs.
        on_empty: called with the guild id when the time is up.
    """

    def __init__(self, voice: VoiceBridge, settings: GuildSettingsStore, *,
                 leave_after: float,
                 on_empty: Callable[[int], Awaitable[None]]) -> None:
        self._voice = voice
        self._settings = settings
        self.leave_after = leave_after
        self._on_empty = on_empty
        self._timers: dict[int, asyncio.Task[None]] = {}

    def waiting(self, guild_id: int) -> bool:
        """A timer runs for *guild_id*."""
        return guild_id in self._timers

    def check(self, guild_id: int) -> None:
        """Re-count *guild_id*'s listeners; start or cancel its timer."""
        channel = self._voice.channel(guild_id)
        settings = self._settings.cached(guild_id)
        if channel is None or listeners(channel) or (settings is not None and settings.stay):
            self.cancel(guild_id)
            return
        if guild_id not in self._timers:
            task = asyncio.get_running_loop().create_task(
                self._wait(guild_id), name=f"empty-channel-{guild_id}")
            self._timers[guild_id] = task

    def cancel(self, guild_id: int) -> None:
        """Stop *guild_id*'s timer, if any."""
        task = self._timers.pop(guild_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        """Cancel every timer. Idempotent."""
        tasks = list(self._timers.values())
        self._timers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait(self, guild_id: int) -> None:
        try:
            await asyncio.sleep(self.leave_after)
            settings = await self._settings.get(guild_id)
            channel = self._voice.channel(guild_id)
            if settings.stay or channel is None or listeners(channel):
                return
            session_logger(log, str(guild_id)).info(
                "nobody listened for %g s: leaving voice", self.leave_after)
            await self._on_empty(guild_id)
        except Exception:
            session_logger(log, str(guild_id)).exception("leaving an empty channel failed")
        finally:
            if self._timers.get(guild_id) is asyncio.current_task():
                del self._timers[guild_id]
