"""The Opus codec seam: the only module that talks to libopus.

- Encoding: 20 ms of s16le stereo PCM in, one Opus packet out; two implementations of
  the same contract, both backed by libopus:

  * ``OpuslibEncoder`` calls the system's libopus (Debian's ``libopus0``) through
    opuslib's ctypes binding; ctypes releases the GIL during the call.
  * ``PyAVOpusEncoder`` goes through FFmpeg's ``libopus`` wrapper in PyAV.

  ``bench/opus_encode.py`` measures both per frame; the engine uses the setting
  ``ENGINE_OPUS_ENCODER`` (default: the faster one on that benchmark, opuslib).
- Decoding (``RawOpusDecoder``): 48 kHz stereo packets to PCM with nothing trimmed,
  for splices and Opus sources that are transcoded; a packet that is not Opus raises
  ``OpusDecodeError``.
"""

from __future__ import annotations

import ctypes
from typing import Final, Literal, Protocol

import av
import opuslib  # type: ignore[import-untyped]  # opuslib ships no type information
import opuslib.api.ctl  # type: ignore[import-untyped]
import opuslib.api.encoder  # type: ignore[import-untyped]

from protocol import CHANNELS, ENCODER_PRE_SKIP, PCM_FRAME_BYTES, SAMPLE_RATE, SAMPLES_PER_FRAME

__all__ = [
    "MAX_PACKET_SAMPLES",
    "ComplexityDial",
    "EncoderFactory",
    "EncoderName",
    "OpusDecodeError",
    "OpusFrameEncoder",
    "OpuslibEncoder",
    "PyAVOpusEncoder",
    "RawOpusDecoder",
    "create_encoder",
]

EncoderName = Literal["opuslib", "pyav"]

#: libopus's ``OPUS_SET_PREDICTION_DISABLED_REQUEST`` (opus_defines.h), which opuslib
#: does not name.
_SET_PREDICTION_DISABLED: Final = 4042
_set_prediction_disabled = opuslib.api.ctl.ctl_set(_SET_PREDICTION_DISABLED)
#: libopus's own encode call (opuslib declares its argument types).
_opus_encode = opuslib.api.encoder.libopus_encode
_INT16_POINTER = opuslib.api.c_int16_pointer
#: Room for one packet: RFC 6716 caps a 20 ms frame at 1275 bytes.
_MAX_PACKET: Final = 1500


class ComplexityDial:
    """The complexity transcoding sessions encode with now: set by the engine (it
    steps it down under load and back up), read by each session before a batch.

    Args:
        level: 0 (fastest) to 10 (best).
    """

    __slots__ = ("level",)

    def __init__(self, level: int) -> None:
        self.level = level


class OpusFrameEncoder(Protocol):
    """Encodes one 20 ms frame at a time (VBR, application ``audio``)."""

    #: Samples of look-ahead the decoder must skip (the OpusHead pre-skip).
    lookahead: int
    #: Whether ``set_prediction`` has an effect.
    controls_prediction: bool
    #: The libopus complexity it encodes with.
    complexity: int

    def set_complexity(self, level: int) -> None:
        """Encode the next frames with complexity *level* (no effect on a PyAV
        encoder, which keeps the one it was opened with)."""
        ...

    def encode(self, pcm: bytes) -> bytes:
        """Encode exactly 3840 bytes of s16le stereo PCM into one Opus packet."""
        ...

    def set_prediction(self, enabled: bool) -> None:
        """Let packets depend on the previous ones (the default), or not: no pitch
        post-filter and no inter-frame energy prediction, for the frames around a
        splice with another encoder's packets (``audio_engine.audio.splice``)."""
        ...


class OpuslibEncoder:
    """libopus through opuslib (ctypes). Not thread-safe: one per session."""

    def __init__(self, bitrate: int, complexity: int) -> None:
        self._encoder = opuslib.Encoder(SAMPLE_RATE, CHANNELS, opuslib.APPLICATION_AUDIO)
        self._encoder.bitrate = bitrate
        self._encoder.complexity = complexity
        self._encoder.vbr = 1
        self._state = self._encoder.encoder_state
        self._out = ctypes.create_string_buffer(_MAX_PACKET)
        self.lookahead = int(self._encoder.lookahead)
        self.controls_prediction = True
        self.complexity = complexity

    def set_complexity(self, level: int) -> None:
        """See ``OpusFrameEncoder.set_complexity``."""
        self._encoder.complexity = level
        self.complexity = level

    def encode(self, pcm: bytes) -> bytes:
        """See ``OpusFrameEncoder.encode``."""
        # libopus directly, into a buffer kept per encoder: opuslib's own call
        # allocates a buffer and copies the packet twice, per frame.
        length = _opus_encode(self._state, ctypes.cast(ctypes.c_char_p(pcm), _INT16_POINTER),
                              SAMPLES_PER_FRAME,
                              self._out, _MAX_PACKET)
        if length < 0:
            raise opuslib.OpusError(f"libopus failed to encode (error {length})")
        return ctypes.string_at(self._out, length)

    def set_prediction(self, enabled: bool) -> None:
        """See ``OpusFrameEncoder.set_prediction``."""
        opuslib.api.encoder.encoder_ctl(self._encoder.encoder_state, _set_prediction_disabled,
                                        0 if enabled else 1)


class PyAVOpusEncoder:
    """libopus through FFmpeg/PyAV. Not thread-safe: one per session."""

    def __init__(self, bitrate: int, complexity: int) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "stereo"
        codec.format = "s16"
        codec.bit_rate = bitrate
        codec.options = {
            "application": "audio",
            "frame_duration": "20",
            "vbr": "on",
            "compression_level": str(complexity),
        }
        codec.open()
        self._codec = codec
        self._pts = 0
        self.lookahead = ENCODER_PRE_SKIP
        #: FFmpeg's libopus wrapper has no option for it.
        self.controls_prediction = False
        self.complexity = complexity

    def set_complexity(self, level: int) -> None:
        """See ``OpusFrameEncoder.set_complexity``: FFmpeg's wrapper cannot change it
        once open; the level is remembered so that it is not asked again."""
        self.complexity = level

    def set_prediction(self, enabled: bool) -> None:
        """Not available through FFmpeg: a no-op (splices then keep prediction on)."""

    def encode(self, pcm: bytes) -> bytes:
        """See ``OpusFrameEncoder.encode``."""
        frame = av.AudioFrame(format="s16", layout="stereo", samples=SAMPLES_PER_FRAME)
        frame.planes[0].update(pcm[:PCM_FRAME_BYTES])
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += SAMPLES_PER_FRAME
        packets = self._codec.encode(frame)
        # libopus emits exactly one packet per 20 ms frame once primed.
        return b"".join(bytes(p) for p in packets)


def create_encoder(name: EncoderName, bitrate: int, complexity: int) -> OpusFrameEncoder:
    """Build the named encoder for one session."""
    match name:
        case "opuslib":
            return OpuslibEncoder(bitrate, complexity)
        case "pyav":
            return PyAVOpusEncoder(bitrate, complexity)


class EncoderFactory:
    """Makes a session's encoders: the named binding, the output's bitrate, the
    complexity the *dial* says when each is made (``Program`` follows the dial
    afterwards).
    """

    __slots__ = ("bitrate", "dial", "name")

    def __init__(self, name: EncoderName, bitrate: int, dial: ComplexityDial) -> None:
        self.name = name
        self.bitrate = bitrate
        self.dial = dial

    def __call__(self) -> OpusFrameEncoder:
        return create_encoder(self.name, self.bitrate, self.dial.level)


#: Most samples per channel one Opus packet can hold (120 ms at 48 kHz).
MAX_PACKET_SAMPLES: Final = 5760


class OpusDecodeError(Exception):
    """The packet is not valid Opus."""


class RawOpusDecoder:
    """libopus decoding of 48 kHz stereo packets with nothing trimmed (no pre-skip): its
    output is exactly the listener's decoded timeline, 960 samples per 20 ms packet.
    Not thread-safe; ctypes releases the GIL while it decodes."""

    def __init__(self) -> None:
        self._decoder = opuslib.Decoder(SAMPLE_RATE, CHANNELS)

    def decode(self, data: bytes) -> bytes:
        """s16le stereo PCM of one packet.

        Raises:
            OpusDecodeError: the packet is not valid Opus.
        """
        try:
            return bytes(self._decoder.decode(data, MAX_PACKET_SAMPLES))
        except opuslib.OpusError as exc:
            raise OpusDecodeError(str(exc)) from exc
