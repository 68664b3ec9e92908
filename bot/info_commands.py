"""The commands that tell rather than change: ``/queue``, ``/history``, ``/nowplaying``,
``/lyrics``, ``/status`` and ``/help`` (and the queue button), for anyone.

``/lyrics`` asks the gateway's ``LyricsService`` (LRCLIB, cached, shared with the
now-playing card); the words are ``bot.lyrics_card``'s embed, the line sung now marked.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import discord

from bot.gate import Gate
from bot.lyrics_card import lyrics_embed
from bot.nowplaying import progress_bar
from bot.replies import refuse, reply
from bot.timeparse import format_time
from bot.tracks import is_url
from gateway.engine_client import EngineError
from gateway.lyrics import LyricsUnavailable
from gateway.player import LoopMode, PlayerStatus, PlayerView, Track
from gateway.runtime import Gateway
from protocol.filter_presets import preset_choices

__all__ = ["HELP", "QUEUE_PAGE_SIZE", "InfoCommands"]

log = logging.getLogger(__name__)

#: Entries per page of ``/queue`` and ``/history``.
QUEUE_PAGE_SIZE = 10
#: ``/help``'s lines: each command and what it does.
HELP = [
    ("/play query [now] [file]", "play a link or the best search result (suggestions appear "
                                 "as you type), or an uploaded audio file; a playlist link "
                                 "queues its tracks; `now` plays it at once"),
    ("/playnext query", "put a track right after the current one"),
    ("/pause, /resume", "pause or resume (I join your voice channel if I am in none)"),
    ("/skip, /previous, /voteskip", "next track, back one, or vote to skip (more than half "
                                    "of the listeners)"),
    ("/jump position", "play that track of the queue now"),
    ("/seek position, /forward seconds, /rewind seconds",
     "jump within the track: to 90, 1:30 or 1:02:30, or by seconds"),
    ("/queue [page], /history [page]", "what is coming up, and what played"),
    ("/remove position, /move position to", "take a track out, or move it"),
    ("/clear, /shuffle, /removedupes", "empty the queue, mix it, or drop repeated links"),
    ("/loop mode", "off, track (this one again) or queue (everything again)"),
    ("/autoplay on|off", "when the queue runs out, related tracks follow (YouTube)"),
    ("/volume [percent]", "show the volume, or set it: 0 to 200 %"),
    ("/filter preset", preset_choices()),
    ("/filter equalizer speed pitch", "your own sound: bands such as 63hz:0.2 4k:-3db, and "
                                      "speed and pitch from 0.25 to 4 (1: as made)"),
    ("/crossfade seconds", "fade each next track in over 0 to 12 s (0: gapless)"),
    ("/nowplaying, /lyrics", "the current track, its progress and what is next; its words"),
    ("/join, /leave", "come to your voice channel; leave it, keeping the queue"),
    ("/playlist save|load|list|delete", "your own playlists, loadable in any server"),
    ("/stop", "stop, clear the queue and leave the voice channel"),
    ("/settings", "DJ role, 24/7, default volume, announcement channel (needs Manage Server)"),
    ("/status", "the audio engine's health"),
]


def _bold(track: Track | None) -> str:
    label = track.label if track is not None else "the track"
    return f"**{label.replace('*', '')}**"


class InfoCommands:
    """Handlers of the commands that only tell.

    Args:
        gateway: the engine's health, the lyrics.
        gate: the guilds' players.
    """

    def __init__(self, gateway: Gateway, gate: Gate) -> None:
        self.gateway = gateway
        self.gate = gate

    async def queue(self, interaction: Any, page: int = 1, *, private: bool = False) -> None:
        """``/queue [page]``: a paged embed of what is coming up (*private*: for the
        caller only, as the queue button shows it)."""
        if interaction.guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        view = (await self.gate.player(interaction.guild_id)).view()
        upcoming = view.upcoming
        pages = max(1, -(-len(upcoming) // QUEUE_PAGE_SIZE))
        if not 1 <= page <= pages:
            await refuse(interaction, f"There is no page {page}; the queue has {pages}.")
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
        loop = f" · loop: {view.loop.value}" if view.loop is not LoopMode.OFF else ""
        embed.set_footer(text=f"page {page} of {pages} · {len(upcoming)} tracks{loop}")
        await reply(interaction, embed=embed, ephemeral=private)

    async def history(self, interaction: Any, page: int = 1) -> None:
        """``/history [page]``: what played, the latest first."""
        if interaction.guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        view = (await self.gate.player(interaction.guild_id)).view()
        played = list(reversed(view.history))
        if not played:
            await refuse(interaction, "Nothing has played here yet.")
            return
        pages = -(-len(played) // QUEUE_PAGE_SIZE)
        if not 1 <= page <= pages:
            await refuse(interaction, f"There is no page {page}; the history has {pages}.")
            return
        start = (page - 1) * QUEUE_PAGE_SIZE
        lines = [
            f"`{start + i + 1}.` {track.label}"
            + (f" ({format_time(track.duration)})" if track.duration else "")
            + (f" · {track.requested_by}" if track.requested_by else "")
            for i, track in enumerate(played[start : start + QUEUE_PAGE_SIZE])
        ]
        embed = discord.Embed(title="Recently played", colour=discord.Colour.blurple())
        embed.description = "\n".join(lines)
        embed.set_footer(text=f"page {page} of {pages} · {len(played)} tracks, the latest "
                              "first · /previous plays the last one again")
        await reply(interaction, embed=embed)

    async def nowplaying(self, interaction: Any) -> None:
        """``/nowplaying``: title, progress bar, up next."""
        if interaction.guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        view: PlayerView = (await self.gate.player(interaction.guild_id)).view()
        if view.current is None:
            await refuse(interaction, "Nothing is playing.")
            return
        embed = discord.Embed(title=view.current.label, url=view.current.url
                              if is_url(view.current.url) else None,
                              colour=discord.Colour.green())
        state = "paused" if view.status is PlayerStatus.PAUSED else view.status.value
        embed.description = f"{progress_bar(view.position, view.duration)}\n{state}"
        if view.upcoming:
            embed.add_field(name="Up next", value=view.upcoming[0].label, inline=False)
        if view.current.requested_by:
            embed.set_footer(text=f"requested by {view.current.requested_by}")
        await reply(interaction, embed=embed)

    async def lyrics(self, interaction: Any) -> None:
        """``/lyrics``: the current track's words (LRCLIB), the line sung now marked."""
        if interaction.guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        service = self.gateway.lyrics
        if not service.enabled:
            await refuse(interaction, "Lyrics are turned off on this bot.")
            return
        player = await self.gate.player(interaction.guild_id)
        track = player.view().current
        if track is None:
            await refuse(interaction, "Nothing is playing.")
            return
        await interaction.response.defer(thinking=True)
        try:
            found = await service.for_track(track)
        except LyricsUnavailable as exc:
            log.info("/lyrics: %s", exc)
            await refuse(interaction, "The lyrics service can't be reached right now; try "
                                      "again in a moment.")
            return
        if found is None:
            await refuse(interaction, f"I found no lyrics for {_bold(track)}.")
            return
        if found.instrumental:
            await reply(interaction, f"{_bold(track)} is an instrumental: there are no "
                                     "words to show.")
            return
        view = player.view()
        position = view.position if view.current is not None and \
            view.current.id == track.id else None
        await reply(interaction, embed=lyrics_embed(found, title=track.label,
                                                    position=position))

    async def status(self, interaction: Any) -> None:
        """``/status``: engine health, latency, sessions."""
        started = time.perf_counter()
        try:
            health = await self.gateway.engine.health()
        except EngineError as exc:
            log.warning("/status: %s", exc)
            await reply(interaction, "The audio engine is not answering right now.",
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
        await reply(interaction, embed=embed)

    async def help(self, interaction: Any) -> None:
        """``/help``."""
        embed = discord.Embed(title="Commands", colour=discord.Colour.blurple())
        embed.description = "\n".join(f"**{name}** — {what}" for name, what in HELP)
        await reply(interaction, embed=embed, ephemeral=True)
