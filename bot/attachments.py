"""``/play file:``: which uploaded files are played, as pure code.

An upload is played like any link: its Discord CDN address goes to the engine, which
applies the same URL policy (and egress proxy) as to anything typed. Before that, the
file must say it is audio (its content type, as Discord reports it) and be no larger
than ``GATEWAY_BOT_MAX_UPLOAD_MB``; anything else is refused in words.
"""

from __future__ import annotations

from typing import Any

from bot.tracks import NotPlayable

__all__ = ["AUDIO_TYPES", "upload_url"]

#: Content types taken as audio besides ``audio/*`` (Ogg files are often reported so).
AUDIO_TYPES = frozenset({"application/ogg"})
_KINDS = "mp3, ogg, opus, flac, wav or m4a"


def _name(attachment: Any) -> str:
    name = str(getattr(attachment, "filename", "") or "the file")
    return name.replace("*", "").replace("`", "")[:80]


def upload_url(attachment: Any, *, max_bytes: int) -> str:
    """The address to play *attachment* (a discord.py ``Attachment``) from.

    Raises:
        NotPlayable: not audio, of an unknown kind, or too large (in words).
    """
    name = _name(attachment)
    kind = str(getattr(attachment, "content_type", "") or "").split(";")[0].strip().lower()
    if not kind:
        raise NotPlayable(f"I can't tell what kind of file **{name}** is; upload an audio "
                          f"file ({_KINDS}).")
    if not (kind.startswith("audio/") or kind in AUDIO_TYPES):
        raise NotPlayable(f"**{name}** is not an audio file ({kind}); upload an audio "
                          f"file ({_KINDS}).")
    size = int(getattr(attachment, "size", 0) or 0)
    if size > max_bytes:
        raise NotPlayable(f"**{name}** is {size / 1_000_000:.1f} MB; I play uploads of up "
                          f"to {max_bytes / 1_000_000:g} MB.")
    url = str(getattr(attachment, "url", "") or "")
    if not url:
        raise NotPlayable(f"Discord gave me no address for **{name}**; upload it again.")
    return url
