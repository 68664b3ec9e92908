"""Per-frame Opus encode cost: opuslib (Debian's libopus0) against PyAV's libopus.

Both encode the same 20 ms frames of a music-like stereo signal (chords, noise,
a beat) at the engine's settings: 48 kHz stereo, VBR, application audio, 20 ms,
for each bitrate of the engine's formats and a few complexities. Prints a table
(microseconds per frame, real-time factor, mean packet size), never asserts.

Run: .venv/bin/python bench/opus_encode.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audio_engine.audio.codec import create_encoder
from audiogate.demo import render_demo
from loadtest.stats import format_table
from protocol import PCM_FRAME_BYTES


def _frames(seconds: float) -> list[bytes]:
    samples = render_demo(seconds)
    rng = np.random.default_rng(7)
    samples = samples + 0.02 * rng.standard_normal(samples.shape).astype(np.float32)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").T.reshape(-1).tobytes()
    return [pcm[i : i + PCM_FRAME_BYTES] for i in range(0, len(pcm) - PCM_FRAME_BYTES + 1,
                                                        PCM_FRAME_BYTES)]


def _measure(name: str, bitrate: int, complexity: int, frames: list[bytes],
             rounds: int) -> tuple[float, float]:
    best = float("inf")
    size = 0.0
    for _ in range(rounds):
        encoder = create_encoder(name, bitrate, complexity)  # type: ignore[arg-type]
        started = time.perf_counter()
        packets = [encoder.encode(frame) for frame in frames]
        best = min(best, (time.perf_counter() - started) / len(frames))
        size = sum(map(len, packets)) / len(packets)
    return best * 1e6, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frames = _frames(args.seconds)
    rows = []
    for bitrate in (128_000, 256_000):
        for complexity in (10, 5, 0):
            results = {
                name: _measure(name, bitrate, complexity, frames, args.rounds)
                for name in ("opuslib", "pyav")
            }
            lib, av_ = results["opuslib"], results["pyav"]
            rows.append((
                f"{bitrate // 1000} kb/s c{complexity}",
                f"{lib[0]:.1f}", f"{av_[0]:.1f}", f"{av_[0] / lib[0]:.2f}x",
                f"{20_000 / lib[0]:.0f}", f"{lib[1]:.0f}", f"{av_[1]:.0f}",
            ))
    print(f"{len(frames)} frames of 20 ms, best of {args.rounds} rounds, one thread")
    print(format_table(
        ["setting", "opuslib us/frame", "pyav us/frame", "pyav/opuslib",
         "opuslib x realtime", "opuslib bytes", "pyav bytes"],
        rows,
    ))


if __name__ == "__main__":
    main()
