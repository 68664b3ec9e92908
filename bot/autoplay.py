"""Autoplay: when a guild's queue runs out, related tracks follow (``/autoplay on``).

The guild's player views are watched while the bot is in voice. When the track playing
is the last one of the queue, its relatives are looked up at once (``RelatedTracks``:
for YouTube, the video's "Mix" through the engine) and added to the end, so the next
track is queued (and, on our engine, joined gaplessly) before the last one ends. When
the queue has already ended (autoplay was switched on afterwards), the last track
played is the seed and the first related track starts.

Each track is a seed once. What autoplay cannot do is said on the now-playing message:
a track of a site no provider knows, a mix with nothing new in it, a lookup that failed.
Tracks already played or queued are left out of what is added. After
``MAX_FRUITLESS`` rounds whose tracks never started playing (all unavailable), autoplay
stops adding and says so, rather than turning failures into more failures; a track that
plays resets the count.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from applog import session_logger
from bot.announce import Announcer
from bot.guild_settings import GuildSettingsStore
from bot.voice import VoiceBridge
from gateway.player import (
    CommandError,
    Enqueue,
    Player,
    PlayerRegistry,
    PlayerStatus,
    PlayerView,
    Track,
)
from gateway.related import RelatedProvider, RelatedTracks, RelatedUnavailable
from lifecycle import TaskOwner, declare

__all__ = ["BATCH", "MAX_FRUITLESS", "Autoplay"]

log = logging.getLogger(__name__)

FETCH = declare(
    "autoplay-{key}", owner="Autoplay",
    what="finding and queueing tracks related to a guild's last track (autoplay)",
    ends="queued, none found, or the lookup failed (bounded by the engine's deadline); "
         "cancelled by `MusicCommands.close`")

#: Related tracks added per round: enough for a while, few enough that the queue
#: stays the listeners' (each round is one lookup).
BATCH = 5
#: Rounds in a row whose tracks never played before autoplay gives up.
MAX_FRUITLESS = 2


@dataclass
class _Guild:
    player: Player
    unsubscribe: Callable[[], None]
    #: Tracks (ids) used as seeds lately (a seed is only ever the last track).
    seeds: deque[str] = field(default_factory=lambda: deque(maxlen=16))
    #: Rounds added since a track last played.
    fruitless: int = 0
    busy: bool = False
    gave_up: bool = False
    #: A look at the player is scheduled (see ``_seen``).
    scheduled: bool = False


class Autoplay:
    """Autoplay of every guild.

    Args:
        players: the guilds' players.
        settings: per-guild settings (``autoplay`` on or off).
        voice: where the bot is (autoplay only adds while it is in voice).
        related: the providers of related tracks.
        announcer: where autoplay's notices go.
        batch: tracks added per round.
    """

    def __init__(self, players: PlayerRegistry, settings: GuildSettingsStore, *,
                 voice: VoiceBridge, related: RelatedTracks, announcer: Announcer,
                 batch: int = BATCH) -> None:
        self._players = players
        self._settings = settings
        self._voice = voice
        self.related = related
        self._announcer = announcer
        self.batch = batch
        self._guilds: dict[int, _Guild] = {}
        self._tasks = TaskOwner(FETCH.owner, logger=log)
        #: Tracks added, rounds that found nothing, lookups that failed.
        self.added = 0
        self.empty = 0
        self.failures = 0

    def watch(self, guild_id: int) -> None:
        """Follow *guild_id*'s player (the bot joined voice there, or autoplay was
        switched on); a player loaded again since is followed anew. Idempotent."""
        player = self._players.get(str(guild_id), output="opus")
        known = self._guilds.get(guild_id)
        if known is not None and known.player is player:
            return
        if known is not None:
            known.unsubscribe()
        state = _Guild(player, lambda: None)
        state.unsubscribe = player.subscribe(lambda _view: self._seen(guild_id))
        self._guilds[guild_id] = state

    def check(self, guild_id: int) -> None:
        """Look at *guild_id* now (autoplay was just switched on)."""
        state = self._guilds.get(guild_id)
        if state is not None:
            state.gave_up = False
            state.fruitless = 0
            self._seen(guild_id)

    def forget(self, guild_id: int) -> None:
        """Stop following *guild_id* (the bot left voice)."""
        state = self._guilds.pop(guild_id, None)
        if state is not None:
            state.unsubscribe()

    async def close(self) -> None:
        """Stop every lookup and stop following. Idempotent."""
        for guild_id in list(self._guilds):
            self.forget(guild_id)
        await self._tasks.aclose()

    # -- the rule ----------------------------------------------------------------------

    def _on(self, guild_id: int) -> bool:
        settings = self._settings.cached(guild_id)
        return settings is not None and settings.autoplay

    def _seen(self, guild_id: int) -> None:
        """The player changed: look at it once the change is complete. (A listener is
        called inside the command that changed it; the command's front still has to
        attach the announcement where autoplay's notices go.)"""
        state = self._guilds.get(guild_id)
        if state is None or state.scheduled:
            return
        state.scheduled = True

        def look() -> None:
            state.scheduled = False
            if self._guilds.get(guild_id) is state:
                self._consider(guild_id, state, state.player.view())

        asyncio.get_running_loop().call_soon(look)

    def _consider(self, guild_id: int, state: _Guild, view: PlayerView) -> None:
        if state.busy or not self._on(guild_id):
            return
        if self._voice.channel(guild_id) is None:
            return
        if view.status is PlayerStatus.PLAYING:
            state.fruitless = 0  # a track started: what autoplay adds is playable
        seed: Track | None = None
        if view.current is not None and not view.upcoming:
            seed = view.current  # the last track plays: find what follows now
        elif view.current is None and view.status is PlayerStatus.IDLE and view.history:
            seed = view.history[-1]  # the queue ended already
        if seed is None or seed.id in state.seeds or state.gave_up:
            return
        state.seeds.append(seed.id)
        if state.fruitless >= MAX_FRUITLESS:
            state.gave_up = True
            self._announcer.note(guild_id, "Autoplay stopped: the related tracks it found "
                                           "could not be played.")
            return
        provider = self.related.provider_for(seed)
        if provider is None:
            self._announcer.note(
                guild_id, f"Autoplay finds related tracks for {self.related.names} tracks "
                          f"only; **{_plain(seed.label)}** is not one.")
            return
        if self._tasks.closed:
            return
        state.busy = True
        exclude = {t.url for t in (*view.history, *view.upcoming)}
        if view.current is not None:
            exclude.add(view.current.url)
        self._tasks.spawn(FETCH, self._fetch(guild_id, state, seed, exclude, provider),
                          key=str(guild_id))

    async def _fetch(self, guild_id: int, state: _Guild, seed: Track, exclude: set[str],
                     provider: RelatedProvider) -> None:
        logger = session_logger(log, str(guild_id))
        try:
            try:
                found: list[Track] = await provider.related(seed, limit=self.batch,
                                                            exclude=exclude)
            except RelatedUnavailable as exc:
                self.failures += 1
                logger.warning("autoplay: related tracks of %s: %s", seed.url, exc)
                self._announcer.note(guild_id, f"Autoplay could not reach {provider.name} "
                                               "for related tracks just now.")
                return
            if not found:
                self.empty += 1
                self._announcer.note(guild_id, "Autoplay found nothing new related to "
                                               f"**{_plain(seed.label)}**.")
                return
            if self._guilds.get(guild_id) is not state or not self._on(guild_id) \
                    or self._voice.channel(guild_id) is None:
                return  # left, switched off or unloaded meanwhile
            view = state.player.view()
            if view.current is None and not (view.history and view.history[-1].id == seed.id):
                return  # stopped meanwhile: the queue was not left to run out
            try:
                outcome = await state.player.apply(Enqueue(found[0], tuple(found[1:])))
            except CommandError as exc:
                logger.info("autoplay could not queue: %s", exc)
                return
            state.fruitless += 1
            self.added += outcome.count
            logger.info("autoplay queued %d tracks related to %s", outcome.count, seed.url)
        finally:
            state.busy = False


def _plain(label: str) -> str:
    return label.replace("*", "").replace("`", "")[:100]
