"""The now-playing announcement's content, as pure code.

``Timeline`` watches a guild's player views (every change, in order) and keeps
what the announcement must tell: which track started, which ones failed and why
(in words for people, ``bot.errors``), and whether the queue ran out. ``render``
turns the latest view and the timeline into a ``Card``: the embed and the state of
the buttons. The async shell (``bot.announce``) decides when to post or edit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import discord

from bot.errors import Problem, classify, describe
from bot.timeparse import format_time
from gateway.player import LoopMode, PlayerStatus, PlayerView, Track

__all__ = ["Card", "Timeline", "progress_bar", "render"]

#: Failure notices kept on the card; each stays while the track that followed
#: it plays, then goes.
MAX_NOTICES = 3
#: Longest track label shown, in characters (embed titles allow 256).
MAX_LABEL = 120


def progress_bar(position: float, duration: float | None, width: int = 20) -> str:
    """``▰▰▰▱▱▱ 1:02 / 3:30`` (or ``1:02 / live`` without a duration)."""
    if not duration:
        return f"{format_time(position)} / live"
    filled = max(0, min(width, round(width * position / duration)))
    bar = "▰" * filled + "▱" * (width - filled)
    return f"{bar} {format_time(position)} / {format_time(duration)}"


def _label(track: Track) -> str:
    label = track.label.replace("*", "").replace("`", "").strip() or "a track"
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _lyric(text: str) -> str:
    """A lyrics line as the card shows it (no markdown of its own, bounded)."""
    cleaned = " ".join(text.replace("*", "").replace("_", " ").replace("`", "").split())
    return cleaned if len(cleaned) <= MAX_LABEL else cleaned[: MAX_LABEL - 1] + "…"


class Timeline:
    """What happened to one guild's playback since the announcement started.

    Args:
        first: the view when the announcement was attached; its current track
            and failure are taken as already known, not as news.
    """

    def __init__(self, first: PlayerView) -> None:
        self.track: Track | None = first.current
        #: Track starts seen (a new current track, including after a failure).
        self.starts = 0
        #: The queue ran out after something had played.
        self.ended = False
        self._failure_serial = first.failure.serial if first.failure else 0
        self._notices: deque[tuple[str, int]] = deque(maxlen=MAX_NOTICES)

    def observe(self, view: PlayerView) -> None:
        """Take in a view (call it with every change, in order)."""
        failure = view.failure
        if failure is not None and failure.serial != self._failure_serial:
            self._failure_serial = failure.serial
            text = f"Couldn't play **{_label(failure.track)}**: {describe(failure.message)}."
            if failure.kept is not None:
                text += f" **{_label(failure.kept)}** plays on."
            self._notices.append((text, self.starts))
        current = view.current
        if current is not None:
            self.ended = False
            if self.track is None or current.id != self.track.id:
                self.track = current
                self.starts += 1
        elif self.track is not None and view.status is PlayerStatus.IDLE:
            self.ended = True

    def note(self, text: str) -> None:
        """Add a notice of ours (autoplay found nothing...), shown like a failure's:
        while the current track plays and the one after it."""
        self._notices.append((text, self.starts))

    @property
    def notices(self) -> list[str]:
        """Failure notices still worth showing (oldest first)."""
        return [text for text, at in self._notices if self.starts - at <= 1]


@dataclass(frozen=True, slots=True)
class Card:
    """What the announcement shows.

    Attributes:
        embed: the message's embed.
        controls: show the buttons (False once the queue ended or playback stopped).
        paused: the pause button offers "Resume" rather than "Pause".
        loop: the loop button shows this mode.
    """

    embed: discord.Embed
    controls: bool
    paused: bool
    loop: LoopMode = LoopMode.OFF

    def key(self) -> tuple[object, ...]:
        """Equal keys render the same message (no edit needed)."""
        return (repr(sorted(self.embed.to_dict().items())), self.controls, self.paused,
                self.loop)


def render(view: PlayerView, timeline: Timeline, *, headline: str | None = None,
           line: str | None = None) -> Card:
    """The card for *view*. *headline* replaces the title and ends the controls
    (the announcement's last word: stopped, left the channel); *line* is the lyrics
    line sung now, if known."""
    current = view.current
    notices = timeline.notices
    if headline is not None or current is None:
        title = headline or ("The queue has ended." if timeline.ended else "Nothing is playing.")
        embed = discord.Embed(title=title, colour=discord.Colour.dark_grey())
        lines = list(notices)
        if current is not None:
            lines.insert(0, f"**{_label(current)}** at {format_time(view.position)}")
        if headline is None and timeline.ended:
            lines.append("Add more with /play.")
        embed.description = "\n".join(lines) or None
        return Card(embed, controls=False, paused=view.paused)
    match view.status:
        case PlayerStatus.LOADING:
            title, colour = "Starting…", discord.Colour.blurple()
        case PlayerStatus.PAUSED:
            title, colour = "Paused", discord.Colour.orange()
        case _:
            title, colour = "Now playing", discord.Colour.green()
    embed = discord.Embed(title=title, colour=colour)
    lines = [f"**{_label(current)}**", progress_bar(view.position, view.duration)]
    if line:
        lines.append(f"🎤 *{_lyric(line)}*")
    if current.requested_by:
        lines.append(f"requested by {current.requested_by}")
    lines += [f"⚠️ {text}" for text in notices]
    if view.error and classify(view.error) is Problem.ENGINE_DOWN:
        lines.append(f"⚠️ {Problem.ENGINE_DOWN.value.capitalize()}.")
    embed.description = "\n".join(lines)
    if view.upcoming:
        more = len(view.upcoming) - 1
        embed.add_field(name="Up next", value=_label(view.upcoming[0])
                        + (f" (+{more} more)" if more else ""), inline=False)
    extras = []
    if view.loop is not LoopMode.OFF:
        extras.append(f"loop: {view.loop.value}")
    if round(view.volume * 100) != 100:
        extras.append(f"volume: {round(view.volume * 100)} %")
    if view.filter_name:
        extras.append(f"filter: {view.filter_name}")
    if view.crossfade:
        extras.append(f"crossfade: {view.crossfade:g} s")
    if extras:
        embed.set_footer(text=" · ".join(extras))
    return Card(embed, controls=True, paused=view.paused, loop=view.loop)
