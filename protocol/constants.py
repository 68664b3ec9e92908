"""Numbers fixed by the wire contract (docs/protocol.md).

Everything that crosses the engine's Unix socket is 48 kHz stereo audio cut into
20 ms frames; these names are the single place those numbers are written down.
"""

from __future__ import annotations

__all__ = [
    "CHANNELS",
    "DEFAULT_API_PORT",
    "DEFAULT_SOCKET_PATH",
    "FRAMES_PER_SECOND",
    "FRAME_DURATION",
    "FRAME_DURATION_MS",
    "LENGTH_PREFIX_SIZE",
    "PCM_FRAME_BYTES",
    "PCM_SAMPLE_WIDTH",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "SESSION_ID_FIELD_SIZE",
]

#: Output sample rate of every stream, in Hz (Opus' native rate).
SAMPLE_RATE = 48_000
#: Output channel count of every stream (interleaved stereo for PCM).
CHANNELS = 2
#: Length of one frame, one Ogg page and one clock tick, in milliseconds.
FRAME_DURATION_MS = 20
#: The same length in seconds, for clock arithmetic.
FRAME_DURATION = FRAME_DURATION_MS / 1000
#: Frames (and clock ticks) per second of audio.
FRAMES_PER_SECOND = 1000 // FRAME_DURATION_MS
#: Samples per channel in one frame: 48 000 Hz x 20 ms.
SAMPLES_PER_FRAME = SAMPLE_RATE * FRAME_DURATION_MS // 1000
#: Bytes per sample of the ``pcm`` format (signed 16-bit little-endian).
PCM_SAMPLE_WIDTH = 2
#: Bytes in one 20 ms frame of the ``pcm`` format: 960 x 2 channels x 2 bytes.
PCM_FRAME_BYTES = SAMPLES_PER_FRAME * CHANNELS * PCM_SAMPLE_WIDTH
#: Size of the big-endian length prefix of an audio packet.
LENGTH_PREFIX_SIZE = 4
#: Size of the session id field of an audio packet (space-padded ASCII).
SESSION_ID_FIELD_SIZE = 24
#: Where the engine listens unless configured otherwise (the Go engine's default).
DEFAULT_SOCKET_PATH = "/tmp/music-playground.sock"
#: The engine's HTTP control port unless configured otherwise (the Go engine's default).
DEFAULT_API_PORT = 8180
