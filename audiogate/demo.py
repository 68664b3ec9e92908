"""The bundled demo track: generated on first run, so the stack plays something
with no network and no media of the user's.

A 32-second piece (an arpeggio over four chords, a soft bass and a pulse, panned
across the stereo field) written as Ogg Opus at 48 kHz, so the engine can pass it
through untouched, and as mp3 at 44.1 kHz, so it can also show transcoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loadtest.media import encode_blocks

__all__ = ["DEMO_TITLE", "ensure_demo_tracks", "render_demo"]

DEMO_TITLE = "audiogate demo"
_RATE = 48_000
_BPM = 120
# I - vi - IV - V in C major, as MIDI note numbers.
_CHORDS = ([60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62])


def _hz(note: int) -> float:
    return float(440.0 * 2 ** ((note - 69) / 12))


def _envelope(length: int, attack: float = 0.005, release: float = 0.25) -> np.ndarray:
    t = np.arange(length) / _RATE
    return np.minimum(1.0, t / attack) * np.exp(-t / release)


def render_demo(seconds: float = 32.0) -> np.ndarray:
    """The demo as float32 stereo samples at 48 kHz, shape (2, n)."""
    total = int(seconds * _RATE)
    left = np.zeros(total)
    right = np.zeros(total)
    beat = int(_RATE * 60 / _BPM)
    sixteenth = beat // 4
    bar = beat * 4
    for bar_index in range(total // bar + 1):
        chord = _CHORDS[bar_index % len(_CHORDS)]
        start = bar_index * bar
        for step in range(16):
            at = start + step * sixteenth
            if at >= total:
                break
            note = chord[step % 3] + (12 if step % 6 >= 3 else 0)
            length = min(sixteenth * 2, total - at)
            t = np.arange(length) / _RATE
            tone = np.sin(2 * np.pi * _hz(note) * t) + 0.3 * np.sin(4 * np.pi * _hz(note) * t)
            voice = 0.16 * tone * _envelope(length, release=0.12)
            pan = 0.5 + 0.4 * np.sin(step / 16 * 2 * np.pi)
            left[at : at + length] += voice * (1 - pan)
            right[at : at + length] += voice * pan
        length = min(bar, total - start)
        if length > 0:
            t = np.arange(length) / _RATE
            bass = 0.22 * np.sin(2 * np.pi * _hz(chord[0] - 24) * t) * _envelope(length, 0.02, 0.9)
            left[start : start + length] += bass
            right[start : start + length] += bass
        for kick in range(4):
            at = start + kick * beat
            length = min(beat // 2, total - at)
            if length <= 0:
                continue
            t = np.arange(length) / _RATE
            sweep = np.sin(2 * np.pi * (55 + 60 * np.exp(-t * 40)) * t)
            pulse = 0.35 * sweep * _envelope(length, 0.001, 0.08)
            left[at : at + length] += pulse
            right[at : at + length] += pulse
    fade = min(total, _RATE)
    ramp = np.linspace(1.0, 0.0, fade)
    left[-fade:] *= ramp
    right[-fade:] *= ramp
    return np.clip(np.stack([left, right]), -1.0, 1.0).astype(np.float32)


def _write(path: Path, samples: np.ndarray, container_format: str, codec: str,
           rate: int, bit_rate: int) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    step = _RATE // 5
    blocks = (samples[:, start : start + step] for start in range(0, samples.shape[1], step))
    encode_blocks(tmp, blocks, rate=rate, input_rate=_RATE, layout="stereo",
                  container_format=container_format, codec=codec, bit_rate=bit_rate,
                  title=DEMO_TITLE)
    tmp.replace(path)


def ensure_demo_tracks(directory: Path) -> dict[str, Path]:
    """Render the demo into *directory* unless it is already there.

    Returns the paths by kind: ``opus`` (Ogg Opus, passes through) and ``mp3``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"opus": directory / "demo.opus", "mp3": directory / "demo.mp3"}
    if all(p.exists() for p in paths.values()):
        return paths
    samples = render_demo()
    if not paths["opus"].exists():
        _write(paths["opus"], samples, "ogg", "libopus", _RATE, 160_000)
    if not paths["mp3"].exists():
        _write(paths["mp3"], samples, "mp3", "mp3", 44_100, 192_000)
    return paths
