"""A track's queues: of audio on its way to the stream, one per mode, and of what it
read before it was placed.

- ``SampleQueue`` (transcoding): the PCM the track's filter chain made, placed on the
  program's encoder-input timeline (48 kHz): its first sample is encoder-input sample
  ``start``. The program takes one frame's samples from it at a time (``take``).
- ``PacketQueue`` (passthrough): the source's Opus packets that go out as they are, one
  per output frame, and how much of the last one sent was end trimming;
- ``EarlyInput``: what a next track read ahead, before it was placed (Opus packets or
  decoded audio, whichever its source gives), handed to it whole when it is placed.

The first two are on the per-frame path, so each method does a whole step of the
per-frame work in one call: ``SampleQueue.take`` drops the samples played before a
frame and returns the frame's, and the ``PacketQueue``'s ``extend`` and ``clear`` are
its deque's own (a batch of packets costs no call of ours).

Not thread-safe: their track calls them from one codec job at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

import numpy as np
import numpy.typing as npt

from audio_engine.sources.media import OpusInput, PcmChunk
from protocol import CHANNELS, SAMPLE_RATE, SAMPLES_PER_FRAME

__all__ = ["EarlyInput", "PacketQueue", "Pcm", "SampleQueue"]

FRAME: Final = SAMPLES_PER_FRAME

Pcm = npt.NDArray[np.int16]


class SampleQueue:
    """A FIFO of s16 stereo samples placed on the encoder-input timeline. Not bounded
    here: it holds what the chain made of the track's reads, which the producer's
    refills bound (at most about 1.5 s ahead), and ``take`` drops what was played."""

    def __init__(self) -> None:
        self._blocks: deque[Pcm] = deque()
        #: Samples queued.
        self.size = 0
        #: Encoder-input sample of the first sample queued.
        self.start = 0

    def put(self, first: int, block: Pcm) -> None:
        """Queue *block*, whose first sample is encoder-input sample *first*. The part
        before what is wanted next (redone after a rewind to a frame boundary before
        it) is cut; a block that starts later than that replaces what is queued."""
        expected = self.start + self.size
        if first < expected:
            block = block[expected - first :]
        elif first > expected:
            self.clear()
            self.start = first
        if len(block):
            self._blocks.append(block)
            self.size += len(block)

    def take(self, start: int, count: int, end: int | None) -> Pcm:
        """Samples ``[start, start + count)`` (zeros before the queue's first sample
        and from *end* on, if given); samples before *start* are dropped."""
        if self.start < start:
            dropped = min(start - self.start, self.size)
            left = dropped
            blocks = self._blocks
            while left > 0 and blocks:
                head = blocks[0]
                if len(head) <= left:
                    blocks.popleft()
                    self.size -= len(head)
                    left -= len(head)
                else:
                    blocks[0] = head[left:]
                    self.size -= left
                    left = 0
            self.start += dropped
            if self.size == 0:
                self.start = max(self.start, start)
        lead = self.start - start
        if lead == 0 and (end is None or end >= start + count):
            # The steady state: the samples are queued from *start* on.
            available = self.peek(count)
            if len(available) == count:
                return available
        block = np.zeros((count, CHANNELS), dtype=np.int16)
        if lead >= count:
            return block
        available = self.peek(count - max(lead, 0))
        at = max(lead, 0)
        block[at : at + len(available)] = available
        if end is not None and end < start + count:
            block[max(end - start, 0) :] = 0
        return block

    def peek(self, count: int) -> Pcm:
        """The first *count* samples (fewer if fewer are queued), not removed."""
        parts: list[Pcm] = []
        needed = count
        for block in self._blocks:
            if needed <= 0:
                break
            parts.append(block[:needed])
            needed -= len(parts[-1])
        if not parts:
            return np.zeros((0, CHANNELS), dtype=np.int16)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def clear(self) -> None:
        self._blocks.clear()
        self.size = 0

    def reset(self, start: int) -> None:
        """Empty, its next sample at encoder-input *start*."""
        self._blocks.clear()
        self.size = 0
        self.start = start


class PacketQueue:
    """The Opus packets a track passes through, oldest first. Not bounded here: the
    producer's refills bound the reads (at most about 1.5 s ahead)."""

    def __init__(self) -> None:
        self._packets: deque[OpusInput] = deque()
        #: Samples of the last packet sent that are not audio (end trimming).
        self.trimmed = 0
        #: Queue *packets* (a batch read): the deque's own method, so a batch costs no
        #: call of ours.
        self.extend: Callable[[Iterable[OpusInput]], None] = self._packets.extend
        #: Empty it (the deque's own method too).
        self.clear: Callable[[], None] = self._packets.clear

    @property
    def size(self) -> int:
        return len(self._packets)

    def first(self) -> OpusInput | None:
        """The next packet, not removed."""
        return self._packets[0] if self._packets else None

    def pop(self) -> OpusInput:
        """Remove the next packet, to send it."""
        packet = self._packets.popleft()
        self.trimmed = packet.samples - packet.keep
        return packet

    def whole_frames(self, ended: bool) -> list[OpusInput]:
        """Remove and return the packets that are whole 20 ms frames to send as they
        are, stopping before one that is not, and keeping the last packet of an *ended*
        source (its end is the program's to decide)."""
        packets = self._packets
        keep = 1 if ended else 0
        run: list[OpusInput] = []
        while len(packets) > keep:
            packet = packets[0]
            if packet.samples != FRAME or packet.keep != FRAME:
                break
            run.append(packets.popleft())
        if run:
            self.trimmed = 0
        return run

    def requeue(self, packets: list[OpusInput]) -> None:
        """Put packets that were sent, then dropped, back in front."""
        self._packets.extendleft(reversed(packets))

    def drain(self) -> list[OpusInput]:
        """Remove and return every packet (not sent: the end trimming stays)."""
        packets = list(self._packets)
        self._packets.clear()
        return packets


class EarlyInput:
    """What a track read before it was placed. Not bounded here: the program stops
    wanting a next track's reads once it holds a second (``Program.wants``), so it
    holds about two at most."""

    def __init__(self) -> None:
        #: Opus packets (a passthrough-capable source).
        self.packets: list[OpusInput] = []
        #: Decoded audio (any other source).
        self.pcm: list[PcmChunk] = []

    @property
    def seconds(self) -> float:
        """Seconds of audio held."""
        if self.packets:
            return sum(p.samples for p in self.packets) / SAMPLE_RATE
        return sum(len(c.pcm) for c in self.pcm) / (4 * SAMPLE_RATE)

    def take(self) -> tuple[list[OpusInput], list[PcmChunk]]:
        """Remove and return everything held: (packets, pcm)."""
        packets, pcm = self.packets, self.pcm
        self.packets, self.pcm = [], []
        return packets, pcm
