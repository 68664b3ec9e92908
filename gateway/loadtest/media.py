"""Generated media for load tests, fault tests and the demo: tones written with PyAV.

Each session of a test or a load run plays its own frequency, so what reached a
sink can be told apart by its spectrum.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

__all__ = ["write_tone"]

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
