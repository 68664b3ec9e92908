"""What each slash command and button does, independent of how discord.py delivers it.

``MusicCommands`` methods take a discord.py ``Interaction`` and answer it. Invalid
use (no voice channel, not the DJ, nothing playing, a position out of range, an
unreadable time) gets a clear private reply and changes nothing. The session id
is the guild id.

Commands that make the bot play (``/play``, ``/resume``, ``/skip``, ``/previous``,
``/jump``, ``/seek``, the resume and skip buttons) join the caller's voice channel
when the bot is in none: after a restart queues come back from SQLite with the bot
out of voice, so this is the normal way back. Who may do what is ``bot.access``;
errors shown to people go through ``bot.errors``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import discord
from discord import app_commands
from prometheus_client.core import Metric

from applog import session_logger
from bot.access import Caller, Room, refusal
from bot.announce import Announcer
from bot.controls import Action
from bot.guild_settings import GuildSettingsStore
from bot.nowplaying import progress_bar
from bot.presence import EmptyChannelWatcher, listeners
from bot.replies import refuse, reply
from bot.search import Search
from bot.settings_commands import SettingsCommands
from bot.timeparse import format_time, parse_time
from bot.tracks import CHOICE_LIMIT, NotPlayable, choice_name, is_url, resolve
from bot.voice import VoiceBridge
from gateway.engine_client import EngineError
from gateway.metrics import counter
from gateway.player import (
    CommandError,
    LoopMode,
    Player,
    PlayerCore,
    PlayerStatus,
    PlayerView,
    Track,
)
from gateway.runtime import Gateway
from protocol.filter_presets import Preset, preset_filters

__all__ = ["HELP", "MusicCommands", "progress_bar"]

log = logging.getLogger(__name__)

#: Queue entries per page of ``/queue``.
QUEUE_PAGE_SIZE = 10
#: Seconds allowed for joining a voice channel.
JOIN_TIMEOUT = 20.0
HELP = [
    ("/play query [now]", "play a link or the best search result (suggestions appear as "
                          "you type); a playlist link queues its tracks; `now` plays it at once"),
    ("/pause, /resume", "pause or resume (I join your voice channel if I am in none)"),
    ("/skip, /previous", "next track, or back one"),
    ("/jump position", "play that track of the queue now"),
    ("/seek position", "jump within the track: 90, 1:30 or 1:02:30"),
    ("/queue [page]", "what is coming up"),
    ("/remove position, /move position to", "take a track out, or move it"),
    ("/clear, /shuffle", "empty the queue, or mix it"),
    ("/loop mode", "off, track (this one again) or queue (everything again)"),
    ("/volume percent", "0 to 200 %"),
    ("/filter preset", "bassboost, nightcore, vaporwave, 8d, karaoke, soft, or reset"),
    ("/crossfade seconds", "fade each next track in over 0 to 12 s (0: gapless)"),
    ("/nowplaying", "the current track, its progress, and what is next"),
    ("/stop", "stop, clear the queue and leave the voice channel"),
    ("/settings", "DJ role and 24/7 (needs Manage Server)"),
    ("/status", "the audio engine's health"),
]

_FILTER_WORDS = {
    Preset.BASSBOOST: "Bass boost on: the lows are louder.",
    Preset.NIGHTCORE: "Nightcore on: faster and higher.",
    Preset.VAPORWAVE: "Vaporwave on: slower and lower.",
    Preset.EIGHT_D: "8D on: the sound circles around you.",
    Preset.KARAOKE: "Karaoke on: the voice in the middle is turned down.",
    Preset.SOFT: "Soft on: muffled, as through a wall.",
    Preset.RESET: "Filters off: the track sounds as it was made.",
}

_LOOP_WORDS = {
    LoopMode.OFF: "Loop is off: the queue ends after its last track.",
    LoopMode.TRACK: "Looping this track.",
    LoopMode.QUEUE: "Looping the queue: every track that ends goes back to its end.",
}


class _Refused(Exception):
    """A command cannot run; ``str()`` is the reply."""


def _bold(track: Track) -> str:
    return f"**{track.label.replace('*', '')}**"


class MusicCommands:
    """Slash command and button handlers of one bot.

    Args:
        gateway: players, engine client, metrics.
        voice: voice connections.
        settings: per-guild settings.
        search: search with its cache (``/play`` words and autocomplete).
        announcer: now-playing messages (built here when None).
        playlist_limit: most tracks queued from one playlist link.
        leave_after: seconds in a voice channel with nobody listening before
            pausing and leaving (guilds with 24/7 on stay).
        rng: shuffles (seeded in tests).
    """

    def __init__(self, gateway: Gateway, voice: VoiceBridge, *, settings: GuildSettingsStore,
                 search: Search, announcer: Announcer | None = None,
                 playlist_limit: int = 100, leave_after: float = 120.0,
                 rng: random.Random | None = None) -> None:
        self.gateway = gateway
        self.voice = voice
        self.settings = settings
        self.search = search
        self.announcer = announcer if announcer is not None else Announcer(gateway.players)
        self.playlist_limit = playlist_limit
        self.watcher = EmptyChannelWatcher(voice, settings, leave_after=leave_after,
                                           on_empty=self.left_empty)
        #: ``/settings`` handlers.
        self.settings_commands = SettingsCommands(settings, self.watcher)
        self._rng = rng or random.Random()
        gateway.metrics.add_source(self.metric_families)

    async def close(self) -> None:
        """Stop timers and announcements, leave the metrics. Idempotent."""
        self.gateway.metrics.remove_source(self.metric_families)
        await self.watcher.close()
        await self.announcer.close()

    def metric_families(self) -> Iterable[Metric]:
        """Bot metrics (see ``gateway.metrics``)."""
        search, announcer = self.search, self.announcer
        for name, what, value in (
            ("searches", "Searches sent to the engine (autocomplete and /play)", search.searches),
            ("search_cache_hits", "Searches answered from the cache", search.cache_hits),
            ("search_timeouts", "Searches cut off by their time limit", search.timeouts),
            ("search_turned_away", "Autocomplete requests refused: every slot busy",
             search.turned_away),
            ("search_failures", "Searches the engine could not answer", search.failures),
            ("announcements_posted", "Now-playing messages posted", announcer.posts),
            ("announcements_edited", "Now-playing message edits", announcer.edits),
            ("announcements_failed", "Now-playing messages Discord refused",
             announcer.failures),
        ):
            yield counter(f"audiogate_gateway_bot_{name}", what, value)

    # -- helpers ----------------------------------------------------------------------

    async def _player(self, guild_id: int) -> Player:
        """The guild's player, its stored queue loaded (after a restart a player
        comes back from the database on first use)."""
        player = self.gateway.players.get(str(guild_id), output="opus")
        await player.loaded()
        return player

    @staticmethod
    def _caller_channel(interaction: Any) -> Any | None:
        voice_state = getattr(interaction.user, "voice", None)
        return getattr(voice_state, "channel", None)

    async def _check(self, interaction: Any, *, joins: bool, controls: bool
                     ) -> tuple[int, Player]:
        """The guild and its player, if the caller may run the command.

        Raises:
            _Refused: with the reason.
        """
        guild_id = interaction.guild_id
        if guild_id is None:
            raise _Refused("Music commands work in a server, not in DMs.")
        member = interaction.user
        caller_channel = self._caller_channel(interaction)
        settings = await self.settings.get(guild_id)
        permissions = getattr(interaction, "permissions", None)
        role_ids = {role.id for role in getattr(member, "roles", [])}
        privileged = bool(permissions is not None and permissions.manage_guild) or (
            settings.dj_role_id is not None and settings.dj_role_id in role_ids)
        bot_channel = self.voice.channel(guild_id)
        room_channel = bot_channel if bot_channel is not None else caller_channel
        others = len(listeners(room_channel, besides=member.id)) if room_channel else 0
        why = refusal(
            Caller(int(caller_channel.id) if caller_channel is not None else None, privileged),
            Room(int(bot_channel.id) if bot_channel is not None else None, others,
                 settings.dj_role_id is not None),
            joins=joins, controls=controls,
        )
        if why is not None:
            raise _Refused(why)
        return guild_id, await self._player(guild_id)

    async def _join(self, interaction: Any, guild_id: int) -> bool:
        """Join the caller's channel if the bot is in none; True if it joined now.

        Raises:
            _Refused: the connection failed.
        """
        if self.voice.channel(guild_id) is not None:
            return False
        channel = self._caller_channel(interaction)
        if channel is None:
            raise _Refused("Join a voice channel first: I will come to you.")
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                await self.voice.join(guild_id, channel)
        except Exception as exc:  # discord.py raises many kinds here
            session_logger(log, str(guild_id)).warning("joining voice failed: %r", exc)
            raise _Refused(f"I couldn't join **{getattr(channel, 'name', 'your channel')}**. "
                           "Check that I may connect and speak there, then try again.") from exc
        self.watcher.check(guild_id)
        return True

    async def _act(self, interaction: Any, apply: Callable[[Any, float], object], done: str,
                   *, joins: bool, controls: bool = True, quiet: bool = False) -> bool:
        """Run a player command with the checks, the join and the reply.

        *done* is formatted with ``result`` (what *apply* returned) and ``view``.
        *quiet* (buttons): acknowledge without a message unless joining voice
        already made the answer a message. Returns True if it ran."""
        try:
            guild_id, player = await self._check(interaction, joins=joins, controls=controls)
            if joins and self.voice.channel(guild_id) is None:
                # Joining voice for a command that cannot run helps nobody: try it
                # on a copy of the (pure) core first.
                try:
                    apply(copy.deepcopy(player.core), time.monotonic())
                except CommandError as exc:
                    raise _Refused(f"Can't do that: {exc}.") from exc
            joined = await self._join(interaction, guild_id) if joins else False
        except _Refused as exc:
            await refuse(interaction, str(exc))
            return False
        try:
            result = await player.command(apply)
        except CommandError as exc:
            if joined and player.view().current is None:
                await self._leave(guild_id)
            await refuse(interaction, f"Can't do that: {exc}.")
            return False
        if joins:
            self.announcer.attach(guild_id, interaction.channel)
        else:
            self.announcer.refresh(guild_id)
        if quiet and not interaction.response.is_done():
            # The announcement itself shows the change.
            await interaction.response.defer()
        else:
            await reply(interaction, done.format(result=result, view=player.view()),
                              ephemeral=quiet)
        return True

    async def _leave(self, guild_id: int) -> None:
        self.watcher.cancel(guild_id)
        await self.voice.leave(guild_id)

    # -- /play ------------------------------------------------------------------------

    async def play(self, interaction: Any, query: str, now: bool = False) -> None:
        """``/play query [now]``: a link, a playlist link, or search words."""
        query = query.strip()
        try:
            guild_id, player = await self._check(interaction, joins=True, controls=now)
            if not query:
                raise _Refused("Tell me what to play: a link or search words.")
            if len(query) > 1000:
                raise _Refused("That is too long for a link or a search.")
        except _Refused as exc:
            await refuse(interaction, str(exc))
            return
        await interaction.response.defer(thinking=True)
        requester = str(getattr(interaction.user, "display_name", ""))
        try:
            resolved = await resolve(query, requester, engine=self.gateway.engine,
                                     search=self.search, playlist_limit=self.playlist_limit)
            joined = await self._join(interaction, guild_id)
        except (_Refused, NotPlayable) as exc:
            await refuse(interaction, str(exc))
            return
        tracks = resolved.tracks

        def apply(core: PlayerCore, at: float) -> tuple[int, int]:
            if now:
                core.play_now(tracks[0], at)
                rest = core.enqueue_many(tracks[1:], at)[1] if len(tracks) > 1 else 0
                return 0, 1 + rest
            return core.enqueue_many(tracks, at)

        try:
            outcome = await player.command(apply)
        except CommandError as exc:
            if joined and player.view().current is None:
                await self._leave(guild_id)
            await refuse(interaction, f"Can't add that: {exc}.")
            return
        self.announcer.attach(guild_id, interaction.channel)
        first, added = outcome if isinstance(outcome, tuple) else (0, 1)
        track = tracks[0]
        if resolved.playlist is not None:
            cut = f" (the first {added} of {resolved.total})" if added < resolved.total else ""
            where = (f"{_bold(track)} starts now" if first == 0
                     else f"from position {first}")
            await reply(interaction, f"Queued {added} tracks from **{resolved.playlist}**"
                                     f"{cut}; {where}.")
        elif now:
            await reply(interaction, f"Playing {_bold(track)} now.")
        elif first == 0:
            await reply(interaction, f"Now playing {_bold(track)}.")
        else:
            await reply(interaction, f"Queued {_bold(track)} at position {first}.")

    async def autocomplete_query(self, interaction: Any, current: str
                                 ) -> list[app_commands.Choice[str]]:
        """Suggestions for ``/play query`` as the user types (bounded in time)."""
        text = current.strip()
        if not text:
            return []
        if is_url(text):
            return ([app_commands.Choice(name=text, value=text)]
                    if len(text) <= CHOICE_LIMIT else [])
        hits = await self.search.suggestions(text)
        return [app_commands.Choice(name=choice_name(hit), value=hit.url)
                for hit in hits if len(hit.url) <= CHOICE_LIMIT][:25]

    # -- playback -----------------------------------------------------------------------

    async def stop(self, interaction: Any) -> None:
        """``/stop``: stop, clear the queue, leave voice."""
        try:
            guild_id, player = await self._check(interaction, joins=False, controls=True)
        except _Refused as exc:
            await refuse(interaction, str(exc))
            return
        if self.voice.channel(guild_id) is None and player.view().current is None:
            await refuse(interaction, "Nothing is playing.")
            return
        await self._stop(guild_id, player, interaction)
        await reply(interaction, "Stopped, cleared the queue and left the channel.")

    async def _stop(self, guild_id: int, player: Player, interaction: Any) -> None:
        await player.command(lambda core, now: core.stop())
        name = getattr(interaction.user, "display_name", "someone")
        self.announcer.conclude(guild_id, f"Stopped by {name}.")
        await self._leave(guild_id)

    async def pause(self, interaction: Any) -> None:
        """``/pause``."""
        await self._act(interaction, lambda core, now: core.pause(now), "Paused.", joins=False)

    async def resume(self, interaction: Any) -> None:
        """``/resume`` (joins the caller's channel when the bot is in none)."""
        await self._act(interaction, lambda core, now: core.resume(now), "Resumed.", joins=True)

    async def skip(self, interaction: Any) -> None:
        """``/skip``."""
        await self._act(interaction, lambda core, now: core.skip(now),
                        "Skipped **{result.label}**.", joins=True)

    async def previous(self, interaction: Any) -> None:
        """``/previous``."""
        await self._act(interaction, lambda core, now: core.previous(now),
                        "Back to **{result.label}**.", joins=True)

    async def jump(self, interaction: Any, position: int) -> None:
        """``/jump position``."""
        await self._act(interaction, lambda core, now: core.jump(position, now),
                        "Jumped to **{result.label}**.", joins=True)

    async def seek(self, interaction: Any, position: str) -> None:
        """``/seek position`` (``90``, ``1:30``, ``1:02:30``)."""
        try:
            seconds = parse_time(position)
        except ValueError as exc:
            await refuse(interaction, f"{str(exc)[0].upper()}{str(exc)[1:]}.")
            return
        await self._act(interaction, lambda core, now: core.seek(seconds, now),
                        f"Jumped to {format_time(seconds)}.", joins=True)

    async def volume(self, interaction: Any, percent: int) -> None:
        """``/volume percent`` (0 to 200)."""
        await self._act(interaction, lambda core, now: core.set_volume(percent / 100),
                        f"Volume set to {percent} %.", joins=False)

    async def filter(self, interaction: Any, preset: Preset) -> None:
        """``/filter preset``: one of the named filter sets, or ``reset``."""
        filters = preset_filters(preset)
        await self._act(interaction,
                        lambda core, now: core.set_filters(filters, preset.value),
                        _FILTER_WORDS[preset], joins=False)

    async def crossfade(self, interaction: Any, seconds: int) -> None:
        """``/crossfade seconds`` (0 to 12; 0 = gapless, no fade)."""
        done = ("Crossfade off: each track follows the last without a gap." if seconds == 0
                else f"Crossfade set: each next track fades in over {seconds} s.")
        await self._act(interaction, lambda core, now: core.set_crossfade(float(seconds)),
                        done, joins=False)

    # -- the queue ----------------------------------------------------------------------

    async def remove(self, interaction: Any, position: int) -> None:
        """``/remove position``."""
        await self._act(interaction, lambda core, now: core.remove(position),
                        "Removed **{result.label}** from the queue.", joins=False)

    async def clear(self, interaction: Any) -> None:
        """``/clear``: remove every upcoming track (the current one plays on)."""

        def apply(core: Any, now: float) -> int:
            if not core.upcoming:
                raise CommandError("the queue is already empty")
            return int(core.clear())

        await self._act(interaction, apply, "Removed {result} tracks from the queue.",
                        joins=False)

    async def shuffle(self, interaction: Any) -> None:
        """``/shuffle``: mix the upcoming tracks once."""
        await self._act(interaction, lambda core, now: core.shuffle(self._rng),
                        "Shuffled {result} tracks.", joins=False)

    async def move(self, interaction: Any, position: int, to: int) -> None:
        """``/move position to``."""
        await self._act(interaction, lambda core, now: core.move(position, to),
                        f"Moved **{{result.label}}** to position {to}.", joins=False)

    async def loop(self, interaction: Any, mode: LoopMode) -> None:
        """``/loop off|track|queue``."""
        await self._act(interaction, lambda core, now: core.set_loop(mode),
                        _LOOP_WORDS[mode], joins=False)

    async def queue(self, interaction: Any, page: int = 1) -> None:
        """``/queue [page]``: a paged embed of what is coming up."""
        if interaction.guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        view = (await self._player(interaction.guild_id)).view()
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
        await reply(interaction, embed=embed)

    async def nowplaying(self, interaction: Any) -> None:
        """``/nowplaying``: title, progress bar, up next."""
        if interaction.guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        view: PlayerView = (await self._player(interaction.guild_id)).view()
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

    # -- buttons ------------------------------------------------------------------------

    async def press(self, interaction: Any, action: Action, guild_id: int) -> None:
        """A button of the now-playing message: the same rules as the commands."""
        if interaction.guild_id != guild_id:
            await refuse(interaction, "That button belongs to another server.")
            return
        match action:
            case Action.STOP:
                try:
                    _, player = await self._check(interaction, joins=False, controls=True)
                except _Refused as exc:
                    await refuse(interaction, str(exc))
                    return
                await self._stop(guild_id, player, interaction)
                await interaction.response.defer()
            case Action.PAUSE:
                await self._act(interaction, lambda core, now: core.pause(now), "Paused.",
                                joins=False, quiet=True)
            case Action.RESUME:
                await self._act(interaction, lambda core, now: core.resume(now), "Resumed.",
                                joins=True, quiet=True)
            case Action.SKIP:
                await self._act(interaction, lambda core, now: core.skip(now),
                                "Skipped **{result.label}**.", joins=True, quiet=True)

    # -- voice presence -----------------------------------------------------------------

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
        if self.voice.channel(guild_id) is not None:
            self.watcher.check(guild_id)

    async def disconnected(self, guild_id: int) -> None:
        """Discord dropped the bot from voice (kicked, channel deleted): stop."""
        self.watcher.cancel(guild_id)
        if await self.voice.disconnected(guild_id):
            self.announcer.conclude(guild_id,
                                    "Disconnected from voice; the queue was cleared.")

    async def left_empty(self, guild_id: int) -> None:
        """Nobody listened for a while: pause, leave, and say so."""
        channel = self.voice.channel(guild_id)
        name = getattr(channel, "name", "the voice channel")
        player = self.gateway.players.existing(str(guild_id))
        if player is not None and player.view().current is not None and not player.core.paused:
            try:
                await player.command(lambda core, now: core.pause(now))
            except CommandError:
                pass
        await self.voice.leave(guild_id)
        self.announcer.conclude(guild_id, f"Paused and left {name}: nobody was listening. "
                                          "/resume brings me back.")

    # -- information --------------------------------------------------------------------

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
