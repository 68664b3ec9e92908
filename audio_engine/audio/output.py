"""A session's output stream: its numbered frames, their Ogg pages, and the encoder
that carries the stream across every change of course.

The ``Program`` decides what each frame is (a track's packet as it is, or the tracks'
mixed PCM); the ``OutputStream`` makes it the session's next frame:

- it numbers the frames and wraps each in one Ogg page (one logical stream for the
  whole session: one serial, granules +960 per page, one OpusHead) and a socket
  packet, or, for PCM, in a bare packet; a voice session's frames (``VOICE``) are the
  bare Opus packets its Discord voice connection sends (Opus, but no Ogg page and no
  socket packet);
- it keeps the packets it made (``PacketLog``) back to ``DECODER_PREROLL`` frames
  before the listener's, so that a new encoder can start from the audio just heard;
- it owns the session's encoder and its splices (``splice``): leaving passthrough
  primes a fresh encoder on the last packets sent; returning to it ends our packets
  the way the source's next one expects (no prediction for the last two frames when
  that packet has no post-filter); a redo rewinds the numbering, the pages and the
  encoder to the frame it starts from.

Synchronous and not thread-safe, like the program that owns it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from audio_engine.audio.codec import EncoderFactory, OpusFrameEncoder
from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.splice import (
    DECODER_PREROLL,
    PREDICTION_OFF_FRAMES,
    LoggedFrame,
    PacketLog,
    Pcm,
    decode_around,
    postfilter_on,
    prime_encoder,
)
from audio_engine.audio.track import FRAME, Track
from audio_engine.sources.media import OpusInput
from audio_engine.wire.ring import Frame
from protocol import OggOpusWriter, OpusHead, encode_packet

__all__ = ["OutputStream"]

log = logging.getLogger(__name__)

#: How far page sequence numbers run ahead of frame numbers: the OpusHead and OpusTags
#: pages come first (RFC 7845).
_HEADER_PAGES: Final = 2


class OutputStream:
    """One session's stream of frames (one Ogg logical stream, bare PCM frames, or bare
    Opus packets for a voice session).

    Args:
        session_id: the session's id (packets carry it).
        output: the session's output format.
        serial: the Ogg stream's serial (Ogg formats).
        encoder_factory: makes a fresh Opus encoder (Opus formats; None for PCM).
    """

    def __init__(self, session_id: str, output: OutputFormat, serial: int,
                 encoder_factory: Callable[[], OpusFrameEncoder] | None) -> None:
        self.session_id = session_id
        self.serial = serial
        self._ogg = output.is_ogg
        #: Frames are bare Opus packets (a voice session), not socket packets.
        self._bare = output is OutputFormat.VOICE
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
        #: The number of the next frame.
        self.next_index = 0
        #: The stream has ended (its last frame carried the EOS flag).
        self.finished = False
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
        """The OpusHead and OpusTags pages (Ogg formats, once started; else empty)."""
        return self.writer.header_pages if self.writer is not None else b""

    @property
    def encodes(self) -> bool:
        """PCM frames are Opus-encoded (Opus formats), not sent as they are."""
        return self._factory is not None

    @property
    def steady(self) -> bool:
        """Not ended, and no return to passthrough under way."""
        return not self.finished and self._return_at is None

    # -- starting and continuing ---------------------------------------------------------

    def start(self, head: OpusHead | None, *, passthrough: bool) -> None:
        """Begin the stream: its header pages (Ogg formats), with the first track's own
        *head* when it has one and its packets may go out as they are (else a head for
        our encoder), and an encoder unless the first frames pass through."""
        if self._ogg:
            self.writer = OggOpusWriter(
                self.serial, head=head if head is not None else OpusHead(pre_skip=self.lookahead))
        if not passthrough and self._factory is not None:
            self.encoder = self._factory()
            self._encoded_to = 0

    def resume(self, granule: int, sequence: int) -> None:
        """Continue a listener's Ogg stream whose last page had *granule* and *sequence*
        (a session moved from a dead worker); no-op for PCM."""
        if self.writer is not None:
            self.writer.rewind(granule, sequence)

    def rewind(self, index: int) -> list[LoggedFrame]:
        """Frames from *index* on were dropped: number, page and encode again from
        there (the encoder primed on the packets before *index*). Returns the dropped
        frames that were logged (Opus formats), oldest first."""
        self.finished = False
        log_ = self.log
        if self.writer is not None:
            self.writer.rewind(FRAME * index, index + _HEADER_PAGES)
        replaced = log_.get(index) if log_ is not None else None
        if self.encoder is not None and self._encoded_to > index:
            self._prime(index, replaced.data if replaced is not None else None)
        dropped = log_.span(index, self.next_index) if log_ is not None else []
        if log_ is not None:
            log_.drop_from(index)
        self.next_index = index
        return dropped

    def trim(self, emitted: int) -> None:
        """The listener was sent frame *emitted*: forget logged packets no splice
        needs any more."""
        if self.log is not None:
            self.log.trim_before(emitted - DECODER_PREROLL)

    # -- frames ----------------------------------------------------------------------------

    def pass_through(self, run: list[OpusInput]) -> list[Frame]:
        """The next frames: *run*'s packets as they are, none the last (a thousand
        sessions' worth of frames go through here every second)."""
        writer, log_, session_id = self.writer, self.log, self.session_id
        assert log_ is not None
        frames: list[Frame] = []
        n = self.next_index
        if writer is None:  # a voice session: the source's packets as they are
            for packet in run:
                log_.add(n, packet.data, packet.position)
                frames.append(Frame(packet.data, len(packet.data), packet.position, 0, 0,
                                    False, n, None))
                n += 1
            self.next_index = n
            return frames
        for packet in run:
            log_.add(n, packet.data, packet.position)
            page = writer.audio_page(packet.data, FRAME)
            frames.append(Frame(encode_packet(session_id, page), len(page), packet.position,
                                writer.granule_position, writer.next_sequence - 1, False, n,
                                None))
            n += 1
        self.next_index = n
        return frames

    def emit(self, data: bytes, position: float, *, last: bool, samples: int = FRAME,
             start: object = None) -> Frame:
        """The next frame, *data* (an Opus packet, or PCM), at track time *position*;
        *start* is the play that begins with it, if one does. *samples* below 960 trims
        the stream's last page (its granule says where the audio ends, RFC 7845)."""
        n = self.next_index
        self.next_index += 1
        if last:
            self.finished = True
        if self.log is not None:
            self.log.add(n, data, position)
        writer = self.writer
        if writer is None:
            # PCM in a socket packet; a voice session's Opus packet as it is.
            packet = data if self._bare else encode_packet(self.session_id, data)
            return Frame(packet, len(data), position, 0, 0, last, n, start)
        page = writer.audio_page(data, samples if last else FRAME, eos=last)
        return Frame(encode_packet(self.session_id, page), len(page), position,
                     writer.granule_position, writer.next_sequence - 1, last, n, start)

    def end_page(self, position: float) -> Frame | None:
        """End the stream after the last frame sent (it did not carry the EOS flag);
        None for PCM and voice, whose session ends when its last frame has been sent."""
        self.finished = True
        writer = self.writer
        if writer is None:
            return None
        page = writer.end_page()
        return Frame(encode_packet(self.session_id, page), len(page), position,
                     writer.granule_position, writer.next_sequence - 1, True, self.next_index)

    # -- the encoder ---------------------------------------------------------------------

    def follow_dial(self) -> None:
        """Give the encoder the engine's complexity (before each batch)."""
        encoder, dial = self.encoder, self._dial
        if encoder is not None and dial is not None and encoder.complexity != dial.level:
            encoder.set_complexity(dial.level)

    def need_encoder(self) -> None:
        """Have an encoder (a track joins, so frames will be transcoded); one that
        does not continue the stream is primed when it encodes."""
        if self._factory is not None and self.encoder is None:
            self.encoder = self._factory()

    def encoder_from(self, n: int) -> None:
        """Have an encoder that continues the stream before frame *n*, unless there is
        one already."""
        if self._factory is not None and self.encoder is None:
            self._prime(n, None)

    def encode(self, pcm: Pcm, n: int) -> bytes:
        """Frame *n*'s Opus packet (a new encoder is primed first unless the current one
        just encoded frame ``n - 1``)."""
        if self.encoder is None or self._encoded_to != n:
            self._prime(n, None)
        assert self.encoder is not None
        if self._prediction_at is not None and n >= self._prediction_at:
            self.encoder.set_prediction(True)
            self._prediction_at = None
        data = self.encoder.encode(pcm.tobytes())
        self._encoded_to = n + 1
        return data

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

    # -- splices with passthrough ----------------------------------------------------------

    def to_transcoding(self, track: Track, n: int) -> None:
        """*track* leaves passthrough at frame *n* (primed encoder, warm chain)."""
        packet = track.packets.first()
        assert packet is not None
        before = [f.data for f in self.log.span(n - DECODER_PREROLL, n)] if self.log else []
        decoder, pcm, end = decode_around(before, packet.data, self.lookahead)
        if self._factory is not None:
            self._new_encoder(n, pcm, end, before)
        track.to_transcoding(n, decoder, pcm, end)
        log.debug("%s: transcoding from frame %d", self.session_id, n)

    def towards_passthrough(self, track: Track, *, alone: bool) -> None:
        """Return *track* to passthrough at the next frame when it can. *alone*: it is
        the only track, nothing joins it, and the listener has been sent its first frame
        (else a planned return is called off). The source's packet there assumes the
        post-filter state of the source's previous one: when that one had it off, our
        last two frames are encoded without prediction first."""
        n = self.next_index
        if not track.opus and self._return_at is None:
            return  # not an Opus source: it never passes through
        if not alone:
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
        """Call off a planned return to passthrough (the encoder predicts again)."""
        if self._return_at is not None:
            self._return_at = None
            if self.encoder is not None and self._prediction_at is None:
                self.encoder.set_prediction(True)
