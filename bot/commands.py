"""What each slash command and button does, independent of how discord.py delivers it.

``MusicCommands`` methods take a discord.py ``Interaction`` and answer it. Each maps
the command onto one player command value (``gateway.player.commands``) and the
words for its outcome; ``bot.gate`` does the rest (who may, joining voice, the
reply). Invalid use (no voice channel, not the DJ, nothing playing, a position out
of range, an unreadable time) gets a clear private reply and changes nothing. The
session id is the guild id.

Commands that make the bot play (``/play``, ``/resume``, ``/skip``, ``/previous``,
``/jump``, ``/seek``, the resume and skip buttons) join the caller's voice channel
when the bot is in none: after a restart queues come back from SQLite with the bot
out of voice, so this is the normal way back. Voice presence (leaving an empty
channel, being dropped) is ``bot.presence``; the filter presets' names and words are
``protocol.filter_presets``'s.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands
from prometheus_client.core import Metric

from bot.announce import Announcer
from bot.controls import Action
from bot.gate import Gate, Refused
from bot.guild_settings import GuildSettingsStore
from bot.nowplaying import progress_bar
from bot.presence import EmptyChannelWatcher, Presence
from bot.replies import refuse, reply
from bot.search import Search
from bot.settings_commands import SettingsCommands
from bot.timeparse import format_time, parse_time
from bot.tracks import CHOICE_LIMIT, NotPlayable, choice_name, is_url, resolve
from bot.voice import VoiceBridge
from gateway.engine_client import EngineError
from gateway.metrics import counter
from gateway.player import (
    Clear,
    CommandError,
    Enqueue,
    Jump,
    LoopMode,
    Move,
    Outcome,
    Pause,
    PlayerStatus,
    PlayerView,
    PlayNow,
    Previous,
    Remove,
    Resume,
    Seek,
    SetCrossfade,
    SetFilters,
    SetLoop,
    SetVolume,
    Shuffle,
    Skip,
    Stop,
    Track,
)
from gateway.runtime import Gateway
from gateway.settings import setting_default
from protocol.filter_presets import Preset, preset_choices, preset_words

__all__ = ["HELP", "MusicCommands", "progress_bar"]

log = logging.getLogger(__name__)

#: Queue entries per page of ``/queue``.
QUEUE_PAGE_SIZE = 10
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
    ("/filter preset", preset_choices()),
    ("/crossfade seconds", "fade each next track in over 0 to 12 s (0: gapless)"),
    ("/nowplaying", "the current track, its progress, and what is next"),
    ("/stop", "stop, clear the queue and leave the voice channel"),
    ("/settings", "DJ role and 24/7 (needs Manage Server)"),
    ("/status", "the audio engine's health"),
]

_LOOP_WORDS = {
    LoopMode.OFF: "Loop is off: the queue ends after its last track.",
    LoopMode.TRACK: "Looping this track.",
    LoopMode.QUEUE: "Looping the queue: every track that ends goes back to its end.",
}


def _bold(track: Track | None) -> str:
    label = track.label if track is not None else "the track"
    return f"**{label.replace('*', '')}**"


def _said(words: str) -> Any:
    """Words that do not depend on the outcome."""
    return lambda _outcome: words


def _cleared(outcome: Outcome) -> str:
    if not outcome.count:
        raise Refused("Can't do that: the queue is already empty.")
    return f"Removed {outcome.count} tracks from the queue."


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
        rng: the seeds of shuffles (seeded in tests).
    """

    def __init__(self, gateway: Gateway, voice: VoiceBridge, *, settings: GuildSettingsStore,
                 search: Search, announcer: Announcer | None = None,
                 playlist_limit: int = setting_default("bot_playlist_limit"),
                 leave_after: float = setting_default("bot_leave_after"),
                 rng: random.Random | None = None) -> None:
        self.gateway = gateway
        self.voice = voice
        self.settings = settings
        self.search = search
        self.announcer = announcer if announcer is not None else Announcer(gateway.players)
        self.playlist_limit = playlist_limit
        self.presence = Presence(voice, settings, players=gateway.players,
                                 announcer=self.announcer, leave_after=leave_after)
        self.gate = Gate(gateway, voice, settings=settings, announcer=self.announcer,
                         on_joined=self.watcher.check, on_left=self.watcher.cancel)
        #: ``/settings`` handlers.
        self.settings_commands = SettingsCommands(settings, self.watcher)
        self._rng = rng or random.Random()
        gateway.metrics.add_source(self.metric_families)

    @property
    def watcher(self) -> EmptyChannelWatcher:
        """The "nobody is listening" timers."""
        return self.presence.watcher

    async def close(self) -> None:
        """Stop timers and announcements, leave the metrics. Idempotent."""
        self.gateway.metrics.remove_source(self.metric_families)
        await self.presence.close()
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

    # -- /play ------------------------------------------------------------------------

    async def play(self, interaction: Any, query: str, now: bool = False) -> None:
        """``/play query [now]``: a link, a playlist link, or search words."""
        query = query.strip()
        gate = self.gate
        try:
            guild_id, player = await gate.check(interaction, joins=True, controls=now)
            if not query:
                raise Refused("Tell me what to play: a link or search words.")
            if len(query) > 1000:
                raise Refused("That is too long for a link or a search.")
        except Refused as exc:
            await refuse(interaction, str(exc))
            return
        await interaction.response.defer(thinking=True)
        requester = str(getattr(interaction.user, "display_name", ""))
        try:
            resolved = await resolve(query, requester, engine=self.gateway.engine,
                                     search=self.search, playlist_limit=self.playlist_limit)
            joined = await gate.join(interaction, guild_id)
        except (Refused, NotPlayable) as exc:
            await refuse(interaction, str(exc))
            return
        first, *rest = resolved.tracks
        command = PlayNow(first, tuple(rest)) if now else Enqueue(first, tuple(rest))
        try:
            outcome = await player.apply(command)
        except CommandError as exc:
            if joined and player.view().current is None:
                await gate.leave(guild_id)
            await refuse(interaction, f"Can't add that: {exc}.")
            return
        self.announcer.attach(guild_id, interaction.channel)
        if resolved.playlist is not None:
            added = outcome.count
            cut = f" (the first {added} of {resolved.total})" if added < resolved.total else ""
            where = (f"{_bold(first)} starts now" if outcome.position == 0
                     else f"from position {outcome.position}")
            await reply(interaction, f"Queued {added} tracks from **{resolved.playlist}**"
                                     f"{cut}; {where}.")
        elif now:
            await reply(interaction, f"Playing {_bold(first)} now.")
        elif outcome.position == 0:
            await reply(interaction, f"Now playing {_bold(first)}.")
        else:
            await reply(interaction, f"Queued {_bold(first)} at position {outcome.position}.")

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
            guild_id, player = await self.gate.check(interaction, joins=False, controls=True)
        except Refused as exc:
            await refuse(interaction, str(exc))
            return
        if self.voice.channel(guild_id) is None and player.view().current is None:
            await refuse(interaction, "Nothing is playing.")
            return
        await self._stop(guild_id, interaction)
        await reply(interaction, "Stopped, cleared the queue and left the channel.")

    async def _stop(self, guild_id: int, interaction: Any) -> None:
        player = await self.gate.player(guild_id)
        await player.apply(Stop())
        name = getattr(interaction.user, "display_name", "someone")
        self.announcer.conclude(guild_id, f"Stopped by {name}.")
        await self.gate.leave(guild_id)

    async def pause(self, interaction: Any) -> None:
        """``/pause``."""
        await self.gate.act(interaction, Pause(), _said("Paused."), joins=False)

    async def resume(self, interaction: Any) -> None:
        """``/resume`` (joins the caller's channel when the bot is in none)."""
        await self.gate.act(interaction, Resume(), _said("Resumed."), joins=True)

    async def skip(self, interaction: Any) -> None:
        """``/skip``."""
        await self.gate.act(interaction, Skip(), lambda o: f"Skipped {_bold(o.track)}.",
                            joins=True)

    async def previous(self, interaction: Any) -> None:
        """``/previous``."""
        await self.gate.act(interaction, Previous(), lambda o: f"Back to {_bold(o.track)}.",
                            joins=True)

    async def jump(self, interaction: Any, position: int) -> None:
        """``/jump position``."""
        await self.gate.act(interaction, Jump(position),
                            lambda o: f"Jumped to {_bold(o.track)}.", joins=True)

    async def seek(self, interaction: Any, position: str) -> None:
        """``/seek position`` (``90``, ``1:30``, ``1:02:30``)."""
        try:
            seconds = parse_time(position)
        except ValueError as exc:
            await refuse(interaction, f"{str(exc)[0].upper()}{str(exc)[1:]}.")
            return
        await self.gate.act(interaction, Seek(seconds),
                            _said(f"Jumped to {format_time(seconds)}."), joins=True)

    async def volume(self, interaction: Any, percent: int) -> None:
        """``/volume percent`` (0 to 200)."""
        await self.gate.act(interaction, SetVolume(percent / 100),
                            _said(f"Volume set to {percent} %."), joins=False)

    async def filter(self, interaction: Any, preset: Preset) -> None:
        """``/filter preset``: one of the named filter sets, or ``reset``."""
        await self.gate.act(interaction, SetFilters.preset(preset),
                            _said(preset_words(preset)), joins=False)

    async def crossfade(self, interaction: Any, seconds: int) -> None:
        """``/crossfade seconds`` (0 to 12; 0 = gapless, no fade)."""
        done = ("Crossfade off: each track follows the last without a gap." if seconds == 0
                else f"Crossfade set: each next track fades in over {seconds} s.")
        await self.gate.act(interaction, SetCrossfade(float(seconds)), _said(done),
                            joins=False)

    # -- the queue ----------------------------------------------------------------------

    async def remove(self, interaction: Any, position: int) -> None:
        """``/remove position``."""
        await self.gate.act(interaction, Remove(position),
                            lambda o: f"Removed {_bold(o.track)} from the queue.", joins=False)

    async def clear(self, interaction: Any) -> None:
        """``/clear``: remove every upcoming track (the current one plays on)."""
        await self.gate.act(interaction, Clear(), _cleared, joins=False)

    async def shuffle(self, interaction: Any) -> None:
        """``/shuffle``: mix the upcoming tracks once."""
        await self.gate.act(interaction, Shuffle(self._rng.getrandbits(64)),
                            lambda o: f"Shuffled {o.count} tracks.", joins=False)

    async def move(self, interaction: Any, position: int, to: int) -> None:
        """``/move position to``."""
        await self.gate.act(interaction, Move(position, to),
                            lambda o: f"Moved {_bold(o.track)} to position {to}.",
                            joins=False)

    async def loop(self, interaction: Any, mode: LoopMode) -> None:
        """``/loop off|track|queue``."""
        await self.gate.act(interaction, SetLoop(mode), _said(_LOOP_WORDS[mode]),
                            joins=False)

    async def queue(self, interaction: Any, page: int = 1) -> None:
        """``/queue [page]``: a paged embed of what is coming up."""
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

    # -- buttons ------------------------------------------------------------------------

    async def press(self, interaction: Any, action: Action, guild_id: int) -> None:
        """A button of the now-playing message: the same rules as the commands."""
        if interaction.guild_id != guild_id:
            await refuse(interaction, "That button belongs to another server.")
            return
        gate = self.gate
        match action:
            case Action.STOP:
                try:
                    await gate.check(interaction, joins=False, controls=True)
                except Refused as exc:
                    await refuse(interaction, str(exc))
                    return
                await self._stop(guild_id, interaction)
                await interaction.response.defer()
            case Action.PAUSE:
                await gate.act(interaction, Pause(), _said("Paused."), joins=False,
                               quiet=True)
            case Action.RESUME:
                await gate.act(interaction, Resume(), _said("Resumed."), joins=True,
                               quiet=True)
            case Action.SKIP:
                await gate.act(interaction, Skip(), lambda o: f"Skipped {_bold(o.track)}.",
                               joins=True, quiet=True)

    # -- voice presence -----------------------------------------------------------------

    async def voice_state_changed(self, member: Any, before: Any, after: Any, *,
                                  bot_user_id: int | None) -> None:
        """Someone's voice state changed (discord.py's ``on_voice_state_update``)."""
        await self.presence.voice_state_changed(member, before, after,
                                                bot_user_id=bot_user_id)

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
