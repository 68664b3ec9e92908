"""Generated media for load tests, fault tests and the demo: tones written with PyAV.

Each session of a test or a load run plays its own frequency, so what reached a
sink can be told apart by its spectrum.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

__all__ = ["encode_blocks", "write_tone"]

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
    switch = int(rate * seconds)
    total = switch + (int(rate * then[1]) if then else 0)

    def blocks() -> Iterator[np.ndarray]:
        block = rate // 10
        for start in range(0, total, block):
            index = np.arange(start, min(total, start + block))
            tone = np.where(index < switch, frequency, then[0] if then else frequency)
            wave = (amplitude * np.sin(2 * np.pi * tone * index / rate)).astype(np.float32)
            yield np.tile(wave, (channels, 1))

    return encode_blocks(path, blocks(), rate=rate, layout=layout,
                         container_format=container_format, codec=codec, bit_rate=bit_rate)


def encode_blocks(
    path: Path,
    blocks: Iterable[np.ndarray],
    *,
    rate: int,
    layout: str,
    container_format: str,
    codec: str,
    bit_rate: int | None = None,
    title: str | None = None,
    input_rate: int | None = None,
) -> Path:
    """Encode float32 planar blocks (channels x samples at *input_rate*, default
    *rate*) into *path* at *rate*, one block at a time (long files never sit in
    memory)."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if not isinstance(stream, av.AudioStream):
            raise ValueError(f"{codec} is not an audio codec")
        if bit_rate:
            stream.bit_rate = bit_rate
        if title:
            container.metadata["title"] = title
        codec_context = stream.codec_context
        codec_context.open()
        resampler = av.AudioResampler(
            format=codec_context.format.name, layout=layout, rate=rate,
            frame_size=codec_context.frame_size or 1024,
        )
        pts = 0
        for block in blocks:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp",
                                               layout=layout)
            frame.sample_rate = input_rate or rate
            frame.pts = pts
            pts += block.shape[1]
            for chunk in resampler.resample(frame):
                for packet in stream.encode(chunk):
                    container.mux(packet)
        for chunk in resampler.resample(None):
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
