"""Test media: tones (written by the package's generator) and spectrum checks that
tell them apart.

Every session in a test plays its own frequency, so the dominant frequency of
what reached a sink proves whose audio it was.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from audio_engine.audio.codec import OpuslibEncoder
from loadtest.media import encode_blocks, write_tone
from protocol import PCM_FRAME_BYTES, SAMPLES_PER_FRAME, OggOpusWriter, ogg_crc

__all__ = [
    "STEP_SECONDS",
    "decode_ogg_opus",
    "decode_opus_packets",
    "dominant_frequency",
    "step_at",
    "write_opus_tone",
    "write_signal",
    "write_steps",
    "write_tone",
    "write_vorbis_tone",
]

#: Length of each tone of ``write_steps``.
STEP_SECONDS = 3.0


def write_steps(path: Path, frequencies: list[float], step: float = STEP_SECONDS) -> Path:
    """Write tones of *step* seconds each, one per frequency, as an mp3: what a
    sink hears tells where in the track it is (to within a step)."""
    rate = 44_100
    per_step = int(rate * step)

    def blocks() -> list[np.ndarray]:
        out = []
        for index, frequency in enumerate(frequencies):
            samples = np.arange(index * per_step, (index + 1) * per_step)
            wave = (0.5 * np.sin(2 * np.pi * frequency * samples / rate)).astype(np.float32)
            out.append(np.tile(wave, (2, 1)))
        return out

    return encode_blocks(path, blocks(), rate=rate, layout="stereo", container_format="mp3",
                         codec="mp3")


def step_at(frequencies: list[float], seconds: float, step: float = STEP_SECONDS) -> float:
    """The frequency ``write_steps`` plays at *seconds*."""
    return frequencies[min(len(frequencies) - 1, int(seconds // step))]


def write_opus_tone(path: Path, frequency: float, seconds: float, *, serial: int = 1,
                    complexity: int = 0, flush: bool = False) -> Path:
    """Write a 48 kHz stereo Ogg Opus tone quickly (libopus, complexity 0 by default,
    one 20 ms frame per page): a passthrough source for tests that need many tracks.
    Without *flush*, exactly ``seconds * 50`` pages (the encoder's last 6.5 ms never
    come out); with it, the encoder is flushed with silence and the last page's
    granule trims that (RFC 7845), so the decoded audio is exactly *seconds* long, as
    a real encoder writes it. The engine demuxes it with FFmpeg, so the file's
    validity is checked there."""
    encoder = OpuslibEncoder(64_000, complexity)
    writer = OggOpusWriter(serial)
    total = round(seconds * 48_000)
    flushed = total + encoder.lookahead if flush else total
    frames = -(-flushed // SAMPLES_PER_FRAME)
    index = np.arange(frames * SAMPLES_PER_FRAME)
    wave = (0.5 * 32767 * np.sin(2 * np.pi * frequency * index / 48_000)).astype("<i2")
    wave[total:] = 0
    pcm = np.repeat(wave, 2).tobytes()
    pages = [writer.header_pages]
    for frame in range(frames):
        chunk = pcm[frame * PCM_FRAME_BYTES:(frame + 1) * PCM_FRAME_BYTES]
        last = frame == frames - 1
        samples = flushed - frame * SAMPLES_PER_FRAME if last else SAMPLES_PER_FRAME
        pages.append(writer.audio_page(encoder.encode(chunk), samples, eos=last))
    path.write_bytes(b"".join(pages))
    return path

def write_vorbis_tone(path: Path, frequency: float, seconds: float, *,
                      nominal_bit_rate: int) -> Path:
    """Write an Ogg Vorbis tone (48 kHz stereo) whose identification header declares
    *nominal_bit_rate*, as encoders in quality mode do: a tone takes far less than
    that, so a length estimated from the declared rate is far too short. (FFmpeg's
    own Vorbis encoder, experimental, writes no nominal rate: it is set in the
    header, and the first page's CRC made again.)"""
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("vorbis", rate=48_000, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        stream.codec_context.options = {"strict": "experimental"}
        index = np.arange(int(48_000 * seconds))
        wave = (0.3 * np.sin(2 * np.pi * frequency * index / 48_000)).astype(np.float32)
        for start in range(0, wave.size, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(np.tile(wave[start:start + 1024], (2, 1))),
                format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48_000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(path.read_bytes())
    # The identification header (Vorbis I spec, 4.2.2): "\x01vorbis", version,
    # channels, rate, bitrate maximum, nominal, minimum; all in the first page.
    header = data.find(b"\x01vorbis")
    nominal = header + 7 + 4 + 1 + 4 + 4
    data[nominal:nominal + 4] = nominal_bit_rate.to_bytes(4, "little")
    page_end = 27 + data[26] + sum(data[27:27 + data[26]])
    data[22:26] = bytes(4)
    data[22:26] = ogg_crc(bytes(data[:page_end])).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def write_signal(path: Path, signal: np.ndarray, *, container: str = "flac") -> Path:
    """Write a float stereo signal (shape (n, 2), -1 to 1, 48 kHz) losslessly (FLAC:
    the engine decodes and transcodes it, and its spectrum is exactly what was written)."""
    planar = np.ascontiguousarray(np.asarray(signal, dtype=np.float32).T)
    blocks = (planar[:, start:start + 4800] for start in range(0, planar.shape[1], 4800))
    return encode_blocks(path, blocks, rate=48_000, layout="stereo", container_format=container,
                         codec="flac")


def dominant_frequency(samples: np.ndarray, rate: int = 48_000) -> float:
    """Frequency (Hz) of the strongest spectral peak of mono or interleaved-stereo
    samples (stereo is averaged to mono first)."""
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 2:
        data = data.mean(axis=0 if data.shape[0] <= 2 else 1)
    if data.size < 256:
        raise ValueError(f"too few samples for a spectrum: {data.size}")
    window = np.hanning(data.size)
    spectrum = np.abs(np.fft.rfft((data - data.mean()) * window))
    peak = int(np.argmax(spectrum[1:])) + 1
    return peak * rate / data.size


def decode_opus_packets(packets: list[bytes]) -> np.ndarray:
    """Decode raw 48 kHz stereo Opus packets with PyAV's libopus; returns (2, n) float32."""
    codec = av.CodecContext.create("libopus", "r")
    codec.sample_rate = 48_000
    codec.layout = "stereo"
    chunks = []
    for data in packets:
        for frame in codec.decode(av.Packet(data)):
            chunks.append(frame.to_ndarray().astype(np.float32).reshape(2, -1)
                          if frame.format.is_planar else
                          frame.to_ndarray().astype(np.float32).reshape(-1, 2).T)
    if not chunks:
        return np.zeros((2, 0), dtype=np.float32)
    return np.concatenate(chunks, axis=1)


def decode_ogg_opus(path: Path) -> tuple[np.ndarray, int]:
    """Decode an Ogg Opus file with PyAV's own demuxer; returns ((2, n) float32, rate)."""
    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            array = frame.to_ndarray().astype(np.float32)
            chunks.append(array.reshape(frame.layout.nb_channels, -1) if frame.format.is_planar
                          else array.reshape(-1, frame.layout.nb_channels).T)
    return np.concatenate(chunks, axis=1), rate
