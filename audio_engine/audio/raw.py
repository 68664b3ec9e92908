"""A passthrough-capable track's *raw* timeline: where its own Opus packets sit on the
listener's timeline, their decoding, and the recent packets that let it pass them
through again.

Raw samples are the track's packets decoded with nothing trimmed (packet ``j`` is raw
samples ``[960 j, 960 j + 960)``); raw sample 0 goes to decoded sample ``offset`` (the
listener's timeline: the encoder input delayed by the encoder's look-ahead ``L``). The
packets can go out as they are exactly when ``offset`` is a whole number of frames and
the audio has not moved in time: output frame ``n`` *is* raw packet
``(960 n - offset) / 960``. While the track is transcoded, its packets are decoded here
(one decoder, so that the audio stays on the source's packet grid) and the recent ones
are kept, so that the track can return to passthrough at a frame boundary, or take
back the frames a redo dropped.

Not thread-safe: its track calls it from one codec job at a time.
"""

from __future__ import annotations

from collections import deque
from typing import Final, NamedTuple

from audio_engine.audio.codec import OpusDecodeError, RawOpusDecoder
from audio_engine.sources.media import MAX_CONSECUTIVE_DECODE_ERRORS, OpusInput, SourceFailed
from protocol import SAMPLE_RATE, SAMPLES_PER_FRAME

__all__ = ["RawTimeline"]

FRAME: Final = SAMPLES_PER_FRAME
#: Decoded packets kept to return to passthrough (about 2 s): more than a chain holds
#: back (its loudness hold is 0.5 s) plus a batch.
_RECENT_PACKETS: Final = 96


class _Raw(NamedTuple):
    """A decoded packet: its raw index (samples) and the packet, to send it as it is if
    the track returns to passthrough."""

    start: int
    packet: OpusInput


class RawTimeline:
    """A track's raw timeline (see the module docstring). Its attributes are read by its
    track; they change only through its methods."""

    def __init__(self) -> None:
        #: Decodes the packets while the track is transcoded (None in passthrough).
        self.decoder: RawOpusDecoder | None = None
        #: Decoded (listener's) sample of raw sample 0.
        self.offset = 0
        #: Raw samples decoded since the placement.
        self.count = 0
        #: Raw samples still to drop before the chain's input begins.
        self.skip = 0
        #: Track time of raw sample 0.
        self.origin = 0.0
        self._recent: deque[_Raw] = deque(maxlen=_RECENT_PACKETS)
        #: Every packet decoded since the placement was one 20 ms frame.
        self.whole_frames = True
        self._decode_errors = 0

    def clear(self) -> None:
        """Forget the packets decoded (a new placement)."""
        self._recent.clear()
        self.whole_frames = True
        self._decode_errors = 0

    def place(self, offset: int, chain_start: int, origin: float) -> None:
        """Raw sample 0 goes to decoded sample *offset* and is at track time *origin*;
        the chain's input begins at decoded sample *chain_start* (the raw samples
        before it are dropped)."""
        self.offset = offset
        self.count = 0
        self.skip = chain_start - offset
        self.origin = origin

    def move(self, offset: int) -> None:
        """The track is placed again (taken back before it was heard): raw sample 0 goes
        to decoded sample *offset*; what was decoded stays."""
        self.offset = offset

    def start_decoding(self) -> None:
        """The track is transcoded from its placement: a fresh decoder."""
        self.decoder = RawOpusDecoder()

    def resume(self, decoder: RawOpusDecoder, first_raw: int, first: OpusInput) -> None:
        """Decode again after passthrough: *decoder* has just decoded the packets sent,
        then *first*, the first packet not sent, which is raw sample *first_raw*."""
        self.decoder = decoder
        self.origin = first.position - first_raw / SAMPLE_RATE
        self._recent.clear()
        self._recent.append(_Raw(first_raw, first))
        self.count = first_raw + first.samples
        self.skip = 0
        self.whole_frames = first.samples == FRAME

    def forget(self) -> None:
        """The track passes its packets through again, or closes: no decoder, nothing
        kept."""
        self.decoder = None
        self._recent.clear()

    def decode(self, items: list[OpusInput]) -> bytes:
        """Decode *items* onto the raw timeline; returns the part the chain takes (s16
        stereo), which may be empty.

        Raises:
            SourceFailed: ``MAX_CONSECUTIVE_DECODE_ERRORS`` packets in a row could not be
                decoded (each one before that decodes as silence).
        """
        return b"".join(piece for item in items if (piece := self._decode(item)))

    def _decode(self, item: OpusInput) -> bytes:
        assert self.decoder is not None
        try:
            data = self.decoder.decode(item.data)
            self._decode_errors = 0
        except OpusDecodeError as exc:
            self._decode_errors += 1
            if self._decode_errors >= MAX_CONSECUTIVE_DECODE_ERRORS:
                raise SourceFailed(
                    f"the audio is corrupt ({self._decode_errors} undecodable packets in a row)"
                ) from exc
            data = bytes(item.samples * 4)
        if item.keep < item.samples:
            data = data[: item.keep * 4]  # the stream's end: the rest is padding
        self._recent.append(_Raw(self.count, item))
        if item.samples != FRAME:
            self.whole_frames = False
        samples = len(data) // 4
        self.count += samples
        if self.skip >= samples:
            self.skip -= samples
            return b""
        if self.skip:
            data = data[self.skip * 4 :]
            self.skip = 0
        return data

    def packet_at(self, frame: int) -> OpusInput | None:
        """The source's own packet for output frame *frame*, if it is kept."""
        wanted = frame * FRAME - self.offset
        return next((raw.packet for raw in self._recent if raw.start == wanted), None)

    def packets_from(self, frame: int) -> list[OpusInput] | None:
        """The kept packets from the one for output frame *frame* on, or None unless
        they are all kept (none decoded yet from there is fine: an empty list)."""
        wanted = frame * FRAME - self.offset
        kept = [raw for raw in self._recent if raw.start >= wanted]
        if kept and kept[0].start != wanted:
            return None
        if not kept and wanted != self.count:
            return None
        return [raw.packet for raw in kept]

    def all_since(self, frame: int) -> list[OpusInput] | None:
        """Every packet decoded since the one for output frame *frame* (where decoding
        resumed), or None if the first of them is no longer kept."""
        first = frame * FRAME - self.offset
        if not self._recent or self._recent[0].start != first:
            return None
        return [raw.packet for raw in self._recent]
