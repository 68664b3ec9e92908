"""The bare codec pipeline, timed: what one transcoding session costs at the least.

PyAV decodes an MP3 (44.1 kHz stereo, 128 kb/s: the common case of a transcoded
source), FFmpeg's resampler (in a one-thread graph) makes 48 kHz s16 stereo, libopus
(opuslib, complexity 10, 128 kb/s) encodes 20 ms frames, in one tight loop with
nothing else: no filters, no Ogg pages, no pools. Its CPU time per frame is the
physical limit of a transcoding session on this machine. ``bench/engine_capacity.py``
reports the engine's figures against it; the engine times a short run at start-up
as the prior of its cost model (``audio_engine.cluster.cost``).
"""

from __future__ import annotations

import io
import time
from typing import Final

import av
import numpy as np

from audio_engine.audio.codec import OpuslibEncoder
from audio_engine.audio.resampler import Resampler
from protocol import PCM_FRAME_BYTES

__all__ = ["bare_pipeline_cost", "mp3_tone"]

#: Bit rate of the transcoding benchmark's output (the ``opus`` format).
_BITRATE: Final = 128_000


def mp3_tone(seconds: float, *, frequency: float = 440.0, rate: int = 44_100) -> bytes:
    """An MP3 (128 kb/s, stereo) of a tone with a little noise, made in memory."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.layout = "stereo"
        stream.bit_rate = 128_000
        samples = int(seconds * rate)
        t = np.arange(samples) / rate
        rng = np.random.default_rng(1)
        wave = 0.4 * np.sin(2 * np.pi * frequency * t) + 0.02 * rng.standard_normal(samples)
        pcm = (np.stack([wave, wave]) * 32767).astype(np.int16)
        for start in range(0, samples, 1152):
            block = np.ascontiguousarray(pcm[:, start:start + 1152])
            frame = av.AudioFrame.from_ndarray(block, format="s16p", layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def bare_pipeline_cost(mp3: bytes, *, complexity: int = 10) -> float:
    """Decode, resample and encode all of *mp3*; CPU µs of this thread per 20 ms
    frame."""
    encoder = OpuslibEncoder(_BITRATE, complexity)
    resampler = Resampler()
    pending = bytearray()
    frames = 0
    started = time.thread_time()
    with av.open(io.BytesIO(mp3), "r", format="mp3") as container:
        for decoded in container.decode(audio=0):
            for out in resampler.resample(decoded):
                pending += bytes(out.planes[0])[: out.samples * 4]
            while len(pending) >= PCM_FRAME_BYTES:
                encoder.encode(bytes(pending[:PCM_FRAME_BYTES]))
                del pending[:PCM_FRAME_BYTES]
                frames += 1
    elapsed = time.thread_time() - started
    return elapsed / max(1, frames) * 1e6
