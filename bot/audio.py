"""The bridge from the router to discord.py's audio player thread.

``GuildSink`` is the router's sink for one guild (session id = guild id): it
reassembles Ogg and keeps raw Opus frames in a bounded deque. ``GuildAudioSource``
is the ``discord.AudioSource`` discord.py's ``AudioPlayer`` reads from its own
thread every 20 ms: ``deque.popleft`` is atomic, so no lock sits between them.

The source never ends playback: on an underrun it returns an Opus silence frame
(counted), so a hiccup or the gap between two tracks keeps the player running
and the voice connection alive.
"""

from __future__ import annotations

from collections.abc import Callable

import discord

from gateway.sinks import OpusSink
from protocol import OPUS_SILENCE_FRAME

__all__ = ["GuildAudioSource", "GuildSink"]

#: Frames queued before the first one is played (and again after an underrun):
#: 100 ms absorbs the jitter between the engine's clock, the gateway's loop and
#: discord.py's player thread on a busy host; Discord's clients buffer more.
PREBUFFER_FRAMES = 5
#: Frames a guild may have queued: 1 s. Beyond that the oldest are dropped.
SINK_CAPACITY = 50


class GuildSink(OpusSink):
    """The router's sink for one guild's session."""

    kind = "discord"

    def __init__(self) -> None:
        super().__init__(capacity=SINK_CAPACITY)


class GuildAudioSource(discord.AudioSource):
    """Raw 20 ms Opus frames from a ``GuildSink``, for discord.py's player.

    Args:
        sink: where frames come from.
        expecting: tells whether a track should be playing now; silence sent
            while it is counts as an underrun, silence between tracks does not.
        prebuffer: frames to wait for before the first one is played.
    """

    def __init__(self, sink: GuildSink, *, expecting: Callable[[], bool] = lambda: True,
                 prebuffer: int = PREBUFFER_FRAMES) -> None:
        self.sink = sink
        self._expecting = expecting
        self._prebuffer = prebuffer
        self._primed = False
        #: Frames handed to the player, silence frames, and underruns among them.
        self.frames = 0
        self.silence = 0
        self.underruns = 0

    def is_opus(self) -> bool:
        """Frames are already Opus: discord.py sends them as they are."""
        return True

    def read(self) -> bytes:
        """One 20 ms Opus frame (called from the player thread; never blocks)."""
        sink = self.sink
        if not self._primed:
            if len(sink) < self._prebuffer:
                self.silence += 1
                return OPUS_SILENCE_FRAME
            self._primed = True
        frame = sink.pop()
        if frame is None:
            self.silence += 1
            if self._expecting():
                self.underruns += 1
            # Wait for a little buffer again before resuming real audio.
            self._primed = False
            return OPUS_SILENCE_FRAME
        self.frames += 1
        return frame

    def cleanup(self) -> None:
        """Nothing to release: the sink belongs to the guild, not the player."""
