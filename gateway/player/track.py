"""What a queue holds: tracks, and the record of one that could not be played."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Failure", "Track"]


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True, slots=True)
class Track:
    """One queue entry (the same URL twice is two entries, each with its own id)."""

    url: str
    title: str = ""
    duration: float | None = None
    requested_by: str = ""
    id: str = field(default_factory=_new_id)
    #: A picture of the track (an http(s) URL from the catalogue), or "".
    thumbnail: str = ""

    @property
    def label(self) -> str:
        """Title, or the URL when the title is unknown."""
        return self.title or self.url

    def as_dict(self) -> dict[str, Any]:
        """Plain values (persistence, WebSocket messages)."""
        return {"id": self.id, "url": self.url, "title": self.title,
                "duration": self.duration, "requested_by": self.requested_by,
                "thumbnail": self.thumbnail}

    def again(self) -> Track:
        """The same track as a new queue entry (its own id)."""
        return dataclasses.replace(self, id=_new_id())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Track:
        """Inverse of ``as_dict``."""
        duration = data.get("duration")
        return cls(
            url=str(data["url"]),
            title=str(data.get("title") or ""),
            duration=float(duration) if isinstance(duration, int | float) else None,
            requested_by=str(data.get("requested_by") or ""),
            id=str(data.get("id") or _new_id()),
            thumbnail=str(data.get("thumbnail") or ""),
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """A track that could not be played.

    *message* is the engine's own text (fronts translate it for people);
    *serial* counts failures of this player, so two identical failures in a row
    are still told apart; *kept* is the track that went on playing instead (a
    failed "play now"), or None when the queue moved on.
    """

    track: Track
    message: str
    serial: int
    kept: Track | None = None
