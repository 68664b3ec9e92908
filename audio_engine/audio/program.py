"""A session's output: one continuous stream made of its tracks.

The ``Program`` turns what its tracks deliver into the session's numbered 20 ms frames
(complete socket packets): one Ogg logical stream for the whole session (one serial,
granules +960 per page, one OpusHead), or PCM; or, for a voice session (``VOICE``),
the bare Opus packets a Discord voice connection sends. Whether the audio is Opus and
whether it is wrapped in Ogg pages are two separate questions of the output format
(``is_opus``, ``is_ogg``). It decides, frame by frame:

- **passthrough** while a single track plays whose packets may go out as they are (no
  filter, volume 1): no decode, no encode;
- **transcoding** otherwise: the tracks' filtered PCM, mixed (two tracks while one fades
  into the next), encoded by the session's encoder.

Every change of course continues the same stream without an edge (``splice``): leaving
passthrough primes a fresh encoder on the audio just heard; returning to it waits until
the filters are gone and the frame grid lines up with the source's packets again.

Live changes redo frames: the manager drops the frames queued after a point (``restart``)
and the tracks' filter chains produce them again with the new settings, crossfaded from
the old at the same track position, so a change is heard within a few frames.

Gapless queues: the producer opens the next track ahead of time (``pending``); the
program places it right after the current one's last sample (``join``), or, with a
crossfade, so that it fades in over the current track's last seconds (planned from the
track's declared duration). A track that follows another never brings its own pre-skip:
the boundary frames are transcoded, and the next track is placed up to 19.98 ms earlier
(a short equal-power overlap) so that its own packets line up with the stream's frames
again and it can return to passthrough once the boundary has played.

Synchronous and not thread-safe: the producer calls it from one worker job at a time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import av
import numpy as np
import numpy.typing as npt

from audio_engine.audio.filters import Filters
from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.opus_encoder import EncoderFactory, OpusFrameEncoder
from audio_engine.audio.splice import (
    DECODER_PREROLL,
    PREDICTION_OFF_FRAMES,
    PacketLog,
    decode_around,
    postfilter_on,
    prime_encoder,
)
from audio_engine.audio.track import FRAME, Mode, Track
from audio_engine.sources.media import OpusInput
from audio_engine.wire.ring import Frame
from protocol import CHANNELS, SAMPLE_RATE, OggOpusWriter, OpusHead, encode_packet

__all__ = ["HOLD_FRAMES", "Program"]

log = logging.getLogger(__name__)

#: Passthrough frames held back at the end of a track that another one follows: they are
#: transcoded to join the next track (which may start up to a frame before the end).
HOLD_FRAMES: Final = 2

Pcm = npt.NDArray[np.int16]


@dataclass(slots=True)
class _Window:
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


class Program:
    """One session's continuous output.

    Args:
        session_id: the session's id (packets carry it).
        output: the session's output format.
        serial: the Ogg stream's serial (Ogg formats).
        encoder_factory: makes a fresh Opus encoder (Opus formats; None for PCM).
    """

    def __init__(self, session_id: str, output: OutputFormat, serial: int,
                 encoder_factory: Callable[[], OpusFrameEncoder] | None) -> None:
        self.session_id = session_id
        self.output = output
        self.serial = serial
        self._factory = encoder_factory if output.is_opus else None
        #: The engine's complexity dial, when the factory follows one.
        self._dial = encoder_factory.dial if isinstance(encoder_factory, EncoderFactory) \
            else None
        self.encoder: OpusFrameEncoder | None = None
        #: The next frame the encoder can encode seamlessly.
        self._encoded_to = 0
        #: Samples of look-ahead of the session's encoder (the listener hears the encoder
        #: input this much later); 0 for PCM.
        self.lookahead = self._factory().lookahead if self._factory is not None else 0
        self.writer: OggOpusWriter | None = None
        self.log: PacketLog | None = PacketLog() if output.is_opus else None
        self.next_index = 0
        #: Tracks placed on the timeline, oldest first (two while one fades into the next).
        self.tracks: list[Track] = []
        #: The next track, opened, not yet placed.
        self.pending: Track | None = None
        #: Joins whose outgoing track has not been retired yet (until the listener was
        #: sent its last frame), oldest first.
        self._windows: list[_Window] = []
        #: Frame index -> the play that begins with that frame.
        self._starts: dict[int, Any] = {}
        #: Set by the producer: a next track is coming (hold the end of the current one).
        self.expect_next = False
        #: Set by the producer: crossfade length between tracks, in samples.
        self.crossfade = 0
        #: Set by the producer: the last frame the listener has been sent.
        self.emitted = -1
        #: The stream has ended (its last frame carried the EOS flag).
        self.finished = False
        #: Tracks that no longer play; the producer closes their sources.
        self.retired: list[Track] = []
        #: The pending next track was dropped with a seek: the producer opens it again.
        self.next_discarded = False
        #: Frame from which the encoder predicts again (after a splice), if it does not.
        self._prediction_at: int | None = None
        #: Frame at which the single track returns to passthrough (planned two frames
        #: ahead, to end our packets the way the source's next one expects).
        self._return_at: int | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def head(self) -> OpusHead | None:
        """The stream's OpusHead (Ogg formats, once started)."""
        return self.writer.head if self.writer is not None else None

    @property
    def header_pages(self) -> bytes:
        return self.writer.header_pages if self.writer is not None else b""

    @property
    def current(self) -> Track:
        """The newest track placed."""
        return self.tracks[-1]

    @property
    def passthrough(self) -> bool:
        """Packets go out as the source sent them."""
        return (len(self.tracks) == 1 and not self._windows
                and self.tracks[0].mode is Mode.PASSTHROUGH)

    def wants(self) -> list[Track]:
        """Tracks whose source should be read for the next frames."""
        wanted = [t for t in self._contributors(self.next_index * FRAME)
                  if not t.source_ended]
        pending = self.pending
        if pending is not None and not pending.source_ended and pending.pending_input < 1.0:
            if self._join_soon():
                wanted.append(pending)
        return wanted

    def is_passthrough_track(self, track: Track) -> bool:
        return self.passthrough and track is self.tracks[0]

    # -- starting --------------------------------------------------------------------------

    def start(self, track: Track) -> None:
        """Start the stream with its first track (passthrough when it can)."""
        if self.output.is_ogg:
            head = (track.source.opus_head if track.opus and track.source.opus_head
                    else OpusHead(pre_skip=self.lookahead))
            self.writer = OggOpusWriter(self.serial, head=head)
        passthrough = track.opus and track.filters.neutral and self.output.is_opus
        track.place(0, passthrough=passthrough)
        track.first_frame = 0
        self.tracks = [track]
        if not passthrough and self._factory is not None:
            self.encoder = self._factory()
            self._encoded_to = 0

    # -- producing -------------------------------------------------------------------------

    def produce(self, inputs: Sequence[tuple[Track, list[av.Packet[av.AudioStream]], bool]]
                ) -> list[Frame]:
        """Feed what was read (per track: packets, and whether its source ended) and
        return every frame that can be made now.

        Raises:
            SourceFailed: a track's audio is corrupt.
        """
        for track, packets, at_end in inputs:
            if track.opus:
                track.feed_packets(track.source.opus_packets(packets))
            else:
                track.feed_pcm(track.source.decode(packets, at_end))
            if at_end:
                track.source_end()
        encoder, dial = self.encoder, self._dial
        if encoder is not None and dial is not None and encoder.complexity != dial.level:
            encoder.set_complexity(dial.level)
        frames: list[Frame] = []
        while (frame := self._step()) is not None:
            frames.append(frame)
        if self.log is not None:
            self.log.trim_before(self.emitted - DECODER_PREROLL)
        if self._starts and min(self._starts) <= self.emitted:
            self._starts = {k: v for k, v in self._starts.items() if k > self.emitted}
        return frames

    def _step(self) -> Frame | None:
        if self.finished or not self.tracks:
            return None
        n = self.next_index
        self._retire(n)
        self._plan_crossfade(n)
        if self.passthrough:
            return self._pass_step(self.tracks[0], n)
        return self._mix_step(n)

    def _pass_step(self, track: Track, n: int) -> Frame | None:
        packet = track.next_packet()
        if packet is None:
            if not track.source_ended:
                return None
            track.passthrough_end(n)
            return self._at_end(n)
        following = self.expect_next or self.pending is not None
        if following and not track.source_ended and track.queued_packets <= HOLD_FRAMES:
            return None  # these may be the track's last packets: they join the next one
        if packet.samples != FRAME or (
                following and track.source_ended and track.queued_packets <= HOLD_FRAMES):
            # A packet of another length, or the end of a track that another follows:
            # transcode from here.
            self._to_transcoding(track, n)
            return self._mix_step(n)
        track.pop_packet()
        last = track.source_ended and not track.queued_packets and not following
        return self._emit(packet.data, packet.position, last=last,
                          samples=packet.keep if last else FRAME)

    def _mix_step(self, n: int) -> Frame | None:
        start, stop = n * FRAME, (n + 1) * FRAME
        current = self.tracks[-1]
        following = self.expect_next or self.pending is not None
        if current.end is not None:
            if self.pending is not None:
                self._join(current, self.pending, None)
                return self._mix_step(n)
            if following and stop > current.end - FRAME:
                return None  # wait for the next track: it may start in this frame
            if not following and current.end <= start:
                return self._end_page()
        contributors = self._contributors(start)
        for track in contributors:
            if not track.covers(stop):
                return None
        if current.end is None and following and not current.covers(stop + FRAME):
            return None  # the track may end within a frame from here: the next one joins
        pcm = self._mix(contributors, start)
        owner = self._owner(n)
        position = owner.position_at(start)
        last = not following and current.end is not None and current.end <= stop
        data = pcm.tobytes() if self._factory is None else self._encode(pcm, n)
        frame = self._emit(data, position, last=last)
        if not last:
            self._towards_passthrough()
        return frame

    def _towards_passthrough(self) -> None:
        """Return the single track to passthrough when it can. The source's packet
        there assumes the post-filter state of the source's previous one: when that one
        had it off, our last two frames are encoded without prediction first."""
        n = self.next_index
        track = self.tracks[0]
        if not track.opus and self._return_at is None:
            return  # not an Opus source: it never passes through
        if self._windows or len(self.tracks) != 1 or track.first_frame > self.emitted:
            self._cancel_return()
            return
        if self._return_at is not None and n >= self._return_at:
            if track.passthrough_from(n):
                self._return_at = None
                self._prediction_at = None
                return
            self._cancel_return()
            return
        if self._return_at is not None or not track.can_pass_from(n + PREDICTION_OFF_FRAMES):
            return
        before = track.source_packet(n + PREDICTION_OFF_FRAMES - 1)
        if (self.encoder is None or not self.encoder.controls_prediction
                or before is None or postfilter_on(before.data) is not False):
            track.passthrough_from(n)
            return
        self.encoder.set_prediction(False)
        self._prediction_at = None
        self._return_at = n + PREDICTION_OFF_FRAMES

    def _cancel_return(self) -> None:
        if self._return_at is not None:
            self._return_at = None
            if self.encoder is not None and self._prediction_at is None:
                self.encoder.set_prediction(True)

    def _at_end(self, n: int) -> Frame | None:
        """The current track's audio is all out (passthrough): join, wait, or end."""
        current = self.tracks[-1]
        if self.pending is not None:
            self._join(current, self.pending, None)
            return self._step()
        if self.expect_next:
            return None
        return self._end_page()

    # -- joining tracks ------------------------------------------------------------------------

    def _join_soon(self) -> bool:
        """Whether the next track will be needed within about a second."""
        if not self.tracks:
            return False
        current = self.tracks[-1]
        if current.source_ended:
            return True
        if self.crossfade <= 0:
            return False
        planned = self._planned_end(current, self.next_index)
        return planned is not None and planned - self.next_index * FRAME <= (
            self.crossfade + 2 * SAMPLE_RATE)

    def _planned_end(self, track: Track, n: int) -> int | None:
        """Encoder-input sample where *track* ends by its declared duration."""
        if track.end is not None:
            return track.end
        duration = track.source.duration
        if not duration:
            return None
        if track.mode is Mode.PASSTHROUGH:
            packet = track.next_packet()
            if packet is None:
                return None
            # The packet's raw time reaches the listener's ear L samples after its
            # encoder input would.
            return n * FRAME + round((duration - packet.position) * SAMPLE_RATE) - self.lookahead
        return track.planned_end()

    def _plan_crossfade(self, n: int) -> None:
        """Start a crossfade into the pending track when the current one is that close
        to its declared end (and the next track has audio ready)."""
        pending = self.pending
        if self.crossfade <= 0 or pending is None:
            return
        if self._windows and self._windows[-1].stop > n * FRAME:
            return  # the current track is still fading in
        if not (pending.pending_input > 0 or pending.source_ended or pending.chain):
            return
        current = self.tracks[-1]
        planned = self._planned_end(current, n)
        if planned is None:
            return
        remaining = planned - n * FRAME
        if remaining > self.crossfade or remaining < 2 * FRAME:
            return
        if current.mode is Mode.PASSTHROUGH:
            if current.next_packet() is None:
                return
            self._to_transcoding(current, n)
        start = n * FRAME + self._alignment(pending, n * FRAME)
        self._join(current, pending, (start, max(0, planned - start)))

    def _alignment(self, track: Track, sample: int) -> int:
        """Samples after *sample* where *track* must start so that its packets fall on
        the stream's frames (0 for a track that is always transcoded)."""
        head = track.source.opus_head
        if not track.opus or head is None:
            return 0
        return (head.pre_skip - self.lookahead - sample) % FRAME

    def _join(self, current: Track, nxt: Track, span: tuple[int, int] | None) -> None:
        """Place *nxt* after *current*: over *span* (start, length) for a crossfade, or
        right at *current*'s end (up to a frame earlier, to align its packets)."""
        if span is None:
            assert current.end is not None
            end = current.end
            overlap = 0
            if nxt.opus and nxt.source.opus_head is not None:
                overlap = (end - nxt.source.opus_head.pre_skip + self.lookahead) % FRAME
            span = (end - overlap, overlap)
        start, length = span
        raw_offset = None
        if nxt.opus and nxt.source.opus_head is not None:
            raw_offset = start + self.lookahead - nxt.source.opus_head.pre_skip
        if nxt.chain is not None and not nxt.placed:
            nxt.rejoin(start, raw_offset)
        else:
            nxt.place(start, raw_offset=raw_offset)
        nxt.first_frame = start // FRAME
        self._starts[nxt.first_frame] = nxt.play
        self.tracks.append(nxt)
        self.pending = None
        self._windows.append(_Window(start, length, current, nxt))
        if self._factory is not None and self.encoder is None:
            self.encoder = self._factory()
        log.debug("%s: next track joins at sample %d (overlap %d)", self.session_id, start,
                  length)

    def _retire(self, n: int) -> None:
        """Drop the outgoing track of a finished join once its last frame was sent
        (until then a change may still redo frames it is in)."""
        while self._windows:
            window = self._windows[0]
            if self.emitted < window.stop_frame or n < window.stop_frame:
                return
            self._windows.pop(0)
            if window.outgoing in self.tracks:
                self.tracks.remove(window.outgoing)
                window.outgoing.close()
                self.retired.append(window.outgoing)

    def _contributors(self, start: int) -> list[Track]:
        """Placed tracks with audio at encoder-input sample *start* or later."""
        gone = {id(w.outgoing) for w in self._windows if start >= w.stop}
        return [t for t in self.tracks if t.placed and id(t) not in gone]

    def _owner(self, n: int) -> Track:
        """The track whose play frame *n* belongs to (for its position)."""
        for track in reversed(self.tracks):
            if track.first_frame <= n:
                return track
        return self.tracks[0]

    # -- making frames -------------------------------------------------------------------

    def _mix(self, tracks: list[Track], start: int) -> Pcm:
        """Frame *start*'s samples: the tracks' audio, each weighted by the equal-power
        fades of the joins it is in (none: it plays as it is)."""
        fading = [w for w in self._windows
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

    def _encode(self, pcm: Pcm, n: int) -> bytes:
        if self.encoder is None or self._encoded_to != n:
            self._prime(n, None)
        assert self.encoder is not None
        if self._prediction_at is not None and n >= self._prediction_at:
            self.encoder.set_prediction(True)
            self._prediction_at = None
        data = self.encoder.encode(pcm.tobytes())
        self._encoded_to = n + 1
        return data

    def _emit(self, data: bytes, position: float, *, last: bool,
              samples: int = FRAME) -> Frame:
        """The next frame. *samples* below 960 trims the stream's last page (its granule
        says where the audio ends, RFC 7845)."""
        n = self.next_index
        start = self._starts.get(n)
        self.next_index += 1
        if last:
            self.finished = True
        if self.log is not None:
            self.log.add(n, data, position)
        writer = self.writer
        if writer is None:
            # PCM in a socket packet; a voice session's Opus packet as it is.
            packet = data if self.output is OutputFormat.VOICE else encode_packet(
                self.session_id, data)
            return Frame(packet, len(data), position, 0, 0, last, n, start)
        page = writer.audio_page(data, samples if last else FRAME, eos=last)
        return Frame(encode_packet(self.session_id, page), len(page), position,
                     writer.granule_position, writer.next_sequence - 1, last, n, start)

    def _end_page(self) -> Frame | None:
        """End the stream after the last frame sent (it did not carry the EOS flag)."""
        self.finished = True
        writer = self.writer
        position = self.tracks[-1].source.position if self.tracks else 0.0
        if writer is None:
            return None  # PCM, voice: the session ends when its last frame has been sent
        page = writer.end_page()
        return Frame(encode_packet(self.session_id, page), len(page), position,
                     writer.granule_position, writer.next_sequence - 1, True, self.next_index)

    def _prime(self, n: int, replaced: bytes | None) -> None:
        """A new encoder that continues the stream before frame *n*."""
        assert self._factory is not None
        before = [f.data for f in self.log.span(n - DECODER_PREROLL, n)] if self.log else []
        _, pcm, end = decode_around(before, replaced, self.lookahead)
        self._new_encoder(n, pcm, end, before)

    def _new_encoder(self, n: int, pcm: Pcm, end: int, before: list[bytes]) -> None:
        assert self._factory is not None
        postfilter = postfilter_on(before[-1]) if before else None
        self.encoder, off = prime_encoder(self._factory, pcm, end, postfilter=postfilter)
        self._encoded_to = n
        self._prediction_at = n + off if off else None
        self._return_at = None

    def _to_transcoding(self, track: Track, n: int) -> None:
        """Leave passthrough at frame *n* (primed encoder, warm chain)."""
        packet = track.next_packet()
        assert packet is not None
        before = [f.data for f in self.log.span(n - DECODER_PREROLL, n)] if self.log else []
        decoder, pcm, end = decode_around(before, packet.data, self.lookahead)
        if self._factory is not None:
            self._new_encoder(n, pcm, end, before)
        track.to_transcoding(n, decoder, pcm, end)
        log.debug("%s: transcoding from frame %d", self.session_id, n)

    # -- live changes ----------------------------------------------------------------------

    def set_filters(self, filters: Filters, *, pending_too: bool = True) -> None:
        """The filters every track plays with from now on (applied by ``restart``)."""
        for track in self.tracks:
            track.filters = filters
        if pending_too and self.pending is not None:
            self.pending.filters = filters

    def restart(self, index: int) -> None:
        """Frames from *index* on were dropped: make them again, with each track's
        current filters (crossfaded from the old output at the same track position).
        *index* must not be before a frame the listener was sent."""
        index = max(index, self.emitted + 1)
        if index > self.next_index:
            index = self.next_index
        self.finished = False
        if self.writer is not None:
            self.writer.rewind(FRAME * index, index + 2)
        self._take_back_joins(index)
        replaced = self.log.get(index) if self.log is not None else None
        if self.encoder is not None and self._encoded_to > index:
            self._prime(index, replaced.data if replaced is not None else None)
        redo = self.log.span(index, self.next_index) if self.log is not None else []
        if self.log is not None:
            self.log.drop_from(index)
        self.next_index = index
        for track in self.tracks:
            if track.mode is Mode.TRANSCODING and track.codec_frame > index:
                # It left passthrough after the cut: it passes its packets again up to
                # there (and leaves again where it must).
                before = redo[: track.codec_frame - index]
                if not track.back_to_passthrough(
                        [OpusInput(f.data, FRAME, f.position) for f in before]):
                    track.rewind_to(index * FRAME)
            elif track.mode is Mode.PASSTHROUGH:
                track.requeue([OpusInput(f.data, FRAME, f.position) for f in redo])
            else:
                track.rewind_to(index * FRAME)
        for track in list(self.tracks):
            if track.mode is Mode.PASSTHROUGH:
                if not track.filters.neutral and track.next_packet() is not None:
                    self._to_transcoding(track, index)
            else:
                track.configure(track.filters)
                track.recollect()

    def _take_back_joins(self, index: int) -> None:
        """A track placed after frame *index* goes back to pending (the frames before
        its start are redone, and may end elsewhere)."""
        while self._windows and self._windows[-1].incoming.first_frame > index:
            window = self._windows[-1]
            incoming = window.incoming
            if not incoming.unplace():
                log.info("%s: the next track could not be taken back; it keeps its place",
                         self.session_id)
                return
            self._windows.pop()
            self.tracks.remove(incoming)
            self._starts.pop(incoming.first_frame, None)
            if self.pending is not None:  # a later one, opened meanwhile: it waits again
                self.pending.close()
                self.retired.append(self.pending)
                self.next_discarded = True
            self.pending = incoming

    def seek(self, index: int, track: Track) -> None:
        """*track*'s source was moved (seek): continue with it alone from frame *index*
        (everything from there was dropped)."""
        self.finished = False
        if self.writer is not None:
            self.writer.rewind(FRAME * index, index + 2)
        replaced = self.log.get(index) if self.log is not None else None
        if self.encoder is not None and self._encoded_to > index:
            self._prime(index, replaced.data if replaced is not None else None)
        if self.log is not None:
            self.log.drop_from(index)
        for other in self.tracks:
            if other is not track:
                other.close()
                self.retired.append(other)
                if other.first_frame > track.first_frame:
                    self.next_discarded = True
        self._starts = {k: v for k, v in self._starts.items() if k < index}
        self.tracks = [track]
        self._windows = []
        self.next_index = index
        passthrough = track.opus and track.filters.neutral and self.output.is_opus
        track.restart(index * FRAME, passthrough=passthrough)
        if not passthrough and self._factory is not None and self.encoder is None:
            self._prime(index, None)

    def close(self) -> None:
        """Release every track's chain (sources are the producer's). Idempotent."""
        for track in [*self.tracks, *([self.pending] if self.pending else [])]:
            track.close()
