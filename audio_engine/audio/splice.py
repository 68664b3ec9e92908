"""Continuing a session's Opus stream from any frame with another encoder (pure, no I/O).

A session's Ogg stream must go on without a click when its audio changes mid-stream:
a filter or volume change drops the frames queued ahead of the listener and redoes them,
passthrough gives way to transcoding (and back), one track joins the next. The listener's
decoder keeps the state of the last packet it decoded: the MDCT overlap of the previous
frame and the predicted band energies. An encoder that has not seen the audio before the
splice breaks both. Measured on a 440 Hz tone at 128 kb/s (libopus 1.3, complexity 10):

- continuing with the encoder as it was (it had already encoded frames that were
  dropped): its look-ahead buffer holds audio from the wrong time, a jump of 0.66 of
  full scale;
- a fresh encoder: 0.64 of full scale;
- a fresh encoder *primed* as below: at most 0.003 of full scale away from the
  uninterrupted stream, under the codec's own coding noise (0.004).

Priming: decode the stream's own last ``DECODER_PREROLL`` packets and the first packet
the splice replaces with a fresh decoder (it converges on the listener's decoder state),
and feed a fresh encoder the last ``PRIME_FRAMES`` frames of that audio, ending exactly
``lookahead`` samples into the first replaced frame: the encoder's delay line then holds
what the listener's decoder will overlap with, and its band energies are those of the
audio just heard. The primed encoder's packets are thrown away.

The same holds between a source's own packets (passthrough) and ours, in both directions:
measured 0.004 of full scale at worst, again within the coding noise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from audio_engine.audio.codec import (
    MAX_PACKET_SAMPLES,
    OpusDecodeError,
    OpusFrameEncoder,
    RawOpusDecoder,
)
from protocol import CHANNELS, PCM_FRAME_BYTES, SAMPLES_PER_FRAME

__all__ = [
    "DECODER_PREROLL",
    "MAX_PACKET_SAMPLES",
    "PREDICTION_OFF_FRAMES",
    "PRIME_FRAMES",
    "LoggedFrame",
    "PacketLog",
    "Pcm",
    "RawOpusDecoder",
    "decode_around",
    "decode_many",
    "postfilter_on",
    "prime_encoder",
]

#: Packets a fresh decoder runs on before its output counts (160 ms): the decoder's
#: predicted band energies converge by half each frame, so eight frames leave well
#: under 0.1 dB of the difference. RFC 7845 asks for at least 80 ms after a seek.
DECODER_PREROLL: Final = 8
#: Frames of decoded audio a fresh encoder is fed before its first real frame (60 ms):
#: enough to fill its 312-sample delay line and settle its band energies.
PRIME_FRAMES: Final = 3
#: Frames encoded without prediction on the far side of a splice, when the other side
#: had CELT's post-filter off (measured: two frames bring the first 60 ms after a
#: splice from 0.33 to 0.013 of full scale away from the uninterrupted stream).
PREDICTION_OFF_FRAMES: Final = 2

Pcm = npt.NDArray[np.int16]


class LoggedFrame(NamedTuple):
    """One Opus packet the session sent (or queued), with the track time it starts at."""

    data: bytes
    position: float


class PacketLog:
    """The session's recent Opus packets by frame index, to prime a new encoder and to
    redo passthrough frames that were dropped.

    Args:
        capacity: packets kept at most. 128 (2.5 s) covers the longest ring (1.5 s of
            passthrough frames), a batch in flight and the decoder pre-roll; the owner
            also trims everything before what the listener has already heard.
    """

    def __init__(self, capacity: int = 128) -> None:
        self._frames: deque[LoggedFrame] = deque(maxlen=capacity)
        #: Frame index of ``_frames[0]``.
        self._first = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def end(self) -> int:
        """Index after the last packet logged."""
        return self._first + len(self._frames)

    def add(self, index: int, data: bytes, position: float) -> None:
        """Log frame *index* (it must follow the last one logged, or restart the log)."""
        if index != self.end:
            self._frames.clear()
            self._first = index
        if len(self._frames) == self._frames.maxlen:
            self._first += 1
        self._frames.append(LoggedFrame(data, position))

    def get(self, index: int) -> LoggedFrame | None:
        """The packet of frame *index*, if it is still kept."""
        offset = index - self._first
        return self._frames[offset] if 0 <= offset < len(self._frames) else None

    def span(self, start: int, stop: int) -> list[LoggedFrame]:
        """Packets of frames *start* to *stop* - 1 that are kept (a contiguous run)."""
        return [self._frames[i - self._first]
                for i in range(max(start, self._first), min(stop, self.end))]

    def trim_before(self, index: int) -> None:
        """Forget frames before *index* (the listener has them)."""
        while self._frames and self._first < index:
            self._frames.popleft()
            self._first += 1

    def drop_from(self, index: int) -> None:
        """Forget frames from *index* on (they were discarded)."""
        while self._frames and self.end > max(index, self._first):
            self._frames.pop()


def decode_many(decoder: RawOpusDecoder, packets: Sequence[bytes]) -> Pcm:
    """Decode *packets* in order; shape (samples, 2). Invalid packets decode as one
    frame of silence (the decoder's concealment is for lost packets, not ours)."""
    parts: list[bytes] = []
    for data in packets:
        try:
            parts.append(decoder.decode(data))
        except OpusDecodeError:
            parts.append(bytes(PCM_FRAME_BYTES))
    return np.frombuffer(b"".join(parts), dtype=np.int16).reshape(-1, CHANNELS)


def postfilter_on(packet: bytes) -> bool | None:
    """Whether a CELT-only Opus packet switches the decoder's pitch post-filter on, or
    None when that cannot be told (SILK or hybrid, several frames per packet, empty).

    Reads the first two range-coded symbols of the frame (RFC 6716, 4.1 and 4.3): the
    silence flag and the post-filter flag.
    """
    if len(packet) < 2:
        return None
    toc = packet[0]
    if toc >> 3 < 16 or toc & 0x3:
        return None  # not CELT-only, or not one frame per packet
    data = packet[1:]
    total_bits = len(data) * 8
    reader = _RangeDecoder(data)
    tell = reader.tell()
    if tell >= total_bits:
        return False
    if tell == 1 and reader.bit(15):
        return False  # silence
    if tell + 16 > total_bits:
        return False
    return reader.bit(1)


class _RangeDecoder:
    """The start of Opus's range decoder (RFC 6716, 4.1): enough for a few flags."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0
        self._bits = 33 - 24  # EC_CODE_BITS + 1 - ((EC_CODE_BITS - EC_CODE_EXTRA) // 8) * 8
        self._range = 128
        self._rem = self._byte()
        self._value = self._range - 1 - (self._rem >> 1)
        self._normalize()

    def _byte(self) -> int:
        if self._offset < len(self._data):
            value = self._data[self._offset]
            self._offset += 1
            return value
        return 0

    def _normalize(self) -> None:
        while self._range <= 1 << 23:
            self._bits += 8
            self._range <<= 8
            symbol = self._rem
            self._rem = self._byte()
            symbol = ((symbol << 8) | self._rem) >> 1
            self._value = ((self._value << 8) + (255 & ~symbol)) & ((1 << 31) - 1)

    def tell(self) -> int:
        return self._bits - self._range.bit_length()

    def bit(self, logp: int) -> bool:
        share = self._range >> logp
        one = self._value < share
        if one:
            self._range = share
        else:
            self._value -= share
            self._range -= share
        self._normalize()
        return one


def decode_around(before: Sequence[bytes], replaced: bytes | None,
                  lookahead: int) -> tuple[RawOpusDecoder, Pcm, int]:
    """Decode the packets *before* a splice and the packet it *replaces* with one fresh
    decoder (returned: it can go on decoding the packets after them).

    Returns:
        (decoder, pcm, end): *pcm* is all of it decoded; *end* is the sample of *pcm*
        where the encoder input of the first replaced frame begins: *lookahead* samples
        into the replaced packet (silence stands in when there is none).
    """
    decoder = RawOpusDecoder()
    heard = decode_many(decoder, before)
    ahead = decode_many(decoder, [replaced]) if replaced is not None else heard[:0]
    pcm = np.concatenate([heard, ahead])
    end = len(heard) + lookahead
    if len(pcm) < end:
        pcm = np.concatenate([pcm, np.zeros((end - len(pcm), CHANNELS), dtype=np.int16)])
    return decoder, pcm, end


def prime_encoder(factory: Callable[[], OpusFrameEncoder], pcm: Pcm, end: int, *,
                  postfilter: bool | None) -> tuple[OpusFrameEncoder, int]:
    """A new encoder primed on *pcm* up to sample *end* (see ``decode_around``): its next
    packet continues the stream. The primed encoder's packets so far were discarded.

    *postfilter* is whether the last packet the listener decoded had CELT's pitch
    post-filter on (``postfilter_on``). The listener's decoder keeps the post-filter
    state of that packet, and the new encoder's first packet assumes its own: when the
    listener's was off (a source encoded at a low complexity, or noise-like audio) and
    the new encoder's on, the first 5 ms are off by up to two thirds of full scale. So
    the encoder is then primed, and runs its first ``PREDICTION_OFF_FRAMES`` frames,
    without prediction (post-filter off, energies coded whole).

    Returns:
        The encoder, and how many of its next frames must still be encoded without
        prediction (then call ``set_prediction(True)``).
    """
    encoder = factory()
    without = postfilter is False and encoder.controls_prediction
    if without:
        encoder.set_prediction(False)
    frames = min(PRIME_FRAMES, end // SAMPLES_PER_FRAME)
    for start in range(end - frames * SAMPLES_PER_FRAME, end, SAMPLES_PER_FRAME):
        encoder.encode(pcm[start : start + SAMPLES_PER_FRAME].tobytes())
    return encoder, PREDICTION_OFF_FRAMES if without else 0
