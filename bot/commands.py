"""What each slash command and button does, independent of how discord.py delivers it.

``MusicCommands`` methods take a discord.py ``Interaction`` and answer it. Each maps
the command onto one player command value (``gateway.player.commands``) and the
words for its outcome; ``bot.gate`` does the rest (who may, joining voice, the
reply). Invalid use (no voice channel, not the DJ, nothing playing, a position out
of range, an unreadable time) gets a clear private reply and changes nothing. The
session id is the guild id.

Commands that make the bot play (``/play``, ``/playnext``, ``/resume``, ``/skip``,
``/previous``, ``/jump``, ``/seek``, ``/forward``, ``/rewind``, the previous, resume and
skip buttons) join the caller's voice channel when the bot is in none: after a restart
queues come back from SQLite with the bot out of voice, so this is the normal way back.
Voice presence (leaving an empty channel, being dropped) is ``bot.presence``; ``/join``,
``/leave`` and ``/voteskip`` are ``bot.voice_commands``; saved playlists are
``bot.playlist_commands``; autoplay is ``bot.autoplay``; the filter presets' names and
words are ``protocol.filter_presets``'s, custom filters ``bot.sound``'s.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from discord import app_commands
from prometheus_client.core import Metric

from bot.announce import Announcer
from bot.attachments import upload_url
from bot.autoplay import Autoplay
from bot.controls import Action, next_loop
from bot.gate import Gate, Refused
from bot.guild_settings import GuildSettingsStore
from bot.info_commands import HELP, InfoCommands
from bot.nowplaying import progress_bar
from bot.playlist_commands import PlaylistCommands
from bot.presence import EmptyChannelWatcher, Presence
from bot.replies import refuse, reply
from bot.search import Search
from bot.settings_commands import SettingsCommands
from bot.sound import custom_filters, describe_filters
from bot.timeparse import format_time, parse_time
from bot.tracks import CHOICE_LIMIT, NotPlayable, choice_name, is_url, resolve
from bot.voice import VoiceBridge
from bot.voice_commands import VoiceCommands
from bot.votes import SkipVotes
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
    PlayNext,
    PlayNow,
    Previous,
    Remove,
    RemoveDuplicates,
    Resume,
    Seek,
    SeekBy,
    SetCrossfade,
    SetLoop,
    SetVolume,
    Shuffle,
    Skip,
    Stop,
    Track,
)
from gateway.playlists import PlaylistStore
from gateway.related import RelatedTracks, YouTubeMix
from gateway.runtime import Gateway
from gateway.settings import setting_default
from protocol.filter_presets import Preset, preset_words

__all__ = ["HELP", "MusicCommands", "progress_bar"]

log = logging.getLogger(__name__)

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


def _deduplicated(outcome: Outcome) -> str:
    if not outcome.count:
        raise Refused("There are no repeated tracks in the queue.")
    return f"Removed {outcome.count} repeated tracks from the queue."


class _Where(StrEnum):
    """Where ``/play`` and ``/playnext`` put what they add."""

    END = "end"
    NEXT = "next"
    NOW = "now"


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
        max_upload_mb: largest uploaded file ``/play file:`` plays.
        related: where autoplay finds related tracks (YouTube's mixes through the
            engine when None).
        playlists: saved playlists (in the gateway's database when None).
        rng: the seeds of shuffles (seeded in tests).
    """

    def __init__(self, gateway: Gateway, voice: VoiceBridge, *, settings: GuildSettingsStore,
                 search: Search, announcer: Announcer | None = None,
                 playlist_limit: int = setting_default("bot_playlist_limit"),
                 leave_after: float = setting_default("bot_leave_after"),
                 max_upload_mb: int = setting_default("bot_max_upload_mb"),
                 related: RelatedTracks | None = None,
                 playlists: PlaylistStore | None = None,
                 rng: random.Random | None = None) -> None:
        self.gateway = gateway
        self.voice = voice
        self.settings = settings
        self.search = search
        self.announcer = announcer if announcer is not None else Announcer(
            gateway.players, lyrics=gateway.lyrics)
        self.playlist_limit = playlist_limit
        self.max_upload_bytes = max_upload_mb * 1_000_000
        self.presence = Presence(voice, settings, players=gateway.players,
                                 announcer=self.announcer, leave_after=leave_after)
        self.autoplay = Autoplay(
            gateway.players, settings, voice=voice, announcer=self.announcer,
            related=related if related is not None else RelatedTracks(
                [YouTubeMix(gateway.engine)]))
        self.votes = SkipVotes()
        self.gate = Gate(gateway, voice, settings=settings, announcer=self.announcer,
                         on_joined=self._joined, on_left=self._left)
        #: ``/settings`` handlers.
        self.settings_commands = SettingsCommands(settings, self.watcher)
        #: ``/join``, ``/leave``, ``/voteskip``.
        self.voice_commands = VoiceCommands(self.gate, voice, self.announcer, self.votes)
        #: ``/queue``, ``/history``, ``/nowplaying``, ``/lyrics``, ``/status``, ``/help``.
        self.info = InfoCommands(gateway, self.gate)
        #: ``/playlist`` handlers.
        self.playlist_commands = PlaylistCommands(
            self.gate, playlists if playlists is not None else PlaylistStore(gateway.database))
        self._rng = rng or random.Random()
        gateway.metrics.add_source(self.metric_families)

    def _joined(self, guild_id: int) -> None:
        self.watcher.check(guild_id)
        self.autoplay.watch(guild_id)

    def _left(self, guild_id: int) -> None:
        self.watcher.cancel(guild_id)
        self.autoplay.forget(guild_id)
        self.votes.clear(guild_id)

    @property
    def watcher(self) -> EmptyChannelWatcher:
        """The "nobody is listening" timers."""
        return self.presence.watcher

    async def close(self) -> None:
        """Stop timers and announcements, leave the metrics. Idempotent."""
        self.gateway.metrics.remove_source(self.metric_families)
        await self.presence.close()
        await self.autoplay.close()
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
            ("autoplay_tracks", "Tracks autoplay added", self.autoplay.added),
            ("autoplay_empty", "Autoplay rounds that found nothing new", self.autoplay.empty),
            ("autoplay_failures", "Autoplay lookups that failed", self.autoplay.failures),
        ):
            yield counter(f"audiogate_gateway_bot_{name}", what, value)

    # -- /play ------------------------------------------------------------------------

    async def play(self, interaction: Any, query: str | None = None, now: bool = False,
                   file: Any | None = None) -> None:
        """``/play [query] [now] [file]``: a link, a playlist link, search words, or an
        uploaded audio file."""
        await self._add(interaction, query, file, _Where.NOW if now else _Where.END)

    async def playnext(self, interaction: Any, query: str) -> None:
        """``/playnext query``: add right after the current track (DJ)."""
        await self._add(interaction, query, None, _Where.NEXT)

    async def _add(self, interaction: Any, query: str | None, file: Any | None,
                   where: _Where) -> None:
        text = (query or "").strip()
        gate = self.gate
        try:
            guild_id, player = await gate.check(interaction, joins=True,
                                                controls=where is not _Where.END)
            if file is not None:
                if text:
                    raise Refused("Give me a link or words, or a file: not both.")
                text = upload_url(file, max_bytes=self.max_upload_bytes)
            elif not text:
                raise Refused("Tell me what to play: a link, search words or a file.")
            elif len(text) > 1000:
                raise Refused("That is too long for a link or a search.")
        except (Refused, NotPlayable) as exc:
            await refuse(interaction, str(exc))
            return
        await interaction.response.defer(thinking=True)
        requester = str(getattr(interaction.user, "display_name", ""))
        try:
            resolved = await resolve(text, requester, engine=self.gateway.engine,
                                     search=self.search, playlist_limit=self.playlist_limit)
            joined = await gate.join(interaction, guild_id)
        except (Refused, NotPlayable) as exc:
            await refuse(interaction, str(exc))
            return
        first, *rest = resolved.tracks
        more = tuple(rest)
        command = (PlayNow(first, more) if where is _Where.NOW
                   else PlayNext(first, more) if where is _Where.NEXT else Enqueue(first, more))
        try:
            outcome = await player.apply(command)
        except CommandError as exc:
            if joined and player.view().current is None:
                await gate.leave(guild_id)
            await refuse(interaction, f"Can't add that: {exc}.")
            return
        gate.announce(interaction, guild_id)
        if resolved.playlist is not None:
            added = outcome.count
            cut = f" (the first {added} of {resolved.total})" if added < resolved.total else ""
            if outcome.position == 0 or where is _Where.NOW:
                place = f"{_bold(first)} starts now"
            elif where is _Where.NEXT:
                place = "they play next"
            else:
                place = f"from position {outcome.position}"
            await reply(interaction, f"Queued {added} tracks from **{resolved.playlist}**"
                                     f"{cut}; {place}.")
        elif where is _Where.NOW:
            await reply(interaction, f"Playing {_bold(first)} now.")
        elif outcome.position == 0:
            await reply(interaction, f"Now playing {_bold(first)}.")
        elif where is _Where.NEXT:
            await reply(interaction, f"{_bold(first)} plays next.")
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

    async def forward(self, interaction: Any, seconds: int) -> None:
        """``/forward seconds``."""
        await self.gate.act(interaction, SeekBy(seconds), lambda o: (
            f"Forward {seconds} s: playing from {format_time(o.view.position)}."), joins=True)

    async def rewind(self, interaction: Any, seconds: int) -> None:
        """``/rewind seconds`` (past the start: from the start)."""
        await self.gate.act(interaction, SeekBy(-seconds), lambda o: (
            f"Back {seconds} s: playing from {format_time(o.view.position)}."), joins=True)

    async def volume(self, interaction: Any, percent: int | None = None) -> None:
        """``/volume [percent]`` (0 to 200); without a value: the volume now."""
        if percent is None:
            if interaction.guild_id is None:
                await refuse(interaction, "Music commands work in a server, not in DMs.")
                return
            view = (await self.gate.player(interaction.guild_id)).view()
            await reply(interaction, f"The volume is {round(view.volume * 100)} %.")
            return
        await self.gate.act(interaction, SetVolume(percent / 100),
                            _said(f"Volume set to {percent} %."), joins=False)

    async def filter(self, interaction: Any, preset: Preset | None = None,
                     equalizer: str | None = None, speed: float | None = None,
                     pitch: float | None = None) -> None:
        """``/filter [preset] [equalizer] [speed] [pitch]``: a named filter set, the
        user's own equalizer bands, speed and pitch (on the preset given, else on what
        plays now), or both."""
        if interaction.guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        current = (await self.gate.player(interaction.guild_id)).view().filters
        try:
            command = custom_filters(current, preset=preset, equalizer=equalizer,
                                     speed=speed, pitch=pitch)
        except CommandError as exc:
            await refuse(interaction, f"Can't do that: {exc}.")
            return
        if command.name != "custom" and preset is not None:
            words = preset_words(preset)
        else:
            words = f"Filters set: {describe_filters(command.filters)}."
        await self.gate.act(interaction, command, _said(words), joins=False)

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

    async def removedupes(self, interaction: Any) -> None:
        """``/removedupes``: drop upcoming tracks whose link is already queued."""
        await self.gate.act(interaction, RemoveDuplicates(), _deduplicated, joins=False)

    async def move(self, interaction: Any, position: int, to: int) -> None:
        """``/move position to``."""
        await self.gate.act(interaction, Move(position, to),
                            lambda o: f"Moved {_bold(o.track)} to position {to}.",
                            joins=False)

    async def loop(self, interaction: Any, mode: LoopMode) -> None:
        """``/loop off|track|queue``."""
        await self.gate.act(interaction, SetLoop(mode), _said(_LOOP_WORDS[mode]),
                            joins=False)

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
            case Action.PREVIOUS:
                await gate.act(interaction, Previous(),
                               lambda o: f"Back to {_bold(o.track)}.", joins=True, quiet=True)
            case Action.LOOP:
                mode = next_loop((await gate.player(guild_id)).view().loop)
                await gate.act(interaction, SetLoop(mode), _said(_LOOP_WORDS[mode]),
                               joins=False, quiet=True)
            case Action.SHUFFLE:
                await gate.act(interaction, Shuffle(self._rng.getrandbits(64)),
                               lambda o: f"Shuffled {o.count} tracks.", joins=False,
                               quiet=True)
            case Action.QUEUE:
                await self.info.queue(interaction, private=True)

    # -- voice presence -----------------------------------------------------------------

    async def voice_state_changed(self, member: Any, before: Any, after: Any, *,
                                  bot_user_id: int | None) -> None:
        """Someone's voice state changed (discord.py's ``on_voice_state_update``)."""
        await self.presence.voice_state_changed(member, before, after,
                                                bot_user_id=bot_user_id)

    # -- information --------------------------------------------------------------------

    async def autoplay_mode(self, interaction: Any, on: bool) -> None:
        """``/autoplay on|off``: related tracks when the queue runs out (DJ)."""
        try:
            guild_id, player = await self.gate.check(interaction, joins=False, controls=True)
        except Refused as exc:
            await refuse(interaction, str(exc))
            return
        await self.settings.update(guild_id, autoplay=on)
        if not on:
            await reply(interaction, "Autoplay is off: the queue ends after its last track.")
            return
        words = ("Autoplay is on: when the queue runs out, I add tracks related to the last "
                 f"one ({self.autoplay.related.names}).")
        view = player.view()
        last = view.current or (view.history[-1] if view.history else None)
        if last is not None and self.autoplay.related.provider_for(last) is None:
            words += (f" {_bold(last)} is not from {self.autoplay.related.names}, so it "
                      "takes a track that is to start from.")
        if self.voice.channel(guild_id) is not None:
            self.autoplay.watch(guild_id)
            self.autoplay.check(guild_id)
        await reply(interaction, words)
