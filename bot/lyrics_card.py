"""``/lyrics``'s answer, as pure code: the words of the current track in an embed, the
line sung now marked when they are synced, cut to what an embed holds around it."""

from __future__ import annotations

import discord

from gateway.lyrics import Lyrics

__all__ = ["MAX_DESCRIPTION", "lyrics_embed"]

#: What an embed's description holds (Discord allows 4096 characters).
MAX_DESCRIPTION = 4000
#: The attribution LRCLIB's words come with.
SOURCE = "Lyrics from LRCLIB (lrclib.net)"


def _clean(text: str) -> str:
    """A line with Discord's markdown characters neutralised."""
    for char in "\\*_`~|>":
        text = text.replace(char, f"\\{char}")
    return text


def lyrics_embed(lyrics: Lyrics, *, title: str, position: float | None) -> discord.Embed:
    """The embed for *lyrics* of the track called *title*, at *position* seconds (the
    line sung then is marked, when synced)."""
    heading = f"Lyrics: {lyrics.track_name or title}"
    if lyrics.artist_name:
        heading += f" — {lyrics.artist_name}"
    embed = discord.Embed(title=heading[:256], colour=discord.Colour.purple())
    embed.set_footer(text=SOURCE + (" · synced" if lyrics.synced else ""))
    if lyrics.synced:
        words = [line.text for line in lyrics.lines]
        current = lyrics.line_at(position) if position is not None else None
    else:
        words = lyrics.plain.splitlines()
        current = None
    lines = [f"▶ **{_clean(w)}**" if i == current else (_clean(w) if w.strip() else "")
             for i, w in enumerate(words)]
    embed.description = _window(lines, current)
    return embed


def _window(lines: list[str], current: int | None) -> str:
    """As many *lines* as fit, around *current* (from the top when None), with a mark
    where some were left out."""
    text = "\n".join(lines)
    if len(text) <= MAX_DESCRIPTION:
        return text
    start = 0 if current is None else max(0, current - 5)
    kept: list[str] = []
    size = 0
    for line in lines[start:]:
        if size + len(line) + 1 > MAX_DESCRIPTION - 40:
            break
        kept.append(line)
        size += len(line) + 1
    before = "…\n" if start > 0 else ""
    after = "\n…" if start + len(kept) < len(lines) else ""
    return before + "\n".join(kept) + after
