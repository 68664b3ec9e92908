"""Now-playing announcements: one message per playback, edited in place.

When a command starts playback in a guild, the announcement is attached to the
text channel the command came from. From then on the guild's player views flow
into a ``Timeline`` (every change, so no start or failure is missed however fast
they come), and one task per guild turns the latest state into a message: posted
once, then edited. Edits are rate-limited: at most one per ``edit_interval``
seconds, later changes folding into the next edit; while a track plays the
progress is refreshed every ``progress_interval`` seconds. When the queue ends
(or playback is stopped, or the bot leaves) the message gets its last edit,
without buttons, and the task ends.

With a lyrics service, each track's lyrics are looked up in the background when it
starts (``LyricsService.prefetch``: cached, shared); while synced lyrics are known the
card shows the line sung now, and the message is also edited when the next line
starts, within the same rate limit (so at most one edit per ``edit_interval``: a line
shorter than that is skipped, the card shows the one current at the edit).

Sending fails quietly (logged): a deleted message is replaced by a new one, a
channel the bot may not write to ends the announcement. Nothing here affects
playback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import discord

from applog import SessionLogger, session_logger
from bot.controls import controls_view
from bot.nowplaying import Card, Timeline, render
from gateway.lyrics import Lyrics, LyricsService
from gateway.player import PlayerRegistry, PlayerStatus, PlayerView
from lifecycle import TaskOwner, declare

__all__ = ["Announcer"]

log = logging.getLogger(__name__)

ANNOUNCEMENT = declare(
    "announce-{key}", owner="Announcer",
    what="one guild's now-playing message: posted, then edited at a bounded rate",
    ends="its last words (the queue ended, stop, leaving voice), or the bot closes "
         "(`MusicCommands.close`)")


@dataclass(eq=False)
class _Announcement:
    guild_id: int
    channel: Any
    timeline: Timeline
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    message: Any = None
    last_edit: float = float("-inf")
    last_key: tuple[object, ...] | None = None
    headline: str | None = None
    unsubscribe: Callable[[], None] = lambda: None
    task: asyncio.Task[None] | None = None
    #: The track whose lyrics lookup wakes this announcement when it answers.
    lyrics_watched: str = ""


class Announcer:
    """Announcements of every guild.

    Args:
        players: the gateway's players (session id = guild id).
        edit_interval: least seconds between two edits of one message.
        progress_interval: seconds between progress refreshes while playing.
        lyrics: where the current line comes from (None: no lyrics line).
    """

    def __init__(self, players: PlayerRegistry, *, edit_interval: float = 2.0,
                 progress_interval: float = 15.0,
                 clock: Callable[[], float] = time.monotonic,
                 lyrics: LyricsService | None = None) -> None:
        self._players = players
        self._lyrics = lyrics
        self.edit_interval = edit_interval
        self.progress_interval = progress_interval
        self._clock = clock
        self._guilds: dict[int, _Announcement] = {}
        # Every running task, including announcements saying their last words.
        self._tasks = TaskOwner(ANNOUNCEMENT.owner, logger=log)
        #: Messages posted and edits made (all guilds), failed sends.
        self.posts = 0
        self.edits = 0
        self.failures = 0

    def active(self, guild_id: int) -> bool:
        """An announcement is running for *guild_id*."""
        return guild_id in self._guilds

    def attach(self, guild_id: int, channel: Any) -> None:
        """Announce *guild_id*'s playback in *channel* (a text channel, or anything
        with ``send``). A running announcement moves there (a new message)."""
        if channel is None or not hasattr(channel, "send"):
            return
        announcement = self._guilds.get(guild_id)
        if announcement is not None and announcement.headline is not None:
            # Saying its last words: let it, and start a new one beside it.
            del self._guilds[guild_id]
            announcement = None
        if announcement is not None:
            if getattr(announcement.channel, "id", None) != getattr(channel, "id", None):
                announcement.channel = channel
                announcement.message = None
                announcement.last_key = None
            announcement.wake.set()
            return
        player = self._players.get(str(guild_id), output="opus")
        announcement = _Announcement(guild_id, channel, Timeline(player.view()))

        def listener(view: PlayerView) -> None:
            announcement.timeline.observe(view)
            announcement.wake.set()

        if self._tasks.closed:
            return
        announcement.unsubscribe = player.subscribe(listener)
        announcement.task = self._tasks.spawn(ANNOUNCEMENT, self._run(announcement),
                                              key=str(guild_id))
        self._guilds[guild_id] = announcement
        announcement.wake.set()

    def refresh(self, guild_id: int) -> None:
        """Edit *guild_id*'s message soon (rate limits apply)."""
        announcement = self._guilds.get(guild_id)
        if announcement is not None:
            announcement.wake.set()

    def note(self, guild_id: int, text: str) -> None:
        """Add *text* to *guild_id*'s message as a notice (while the current track
        and the next one play); nothing when no announcement runs."""
        announcement = self._guilds.get(guild_id)
        if announcement is not None:
            announcement.timeline.note(text)
            announcement.wake.set()

    def conclude(self, guild_id: int, headline: str) -> None:
        """Give *guild_id*'s message its last words (*headline*, no buttons); the
        announcement ends after that edit."""
        announcement = self._guilds.get(guild_id)
        if announcement is not None:
            announcement.headline = headline
            announcement.wake.set()

    async def close(self) -> None:
        """End every announcement without further edits. Idempotent."""
        await self._tasks.aclose()
        self._guilds.clear()

    # -- the task -----------------------------------------------------------------------

    async def _run(self, announcement: _Announcement) -> None:
        key = str(announcement.guild_id)
        logger = session_logger(log, key)
        try:
            while True:
                player = self._players.existing(key)
                if player is None:
                    return  # the players were closed (shutdown)
                try:
                    async with asyncio.timeout(self._next_refresh(announcement,
                                                                  player.view())):
                        await announcement.wake.wait()
                except TimeoutError:
                    pass  # time to move the progress bar (or the lyrics line)
                wait = announcement.last_edit + self.edit_interval - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)  # later changes fold into this edit
                announcement.wake.clear()
                view = player.view()
                card = render(view, announcement.timeline, headline=announcement.headline,
                              line=self._line(announcement, view))
                if not await self._publish(announcement, card, logger):
                    return
                if not card.controls:
                    return  # the last word is said
        finally:
            announcement.unsubscribe()
            if self._guilds.get(announcement.guild_id) is announcement:
                del self._guilds[announcement.guild_id]

    def _lyrics_of(self, announcement: _Announcement, view: PlayerView) -> Lyrics | None:
        """The current track's lyrics if known; otherwise their lookup is started
        (once per track) and wakes the announcement when it answers."""
        track = view.current
        if self._lyrics is None or track is None:
            return None
        known, lyrics = self._lyrics.cached(track)
        if not known and announcement.lyrics_watched != track.id:
            announcement.lyrics_watched = track.id
            lookup = self._lyrics.prefetch(track)
            if lookup is not None:
                lookup.add_done_callback(lambda _done: announcement.wake.set())
        return lyrics

    def _line(self, announcement: _Announcement, view: PlayerView) -> str | None:
        """The lyrics line sung now, when synced lyrics are known."""
        lyrics = self._lyrics_of(announcement, view)
        if lyrics is None or not lyrics.synced or view.status is PlayerStatus.LOADING:
            return None
        index = lyrics.line_at(view.position)
        return lyrics.lines[index].text if index is not None else None

    def _next_refresh(self, announcement: _Announcement, view: PlayerView) -> float | None:
        """Seconds to wait for news before editing anyway: the progress refresh, or
        the next lyrics line if sooner; None (only news) unless playing."""
        if view.status is not PlayerStatus.PLAYING:
            return None
        lyrics = self._lyrics_of(announcement, view)
        change = (lyrics.next_change(view.position)
                  if lyrics is not None and lyrics.synced else None)
        if change is None:
            return self.progress_interval
        return min(self.progress_interval, max(0.05, change))

    async def _publish(self, announcement: _Announcement, card: Card,
                       logger: SessionLogger) -> bool:
        """Post or edit; False when announcing here is impossible."""
        if card.key() == announcement.last_key:
            return True
        view = (controls_view(announcement.guild_id, paused=card.paused, loop=card.loop)
                if card.controls else None)
        announcement.last_edit = self._clock()
        try:
            if announcement.message is not None:
                try:
                    await announcement.message.edit(embed=card.embed, view=view)
                    self.edits += 1
                    announcement.last_key = card.key()
                    return True
                except discord.NotFound:
                    announcement.message = None  # deleted: post a new one
            kwargs: dict[str, Any] = {"embed": card.embed}
            if view is not None:
                kwargs["view"] = view
            announcement.message = await announcement.channel.send(**kwargs)
            self.posts += 1
            announcement.last_key = card.key()
            return True
        except discord.Forbidden:
            self.failures += 1
            logger.warning("may not post in the announcement channel; announcements stop")
            return False
        except (discord.HTTPException, OSError) as exc:
            self.failures += 1
            logger.warning("announcement not sent: %s", exc)
            return True
