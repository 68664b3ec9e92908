"""Generated PCM and the measurements the filter tests make on it.

Signals are float arrays of shape (n, 2) in [-1, 1]; ``to_pcm``/``from_pcm`` convert
to and from s16le bytes, what the filter chain takes and returns. Loudness is measured
with FFmpeg's own ``ebur128`` filter through PyAV (a graph built here, independent of
the engine's meter).
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import av
import av.filter
import numpy as np
import numpy.typing as npt

from audio_engine.audio.filters import FilterChain, FilteredFrame

__all__ = [
    "RATE",
    "Signal",
    "band_level_db",
    "from_pcm",
    "integrated_lufs",
    "noise",
    "run_chain",
    "scale_to_lufs",
    "to_pcm",
    "tone",
    "tones",
]

RATE = 48_000
Signal = npt.NDArray[np.float64]


def tone(
    frequency: float,
    seconds: float,
    amplitude: float = 0.3,
    *,
    left: bool = True,
    right: bool = True,
) -> Signal:
    """A sine tone on the chosen channels."""
    t = np.arange(round(seconds * RATE)) / RATE
    wave = amplitude * np.sin(2 * np.pi * frequency * t)
    return np.stack([wave if left else 0 * wave, wave if right else 0 * wave], axis=1)


def tones(frequencies: Iterable[float], seconds: float, amplitude: float) -> Signal:
    """Several tones at once, each at ``amplitude``, on both channels."""
    total = sum(tone(f, seconds, amplitude) for f in frequencies)
    return np.asarray(total, dtype=np.float64)


def noise(seconds: float, rms: float, seed: int = 7) -> Signal:
    """Stereo noise with its spectrum falling 3 dB per octave above 100 Hz (music-like),
    clipped at 3 sigma so it never clips as s16."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    white = rng.standard_normal((n, 2))
    spectrum = np.fft.rfft(white, axis=0)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum /= np.sqrt(np.maximum(freqs, 100.0) / 100.0)[:, None]
    shaped = np.fft.irfft(spectrum, n, axis=0)
    shaped /= shaped.std()
    return np.clip(shaped, -3.0, 3.0) * rms


def to_pcm(signal: Signal) -> bytes:
    return np.clip(np.rint(signal * 32767), -32768, 32767).astype(np.int16).tobytes()


def from_pcm(data: bytes) -> Signal:
    return np.frombuffer(data, dtype=np.int16).reshape(-1, 2).astype(np.float64) / 32768


def run_chain(
    chain: FilterChain, signal: Signal, *, block: float = 0.1, flush: bool = True
) -> list[FilteredFrame]:
    """Push ``signal`` in blocks of ``block`` seconds (then flush); all frames out."""
    data = to_pcm(signal)
    step = round(block * RATE) * 4
    frames: list[FilteredFrame] = []
    for start in range(0, len(data), step):
        frames += chain.push(data[start : start + step])
    if flush:
        frames += chain.flush()
    return frames


def band_level_db(signal: Signal, frequency: float, channel: int = 0) -> float:
    """Level (dBFS of a sine) of the component at ``frequency`` in one channel, from a
    Hann-windowed spectrum (peak over the neighbouring bins)."""
    data = signal[:, channel]
    window = np.hanning(len(data))
    spectrum = np.abs(np.fft.rfft(data * window)) * 2 / window.sum()
    bin_hz = RATE / len(data)
    centre = round(frequency / bin_hz)
    peak = spectrum[max(centre - 2, 0) : centre + 3].max()
    return float(20 * np.log10(max(peak, 1e-12)))


def integrated_lufs(signal: Signal) -> float:
    """EBU R128 integrated loudness by FFmpeg's ebur128 filter."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        sample_rate=RATE, format="flt", layout="stereo", time_base=Fraction(1, RATE)
    )
    meter = graph.add("ebur128", metadata="1", framelog="quiet")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(signal, dtype=np.float32).reshape(1, -1), format="flt", layout="stereo"
    )
    frame.sample_rate = RATE
    frame.pts = 0
    frame.time_base = Fraction(1, RATE)
    graph.push(frame)
    graph.push(None)
    value = None
    while True:
        try:
            out = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            break
        value = out.metadata.get("lavfi.r128.I", value)
    assert value is not None
    return float(value)


def scale_to_lufs(signal: Signal, lufs: float) -> Signal:
    """``signal`` scaled so that it measures ``lufs``."""
    gain_db = lufs - integrated_lufs(signal)
    return signal * 10 ** (gain_db / 20)
