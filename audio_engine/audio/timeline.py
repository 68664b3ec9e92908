"""Where a session's tracks sit on its encoder-input timeline, and how they sound
together there (pure: reads tracks, changes nothing).

A ``Program`` places each track at an encoder-input sample; a track that follows
another joins it over a ``Window`` (an equal-power crossfade, or a short overlap that
puts the next track's own packets on the stream's frame grid). These functions answer
the program's questions about that timeline: which tracks sound from a sample on
(``contributors``), whose play a frame belongs to (``owner``), a frame's mixed samples
(``mix``), where a next track must start so that its packets fall on the frames
(``alignment``, ``join_span``, ``raw_offset``), where a track ends by its declared
duration (``planned_end``, ``join_soon``), and whether a next track may be placed yet
(``unread``, ``without_audio``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audio_engine.audio.splice import Pcm
from audio_engine.audio.track import FRAME, Mode, Track
from protocol import CHANNELS, SAMPLE_RATE

__all__ = [
    "Window",
    "alignment",
    "contributors",
    "join_soon",
    "join_span",
    "mix",
    "owner",
    "planned_end",
    "raw_offset",
    "unread",
    "without_audio",
]


@dataclass(slots=True)
class Window:
    """The stretch of encoder input where ``outgoing`` fades out and ``incoming`` in
    (equal power); after it, only ``incoming`` plays."""

    start: int
    length: int
    outgoing: Track
    incoming: Track

    @property
    def stop(self) -> int:
        return self.start + self.length

    @property
    def stop_frame(self) -> int:
        """The first frame with nothing of ``outgoing``."""
        return -(-self.stop // FRAME)


def contributors(tracks: Sequence[Track], windows: Sequence[Window], start: int
                 ) -> list[Track]:
    """Placed *tracks* with audio at encoder-input sample *start* or later (those that
    faded out of a window before *start* have none)."""
    gone = {id(w.outgoing) for w in windows if start >= w.stop}
    return [t for t in tracks if t.placed and id(t) not in gone]


def owner(tracks: Sequence[Track], n: int) -> Track:
    """The track whose play frame *n* belongs to (for its position): the newest that
    began at or before it."""
    for track in reversed(tracks):
        if track.first_frame <= n:
            return track
    return tracks[0]


def mix(tracks: Sequence[Track], windows: Sequence[Window], start: int) -> Pcm:
    """Frame *start*'s samples: the tracks' audio, each weighted by the equal-power
    fades of the *windows* it is in (none: it plays as it is)."""
    fading = [w for w in windows
              if w.length > 0 and w.start < start + FRAME and start < w.stop]
    if len(tracks) == 1 and not fading:
        return tracks[0].take(start, FRAME)
    total = np.zeros((FRAME, CHANNELS), dtype=np.float32)
    samples = np.arange(start, start + FRAME, dtype=np.float64)
    for track in tracks:
        block = track.take(start, FRAME).astype(np.float32)
        for window in fading:
            if track is not window.outgoing and track is not window.incoming:
                continue
            x = np.clip((samples - window.start) / window.length, 0.0, 1.0)
            angle = 0.5 * math.pi * x
            weight = np.cos(angle) if track is window.outgoing else np.sin(angle)
            block *= weight.astype(np.float32).reshape(-1, 1)
        total += block
    return np.clip(np.rint(total), -32768, 32767).astype(np.int16)


def alignment(track: Track, sample: int, lookahead: int) -> int:
    """Samples after *sample* where *track* must start so that its packets fall on
    the stream's frames (0 for a track that is always transcoded); *lookahead* is
    the session encoder's."""
    head = track.source.opus_head
    if not track.opus or head is None:
        return 0
    return (head.pre_skip - lookahead - sample) % FRAME


def join_span(current: Track, nxt: Track, lookahead: int) -> tuple[int, int]:
    """(start, length) of *nxt* joining right at *current*'s end: up to a frame
    earlier, overlapping, so that its packets fall on the stream's frames."""
    assert current.end is not None
    end = current.end
    overlap = 0
    if nxt.opus and nxt.source.opus_head is not None:
        overlap = (end - nxt.source.opus_head.pre_skip + lookahead) % FRAME
    return end - overlap, overlap


def raw_offset(track: Track, start: int, lookahead: int) -> int | None:
    """The decoded sample of *track*'s raw sample 0 when it starts at encoder-input
    *start* (None: it has no raw timeline)."""
    if track.opus and track.source.opus_head is not None:
        return start + lookahead - track.source.opus_head.pre_skip
    return None


def planned_end(track: Track, n: int, lookahead: int) -> int | None:
    """Encoder-input sample where *track* ends by its declared duration (seen from
    frame *n*), or None if unknown."""
    if track.end is not None:
        return track.end
    duration = track.source.duration
    if not duration:
        return None
    if track.mode is Mode.PASSTHROUGH:
        packet = track.packets.first()
        if packet is None:
            return None
        # The packet's raw time reaches the listener's ear L samples after its
        # encoder input would.
        return n * FRAME + round((duration - packet.position) * SAMPLE_RATE) - lookahead
    return track.planned_end()


def join_soon(tracks: Sequence[Track], crossfade: int, n: int, lookahead: int) -> bool:
    """Whether the track after *tracks*' newest will be needed within about a second
    of frame *n* (with a *crossfade* of that many samples)."""
    if not tracks:
        return False
    current = tracks[-1]
    if current.source_ended:
        return True
    if crossfade <= 0:
        return False
    planned = planned_end(current, n, lookahead)
    return planned is not None and planned - n * FRAME <= crossfade + 2 * SAMPLE_RATE


def unread(track: Track | None) -> bool:
    """A next *track* that has given no input yet: it is read before it is placed, so
    that one without audio is never placed (``without_audio``)."""
    return (track is not None and not track.source_ended and track.chain is None
            and track.early.seconds <= 0)


def without_audio(track: Track | None) -> bool:
    """A next *track* whose source ended without a single audio frame (a text page
    under an audio name): it is never placed."""
    return (track is not None and track.source_ended and track.chain is None
            and not track.source.audio_frames)
