"""Test media: tones written with PyAV, and spectrum checks that tell them apart.

Every session in a test plays its own frequency, so the dominant frequency of
what reached a sink proves whose audio it was.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

__all__ = [
    "decode_ogg_opus",
    "decode_opus_packets",
    "dominant_frequency",
    "write_tone",
]

_CONTAINERS = {
    "mp3": ("mp3", "mp3"),
    "ogg": ("ogg", "libopus"),
    "opus": ("ogg", "libopus"),
    "webm": ("webm", "libopus"),
    "wav": ("wav", "pcm_s16le"),
    "flac": ("flac", "flac"),
}


def write_tone(
    path: Path,
    frequency: float,
    seconds: float,
    *,
    then: tuple[float, float] | None = None,
    rate: int | None = None,
    layout: str = "stereo",
    amplitude: float = 0.5,
    bit_rate: int | None = None,
) -> Path:
    """Write a sine tone to *path*; the container and codec follow its suffix.

    mp3 defaults to 44.1 kHz (a resampling source); ogg/webm hold 48 kHz Opus
    (a passthrough source). *then* = (frequency, seconds) appends a second tone.
    """
    container_format, codec = _CONTAINERS[path.suffix.lstrip(".")]
    if rate is None:
        rate = 44_100 if codec == "mp3" else 48_000
    channels = 2 if layout == "stereo" else 1
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.codec_context.open()
        frame_size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name,
            layout=layout,
            rate=rate,
            frame_size=frame_size,
        )
        switch = int(rate * seconds)
        total = switch + (int(rate * then[1]) if then else 0)
        block = rate // 10
        for start in range(0, total, block):
            count = min(block, total - start)
            index = np.arange(start, start + count)
            t = (index / rate).astype(np.float64)
            tone = np.where(index < switch, frequency, then[0] if then else frequency)
            wave = (amplitude * np.sin(2 * np.pi * tone * t)).astype(np.float32)
            planes = np.ascontiguousarray(np.tile(wave, (channels, 1)))
            frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for chunk in resampler.resample(frame):
                for packet in stream.encode(chunk):
                    container.mux(packet)
        for chunk in resampler.resample(None):
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


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
