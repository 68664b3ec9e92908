"""One play inside a session's output: its source, and how its audio reaches the stream.

A ``Track`` takes what the producer read from its ``MediaSource`` and makes it
available to the session's ``Program`` in one of two modes:

- **passthrough**: the source's own Opus packets, one per output frame, untouched
  (its ``PacketQueue``, ``packets``, which the program sends from);
- **transcoding**: PCM through the track's ``FilterChain``, placed on the program's
  sample timeline (a ``SampleQueue``), for the program to mix and encode.

The track decides what goes into its queues and moves between the two modes; the
queues themselves are ``queues``'.

Timelines (all at 48 kHz): the program's *encoder input* timeline ``u`` (output frame
``n`` is ``u`` in ``[960 n, 960 n + 960)``) and the listener's *decoded* timeline, which
is the encoder input delayed by the encoder's look-ahead ``L``. A passthrough-capable
track also has its *raw* timeline (``RawTimeline``, ``raw``): its packets decoded with
nothing trimmed, placed at a decoded sample. Its packets can go out as they are exactly
when that offset is a whole number of frames and the chain has not moved the audio in
time (no tempo change since the placement). So a transcoded passthrough-capable track
feeds its chain the raw audio ``L`` samples ahead of the frame grid, which lets it
return to passthrough when its filters are cleared.

Not thread-safe: the program calls it from one codec job at a time.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, Final

import numpy as np

from audio_engine.audio.codec import RawOpusDecoder
from audio_engine.audio.filters import FilterChain, FilteredFrame, Filters, RewindError
from audio_engine.audio.queues import EarlyInput, PacketQueue, Pcm, SampleQueue
from audio_engine.audio.raw import RawTimeline
from audio_engine.sources.media import MediaSource, OpusInput, PcmChunk
from protocol import CHANNELS, SAMPLE_RATE, SAMPLES_PER_FRAME

__all__ = ["CHAIN_WARMUP_FRAMES", "FRAME", "Mode", "Track"]

log = logging.getLogger(__name__)

FRAME: Final = SAMPLES_PER_FRAME
#: Frames of audio already heard that a chain created mid-track is fed before the first
#: frame it produces for real (60 ms): the new filters warm up on them and crossfade in.
CHAIN_WARMUP_FRAMES: Final = 3

class Mode(StrEnum):
    """How a track's audio reaches the stream."""

    PASSTHROUGH = "passthrough"
    TRANSCODING = "transcoding"


def _pcm(data: bytes) -> Pcm:
    return np.frombuffer(data, dtype=np.int16).reshape(-1, CHANNELS)


class Track:
    """One play: its source, mode, filter chain and placement on the output timeline.

    Args:
        play: what the program's frames carry when this track starts (the session's
            record of the play); opaque here.
        source: the opened source.
        filters: the filters to play it with (volume and default loudness included).
        lookahead: the encoder's look-ahead ``L`` (0 for PCM output).
        passthrough_ok: whether this output can take Opus packets as they are.
        replaces: see the attribute.
    """

    def __init__(self, play: Any, source: MediaSource, filters: Filters, *, lookahead: int,
                 passthrough_ok: bool, replaces: bool = False) -> None:
        self.play = play
        #: A next track that replaces the current one as soon as it has audio ("play
        #: now"), instead of following it.
        self.replaces = replaces
        self.source = source
        self.filters = filters
        self.lookahead = lookahead
        #: The source's packets are 48 kHz stereo Opus that may go out as they are.
        self.opus = source.opus_head is not None and passthrough_ok
        self.mode = Mode.TRANSCODING
        #: Placed on the output timeline (the first track at once, the next one when it
        #: joins).
        self.placed = False
        #: The source has no more audio (its last packets have been read).
        self.source_ended = False
        #: Encoder-input sample where the track's audio ends, once known.
        self.end: int | None = None
        #: The output frame the track's play begins with.
        self.first_frame = 0
        #: The output frame from which it is transcoded after passing packets through
        #: (-1: transcoded since its placement).
        self.codec_frame = -1

        #: The packets it passes through as they are (passthrough).
        self.packets = PacketQueue()

        # transcoding
        self.chain: FilterChain | None = None
        #: Encoder-input sample of chain output sample 0.
        self.chain_base = 0
        #: Track time of chain input sample 0 (to check the chain kept the time grid).
        self._chain_origin = 0.0
        self._out = SampleQueue()
        self._flushed = False

        # the raw timeline (passthrough-capable tracks)
        self._raw = RawTimeline()

        #: Input read before the track was placed (a next track read ahead).
        self.early = EarlyInput()

    # -- what the program asks -------------------------------------------------------

    @property
    def tempo(self) -> float:
        """Track seconds per output second now."""
        return self.chain.tempo if self.chain is not None else 1.0

    @property
    def exhausted(self) -> bool:
        """Every sample of the track has been made available (its end is known)."""
        return self.end is not None

    def requeue(self, packets: list[OpusInput]) -> None:
        """Put packets that were sent as they are, then dropped, back in front."""
        self.packets.requeue(packets)
        if self.source_ended:
            self.end = None

    def covers(self, stop: int) -> bool:
        """Whether every sample before *stop* (encoder input) is available."""
        if self.end is not None and self.end <= stop:
            return True
        out = self._out
        return out.start + out.size >= stop

    def take(self, start: int, count: int) -> Pcm:
        """Samples ``[start, start + count)`` of the track on the encoder-input timeline
        (zeros before its placement and after its end); earlier samples are dropped."""
        return self._out.take(start, count, self.end)

    def position_at(self, sample: int) -> float:
        """Track time at encoder-input *sample* (transcoding)."""
        if self.chain is None:
            return self._raw.origin
        index = max(0, sample - self.chain_base)
        return self.chain.positions.track_time(index)

    def planned_end(self) -> int | None:
        """Encoder-input sample where the track should end by its declared duration
        (for a crossfade planned ahead), or None if the duration is unknown."""
        duration = self.source.duration
        if not duration or self.chain is None:
            return None
        return self.chain_base + self.chain.positions.output_index(duration)

    # -- feeding -----------------------------------------------------------------------

    def feed_packets(self, items: list[OpusInput]) -> None:
        """Opus packets read from a passthrough-capable source."""
        if not self.placed:
            self.early.packets.extend(items)
        elif self.mode is Mode.PASSTHROUGH:
            self.packets.extend(items)
        else:
            self._decode_all(items)
            self._collect()

    def feed_pcm(self, chunks: list[PcmChunk]) -> None:
        """Decoded audio from any other source."""
        if not self.placed:
            self.early.pcm.extend(chunks)
            return
        assert self.chain is not None
        if chunks:
            # One push per batch: the chain's work per call is the same for 20 ms or 500.
            self._out_append(self.chain.push(b"".join(chunk.pcm for chunk in chunks)))

    def source_end(self) -> None:
        """The source has no more audio: drain the chain, so the track's end is known."""
        self.source_ended = True
        if not self.placed:
            return
        if self.mode is Mode.PASSTHROUGH:
            return
        self._finish_chain()

    def passthrough_end(self, frame: int) -> None:
        """In passthrough, the last packet went out as frame ``frame - 1``."""
        self.end = frame * FRAME - self.packets.trimmed - self.lookahead

    # -- placement ---------------------------------------------------------------------

    def place(self, start: int, *, raw_offset: int | None = None,
              passthrough: bool = False) -> None:
        """Start the track at encoder-input sample *start*, with what was read so far.

        A passthrough-capable track's raw sample 0 goes to decoded sample *raw_offset*:
        by default *start* (a frame boundary), which puts its own pre-skip where a
        stream's head would (the first track, or a restart after a seek); a track
        joining another is placed so that its audio begins right after the other's.
        *passthrough* sends its packets as they are (*start* a frame boundary, default
        *raw_offset*).
        """
        self.placed = True
        self.end = None
        self.codec_frame = -1
        self._flushed = False
        self._out.reset(start)
        self.packets.clear()
        raw = self._raw
        raw.clear()
        early_packets, early_pcm = self.early.take()
        if self.opus:
            raw.place(start if raw_offset is None else raw_offset, start + self.lookahead,
                      early_packets[0].position if early_packets else self.source.position)
        if passthrough and self.opus:
            self._to_passthrough(early_packets)
            return
        self.mode = Mode.TRANSCODING
        if self.opus:
            origin = raw.origin + raw.skip / SAMPLE_RATE
        else:
            origin = early_pcm[0].position if early_pcm else self.source.position
        self._new_chain(self.filters, origin, start)
        if self.opus:
            raw.start_decoding()
            self._decode_all(early_packets)
            self._collect()
        else:
            self.feed_pcm(early_pcm)
        if self.source_ended:
            self._finish_chain()

    def unplace(self) -> bool:
        """Take back a placement whose frames were all dropped (a change redid the frames
        before the track joined): the track keeps its chain, rewound to its first frame,
        and joins again later. False if it cannot (its first frames left the chain's
        history, or it already passes packets through)."""
        if self.mode is Mode.PASSTHROUGH or self.chain is None:
            return False
        try:
            self.chain.rewind(0)
        except RewindError:
            return False
        self._out.clear()
        self.placed = False
        self.end = None
        return True

    def rejoin(self, start: int, raw_offset: int | None) -> None:
        """Place a track taken back by ``unplace`` again, at encoder-input *start*."""
        assert self.chain is not None and not self.placed
        self.placed = True
        self.chain_base = start
        self._out.start = start
        if self.opus:
            self._raw.move(start if raw_offset is None else raw_offset)
        early_packets, early_pcm = self.early.take()
        self._decode_all(early_packets)
        if early_pcm:
            self._out_append(self.chain.push(b"".join(chunk.pcm for chunk in early_pcm)))
        self._collect()
        if self.source_ended and not self._flushed:
            self._finish_chain()

    # -- mode changes ------------------------------------------------------------------

    def to_transcoding(self, frame: int, decoder: RawOpusDecoder, pcm: Pcm, end: int) -> None:
        """Leave passthrough at output frame *frame*.

        *decoder* has just decoded the packets sent before *frame* and then the first
        packet not sent (this track's next packet, consumed here): that audio is *pcm*,
        and *end* is where in it the encoder input of *frame* begins (``L`` samples into
        that packet). The chain starts with no filter on the last frames before *frame*
        and fades to the track's filters at *frame*, so the change has no edge.
        """
        assert self.opus and self.mode is Mode.PASSTHROUGH and self.packets.size
        self.mode = Mode.TRANSCODING
        self.codec_frame = frame
        pending = self.packets.drain()
        first = pending.pop(0)
        first_raw = frame * FRAME - self._raw.offset
        warm = min(CHAIN_WARMUP_FRAMES, end // FRAME) * FRAME
        origin = first.position + (self.lookahead - warm) / SAMPLE_RATE
        self._new_chain(Filters(), origin, frame * FRAME - warm)
        assert self.chain is not None
        if warm:
            self.chain.push(pcm[end - warm : end].tobytes())  # heard already: warm-up only
        self._out.reset(frame * FRAME)
        self.chain.configure(self.filters)
        self._out_append(self.chain.push(pcm[end:].tobytes()))
        self._raw.resume(decoder, first_raw, first)
        self._decode_all(pending)
        self._collect()
        if self.source_ended:
            self._finish_chain()

    def passthrough_from(self, frame: int) -> bool:
        """Return to passthrough at output frame *frame* if the track can: its chain
        changes nothing, the audio kept the source's frame grid (no tempo change since
        the placement), and the packet for that frame is kept."""
        kept = self._passthrough_packets(frame)
        if kept is None:
            return False
        self._to_passthrough(kept)
        return True

    def can_pass_from(self, frame: int) -> bool:
        """Whether ``passthrough_from(frame)`` would succeed now."""
        return self._passthrough_packets(frame) is not None

    def source_packet(self, frame: int) -> OpusInput | None:
        """The source's own packet for output frame *frame*, if it is kept."""
        return self._raw.packet_at(frame)

    def _passthrough_packets(self, frame: int) -> list[OpusInput] | None:
        chain = self.chain
        if not self.opus or self.mode is not Mode.TRANSCODING or chain is None:
            return None
        raw = self._raw
        if not chain.passthrough or not raw.whole_frames or raw.offset % FRAME:
            return None
        index = frame * FRAME - self.chain_base
        expected = self._chain_origin + index / SAMPLE_RATE
        if index < 0 or abs(chain.positions.track_time(index) - expected) > 0.5 / SAMPLE_RATE:
            return None  # a tempo change moved the audio off the source's frame grid
        return raw.packets_from(frame)

    def back_to_passthrough(self, sent_then_dropped: list[OpusInput]) -> bool:
        """Undo ``to_transcoding``: the frames from where the track left passthrough
        were dropped. It passes packets again: *sent_then_dropped* (the dropped frames
        before that point), then every packet decoded since. False (nothing done) if
        those packets are no longer all kept."""
        assert self.mode is Mode.TRANSCODING and self.codec_frame >= 0
        decoded = self._raw.all_since(self.codec_frame)
        if decoded is None:
            return False
        self._to_passthrough(sent_then_dropped + decoded)
        return True

    # -- live changes ------------------------------------------------------------------

    def configure(self, filters: Filters) -> None:
        """Play with *filters* from the next sample produced (a crossfade)."""
        self.filters = filters
        if self.chain is not None:
            self.chain.configure(filters)
            self._collect()

    def rewind_to(self, sample: int) -> bool:
        """Produce the audio from encoder-input *sample* on again (everything after it
        was dropped). False if the chain no longer has it (a change then applies from
        the next sample produced)."""
        chain = self.chain
        if chain is None or self.mode is not Mode.TRANSCODING:
            return True
        frame = min(max(0, (sample - self.chain_base) // FRAME), chain.next_index)
        if frame < chain.next_index:
            try:
                chain.rewind(frame)
            except RewindError:
                log.info("%s: a change reaches back further than the filter history",
                         self.source.target.title or "track")
                return False
            if self._flushed:
                self.end = None
        self._out.reset(self.chain_base + frame * FRAME)
        return True

    def recollect(self) -> None:
        """Collect what the chain redoes after ``rewind_to`` (and ``configure``)."""
        self._collect()

    def restart(self, start: int, *, passthrough: bool) -> None:
        """After a seek of the source: start over at encoder-input *start* (a frame
        boundary), with a fresh chain (the filters are kept)."""
        self.source_ended = False
        self._close_chain()
        self.early.take()
        self.place(start, passthrough=passthrough)

    def close(self) -> None:
        """Release the chain. Idempotent (the source is closed by the producer)."""
        self._close_chain()
        self._raw.forget()
        self.packets.clear()
        self._out.clear()

    # -- internals -----------------------------------------------------------------------

    def _to_passthrough(self, packets: list[OpusInput]) -> None:
        """Pass *packets*, then what is read next, through as they are: no chain, nothing
        decoded, no samples queued; the end is known again when the last packet has
        gone out."""
        self._close_chain()
        self.mode = Mode.PASSTHROUGH
        self.codec_frame = -1
        self._flushed = False
        self.end = None
        self._raw.forget()
        self._out.clear()
        self.packets.clear()
        self.packets.extend(packets)

    def _new_chain(self, filters: Filters, origin: float, start: int) -> None:
        self._close_chain()
        self.chain = FilterChain(filters, position=origin)
        self.chain_base = start
        self._chain_origin = origin
        self._out.start = start

    def _close_chain(self) -> None:
        if self.chain is not None:
            self.chain.close()
            self.chain = None

    def _decode_all(self, items: list[OpusInput]) -> None:
        """Decode packets onto the raw timeline and push what the chain takes, at once."""
        assert self.chain is not None
        data = self._raw.decode(items)
        if data:
            self._out_append(self.chain.push(data))

    def _collect(self) -> None:
        """Take the frames the chain has ready (after a flush: the ones it redid)."""
        if self.chain is None:
            return
        if not self._flushed:
            self._out_append(self.chain.push())
            return
        frames = self.chain.flush()
        if frames:
            self._out_append(frames)
            self._set_end()

    def _finish_chain(self) -> None:
        assert self.chain is not None
        self._flushed = True
        self._out_append(self.chain.flush())
        self._set_end()

    def _set_end(self) -> None:
        assert self.chain is not None
        self.end = self.chain_base + self.chain.next_index * FRAME - self.chain.padding

    def _out_append(self, frames: list[FilteredFrame]) -> None:
        """Queue chain frames; frames before what is wanted (redone after a rewind to
        a frame boundary before the wanted sample) are cut to it."""
        if not frames:
            return
        self._out.put(self.chain_base + frames[0].index * FRAME,
                      _pcm(b"".join(f.pcm for f in frames)))
