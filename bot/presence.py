"""Who is in the voice channel with the bot, and what follows when that changes.

Whenever someone's voice state changes in a guild where the bot is connected,
``EmptyChannelWatcher.check`` counts the people (not bots) in the bot's channel. With
nobody left it starts one timer for that guild; anyone coming back cancels it. When
the timer runs out, and the guild still has nobody listening and 24/7 off,
``on_empty`` runs. One task per guild at most, owned here.

``Presence`` is the bot's side of it: voice state updates feed the watcher; a guild
left empty is paused and left; a bot dropped from voice by Discord (kicked, channel
deleted) stops its guild's player.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from applog import session_logger
from bot.announce import Announcer
from bot.guild_settings import GuildSettingsStore
from bot.voice import VoiceBridge
from gateway.player import CommandError, Pause, PlayerRegistry
from lifecycle import TaskOwner, declare

__all__ = ["EmptyChannelWatcher", "Presence", "listeners"]

log = logging.getLogger(__name__)

EMPTY_TIMER = declare(
    "empty-channel-{key}", owner="EmptyChannelWatcher",
    what="a guild's \"nobody is listening\" timer (the bot pauses and leaves when it runs out)",
    ends="someone listens again, it runs out, or the bot closes (`MusicCommands.close`)")


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
        self._tasks = TaskOwner(EMPTY_TIMER.owner, logger=log)

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
        if guild_id not in self._timers and not self._tasks.closed:
            self._timers[guild_id] = self._tasks.spawn(EMPTY_TIMER, self._wait(guild_id),
                                                       key=str(guild_id))

    def cancel(self, guild_id: int) -> None:
        """Stop *guild_id*'s timer, if any."""
        task = self._timers.pop(guild_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        """Cancel every timer and wait for them. Idempotent."""
        self._timers.clear()
        await self._tasks.aclose()

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
        finally:
            if self._timers.get(guild_id) is asyncio.current_task():
                del self._timers[guild_id]


class Presence:
    """What the bot does when voice states change.

    Args:
        voice: the voice connections.
        settings: per-guild settings (24/7).
        players: the guilds' players (session id = guild id).
        announcer: the now-playing messages (their last words).
        leave_after: seconds in a voice channel with nobody listening before
            pausing and leaving (guilds with 24/7 on stay).
    """

    def __init__(self, voice: VoiceBridge, settings: GuildSettingsStore, *,
                 players: PlayerRegistry, announcer: Announcer, leave_after: float) -> None:
        self._voice = voice
        self._players = players
        self._announcer = announcer
        self.watcher = EmptyChannelWatcher(voice, settings, leave_after=leave_after,
                                           on_empty=self.left_empty)

    async def voice_state_changed(self, member: Any, before: Any, after: Any, *,
                                  bot_user_id: int | None) -> None:
        """Someone's voice state changed (discord.py's ``on_voice_state_update``)."""
        guild_id = int(member.guild.id)
        if bot_user_id is not None and member.id == bot_user_id:
            if before.channel is not None and after.channel is None:
                await self.disconnected(guild_id)
            elif after.channel is not None:
                self.watcher.check(guild_id)  # moved (by someone) to another channel
            return
        if self._voice.channel(guild_id) is not None:
            self.watcher.check(guild_id)

    async def disconnected(self, guild_id: int) -> None:
        """Discord dropped the bot from voice (kicked, channel deleted): stop."""
        self.watcher.cancel(guild_id)
        if await self._voice.disconnected(guild_id):
            self._announcer.conclude(guild_id,
                                     "Disconnected from voice; the queue was cleared.")

    async def left_empty(self, guild_id: int) -> None:
        """Nobody listened for a while: pause, leave, and say so."""
        channel = self._voice.channel(guild_id)
        name = getattr(channel, "name", "the voice channel")
        player = self._players.existing(str(guild_id))
        if player is not None:
            view = player.view()
            if view.current is not None and not view.paused:
                try:
                    await player.apply(Pause())
                except CommandError:
                    pass
        await self._voice.leave(guild_id)
        self._announcer.conclude(guild_id, f"Paused and left {name}: nobody was listening. "
                                           "/resume brings me back.")

    async def close(self) -> None:
        """Stop every timer. Idempotent."""
        await self.watcher.close()
