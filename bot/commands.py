"""What each slash command does, independent of how discord.py delivers it.

``MusicCommands`` methods take an interaction (anything with ``guild_id``,
``user``, ``response`` and ``followup`` like discord.py's ``Interaction``) and
answer it. Invalid use (not in a voice channel, nothing playing, a position out
of range, an unreadable time) gets a clear ephemeral reply and changes nothing.
The session id is the guild id.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import discord

from bot.timeparse import format_time, parse_time
from bot.voice import VoiceBridge
from gateway.engine_client import EngineError
from gateway.player import CommandError, Player, PlayerStatus, PlayerView, Track
from gateway.runtime import Gateway

__all__ = ["HELP", "MusicCommands", "progress_bar"]

#: Queue entries per page of ``/queue``.
QUEUE_PAGE_SIZE = 10
HELP = [
    ("/play query", "play a URL or search text; if something plays, add it to the queue"),
    ("/pause, /resume", "pause or resume"),
    ("/skip, /previous", "next track, or back one"),
    ("/jump position", "play that track of the queue now"),
    ("/seek position", "jump within the track: 90, 1:30 or 1:02:30"),
    ("/remove position", "remove that track from the queue"),
    ("/queue [page]", "what is coming up"),
    ("/nowplaying", "the current track, its progress, and what is next"),
    ("/stop", "stop, clear the queue and leave the voice channel"),
    ("/status", "the audio engine's health"),
]


def progress_bar(position: float, duration: float | None, width: int = 20) -> str:
    """``▰▰▰▱▱▱`` with times, for ``/nowplaying``."""
    if not duration:
        return f"{format_time(position)} / live"
    filled = max(0, min(width, round(width * position / duration)))
    bar = "▰" * filled + "▱" * (width - filled)
    return f"{bar} {format_time(position)} / {format_time(duration)}"


def _is_url(text: str) -> bool:
    parsed = urllib.parse.urlsplit(text.strip())
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


class MusicCommands:
    """Slash command handlers for one bot."""

    def __init__(self, gateway: Gateway, voice: VoiceBridge) -> None:
        self.gateway = gateway
        self.voice = voice

    # -- helpers ----------------------------------------------------------------------

    async def _reply(self, interaction: Any, content: str | None = None, *,
                     embed: discord.Embed | None = None, ephemeral: bool = False) -> None:
        if interaction.response.is_done():
            await interaction.followup.send(content=content, embed=embed, ephemeral=ephemeral)
        else:
            await interaction.response.send_message(content=content, embed=embed,
                                                    ephemeral=ephemeral)

    async def _refuse(self, interaction: Any, message: str) -> None:
        await self._reply(interaction, message, ephemeral=True)

    def _player(self, interaction: Any) -> Player | None:
        if interaction.guild_id is None:
            return None
        return self.gateway.players.get(str(interaction.guild_id), output="opus")

    def _user_channel(self, interaction: Any) -> Any | None:
        voice_state = getattr(interaction.user, "voice", None)
        return getattr(voice_state, "channel", None)

    async def _guild_and_player(self, interaction: Any) -> Player | None:
        player = self._player(interaction)
        if player is None:
            await self._refuse(interaction, "Music commands work in a server, not in DMs.")
        return player

    async def _transport(self, interaction: Any, apply: Any, done: str) -> None:
        """A command that needs the caller in the bot's voice channel."""
        player = await self._guild_and_player(interaction)
        if player is None:
            return
        channel = self._user_channel(interaction)
        bot_channel = self.voice.channel_id(interaction.guild_id)
        if channel is None:
            await self._refuse(interaction, "Join a voice channel first.")
            return
        if bot_channel is not None and int(channel.id) != bot_channel:
            await self._refuse(interaction, "You need to be in my voice channel for that.")
            return
        try:
            result = await player.command(apply)
        except CommandError as exc:
            await self._refuse(interaction, f"Can't do that: {exc}.")
            return
        await self._reply(interaction, done.format(result=result, view=player.view()))

    # -- commands -----------------------------------------------------------------------

    async def play(self, interaction: Any, query: str) -> None:
        """``/play query``."""
        player = await self._guild_and_player(interaction)
        if player is None:
            return
        channel = self._user_channel(interaction)
        if channel is None:
            await self._refuse(interaction, "Join a voice channel first, then /play.")
            return
        query = query.strip()
        if not query:
            await self._refuse(interaction, "Tell me what to play: a URL or search words.")
            return
        if len(query) > 1000:
            await self._refuse(interaction, "That is too long for a URL or a search.")
            return
        await interaction.response.defer(thinking=True)
        try:
            track = await self._resolve(query, interaction)
        except EngineError as exc:
            await self._reply(interaction, f"Couldn't find that: {exc}", ephemeral=True)
            return
        try:
            await self.voice.join(interaction.guild_id, channel)
        except Exception as exc:  # Discord refused the voice connection
            await self._reply(interaction, f"Couldn't join your voice channel: {exc}",
                              ephemeral=True)
            return
        try:
            position = await player.command(lambda core, now: core.enqueue(track, now))
        except CommandError as exc:
            await self._reply(interaction, f"Can't add that: {exc}.", ephemeral=True)
            return
        if position == 0:
            await self._reply(interaction, f"Now playing **{track.label}**.")
        else:
            await self._reply(interaction, f"Queued **{track.label}** at position {position}.")

    async def _resolve(self, query: str, interaction: Any) -> Track:
        requester = str(getattr(interaction.user, "display_name", ""))
        engine = self.gateway.engine
        if _is_url(query):
            title = urllib.parse.unquote(urllib.parse.urlsplit(query).path.rsplit("/", 1)[-1])
            duration = None
            try:
                async with asyncio.timeout(8):
                    metadata = await engine.metadata(query)
                title, duration = metadata.title or title, metadata.duration or None
            except (EngineError, TimeoutError):
                pass  # the play will report a real problem
            return Track(query, title=title, duration=duration, requested_by=requester)
        results = await engine.search(query)
        if not results.results:
            raise EngineError(f"no results for {query!r}")
        first = results.results[0]
        return Track(first.url, title=first.title, duration=first.duration or None,
                     requested_by=requester)

    async def stop(self, interaction: Any) -> None:
        """``/stop``: stop, clear the queue, leave voice."""
        player = await self._guild_and_player(interaction)
        if player is None:
            return
        if self.voice.channel_id(interaction.guild_id) is None and player.view().current is None:
            await self._refuse(interaction, "Nothing is playing.")
            return
        await player.command(lambda core, now: core.stop())
        await self.voice.leave(interaction.guild_id)
        await self._reply(interaction, "Stopped, cleared the queue and left the channel.")

    async def pause(self, interaction: Any) -> None:
        """``/pause``."""
        await self._transport(interaction, lambda core, now: core.pause(now), "Paused.")

    async def resume(self, interaction: Any) -> None:
        """``/resume``."""
        await self._transport(interaction, lambda core, now: core.resume(now), "Resumed.")

    async def skip(self, interaction: Any) -> None:
        """``/skip``."""
        await self._transport(interaction, lambda core, now: core.skip(now),
                              "Skipped **{result.label}**.")

    async def previous(self, interaction: Any) -> None:
        """``/previous``."""
        await self._transport(interaction, lambda core, now: core.previous(now),
                              "Back to **{result.label}**.")

    async def jump(self, interaction: Any, position: int) -> None:
        """``/jump position``."""
        await self._transport(interaction, lambda core, now: core.jump(position, now),
                              "Jumped to **{result.label}**.")

    async def remove(self, interaction: Any, position: int) -> None:
        """``/remove position``."""
        await self._transport(interaction, lambda core, now: core.remove(position),
                              "Removed **{result.label}** from the queue.")

    async def seek(self, interaction: Any, position: str) -> None:
        """``/seek position`` (``90``, ``1:30``, ``1:02:30``)."""
        try:
            seconds = parse_time(position)
        except ValueError as exc:
            await self._refuse(interaction, f"{str(exc)[0].upper()}{str(exc)[1:]}.")
            return
        await self._transport(interaction, lambda core, now: core.seek(seconds, now),
                              f"Jumped to {format_time(seconds)}.")

    async def queue(self, interaction: Any, page: int = 1) -> None:
        """``/queue [page]``: a paged embed of what is coming up."""
        player = await self._guild_and_player(interaction)
        if player is None:
            return
        view = player.view()
        upcoming = view.upcoming
        pages = max(1, -(-len(upcoming) // QUEUE_PAGE_SIZE))
        if not 1 <= page <= pages:
            await self._refuse(interaction, f"There is no page {page}; the queue has {pages}.")
            return
        embed = discord.Embed(title="Queue", colour=discord.Colour.blurple())
        now = view.current.label if view.current else "nothing"
        embed.add_field(name="Now playing", value=now, inline=False)
        start = (page - 1) * QUEUE_PAGE_SIZE
        lines = [
            f"`{start + i + 1}.` {track.label}"
            + (f" ({format_time(track.duration)})" if track.duration else "")
            for i, track in enumerate(upcoming[start : start + QUEUE_PAGE_SIZE])
        ]
        embed.add_field(name="Up next", value="\n".join(lines) or "the queue is empty",
                        inline=False)
        embed.set_footer(text=f"page {page} of {pages} · {len(upcoming)} tracks")
        await self._reply(interaction, embed=embed)

    async def nowplaying(self, interaction: Any) -> None:
        """``/nowplaying``: title, progress bar, up next."""
        player = await self._guild_and_player(interaction)
        if player is None:
            return
        view: PlayerView = player.view()
        if view.current is None:
            await self._refuse(interaction, "Nothing is playing.")
            return
        embed = discord.Embed(title=view.current.label, url=view.current.url
                              if _is_url(view.current.url) else None,
                              colour=discord.Colour.green())
        state = "paused" if view.status is PlayerStatus.PAUSED else view.status.value
        embed.description = f"{progress_bar(view.position, view.duration)}\n{state}"
        if view.upcoming:
            embed.add_field(name="Up next", value=view.upcoming[0].label, inline=False)
        if view.current.requested_by:
            embed.set_footer(text=f"requested by {view.current.requested_by}")
        await self._reply(interaction, embed=embed)

    async def status(self, interaction: Any) -> None:
        """``/status``: engine health, latency, sessions."""
        started = time.perf_counter()
        try:
            health = await self.gateway.engine.health()
        except EngineError as exc:
            await self._reply(interaction, f"The audio engine is not answering: {exc}",
                              ephemeral=True)
            return
        latency = (time.perf_counter() - started) * 1000
        stats = self.gateway.stats()
        embed = discord.Embed(title="Audio engine", colour=discord.Colour.blurple())
        embed.add_field(name="status", value=health.status)
        embed.add_field(name="latency", value=f"{latency:.1f} ms")
        embed.add_field(name="sessions playing",
                        value=f"{health.sessions_playing} of {health.sessions_active}")
        embed.add_field(name="uptime", value=format_time(health.uptime_seconds))
        embed.add_field(name="memory", value=f"{health.ram_mb} MB")
        embed.add_field(name="socket", value="connected" if stats["engine_socket_connected"]
                        else "reconnecting")
        await self._reply(interaction, embed=embed)

    async def help(self, interaction: Any) -> None:
        """``/help``."""
        embed = discord.Embed(title="Commands", colour=discord.Colour.blurple())
        embed.description = "\n".join(f"**{name}** — {what}" for name, what in HELP)
        await self._reply(interaction, embed=embed, ephemeral=True)
