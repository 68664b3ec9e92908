"""Random valid filter sets and random live use of a FilterChain, in a child process.

FFmpeg can abort the whole process on an internal assertion (atempo did, on large
frames at high tempo), which no ``try`` catches; so this runs as its own process
(``python -m tests.support.filter_fuzz --examples N --seed S``) and the test checks its
exit status. Each example: a random filter set from Lavalink's full ranges, noise pushed
in random block sizes, random ``configure``/``rewind``/``seek`` calls on the way, then
``flush``; frame numbers must run on without a gap, positions must grow between seeks,
every frame must be 3840 bytes.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from typing import Any

import numpy as np

from audio_engine.audio.filters import FilterChain, FilteredFrame, RewindError, parse_filters


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def random_filters(rng: random.Random) -> dict[str, Any]:
    """A valid Lavalink filters object with a random subset of filters."""
    data: dict[str, Any] = {}

    def maybe() -> bool:
        return rng.random() < 0.3

    if maybe():
        data["volume"] = rng.uniform(0, 5)
    if maybe():
        bands = rng.sample(range(15), rng.randint(1, 15))
        data["equalizer"] = [{"band": b, "gain": rng.uniform(-0.25, 1.0)} for b in bands]
    if maybe():
        data["karaoke"] = {
            "level": rng.uniform(0, 1),
            "monoLevel": rng.uniform(0, 1),
            "filterBand": rng.uniform(1, 23_999),
            "filterWidth": rng.uniform(1, 23_999),
        }
    if maybe():
        while True:
            speed, pitch, rate = (_log_uniform(rng, 0.25, 4.0) for _ in range(3))
            if 0.25 <= speed * rate <= 4 and 0.25 <= pitch * rate <= 4:
                break
        data["timescale"] = {"speed": speed, "pitch": pitch, "rate": rate}
    if maybe():
        data["tremolo"] = {"frequency": _log_uniform(rng, 1e-3, 20_000), "depth": rng.random()}
    if maybe():
        data["vibrato"] = {"frequency": rng.uniform(1e-3, 14), "depth": rng.random()}
    if maybe():
        data["rotation"] = {"rotationHz": rng.uniform(-100, 100)}
    if maybe():
        keys = ["sinOffset", "sinScale", "cosOffset", "cosScale", "tanOffset", "tanScale",
                "offset", "scale"]  # fmt: skip
        data["distortion"] = {key: rng.uniform(-10, 10) for key in keys}
    if maybe():
        keys = ["leftToLeft", "leftToRight", "rightToLeft", "rightToRight"]
        data["channelMix"] = {key: rng.random() for key in keys}
    if maybe():
        data["lowPass"] = {"smoothing": _log_uniform(rng, 0.5, 1e4)}
    if maybe():
        data["loudness"] = {
            "target": rng.uniform(-40, -5),
            "peak": rng.uniform(-9, 0),
            "maxGain": rng.uniform(0, 30),
        }
    return data


def _check(frames: list[FilteredFrame], seeks: set[int]) -> None:
    for previous, frame in itertools.pairwise(frames):
        assert frame.index == previous.index + 1, (previous.index, frame.index)
        if frame.index not in seeks:
            assert frame.position > previous.position, (previous, frame)
    assert all(len(frame.pcm) == 3840 for frame in frames)


def run_example(rng: random.Random) -> None:
    seconds = rng.uniform(0.2, 2.0)
    samples = np.clip(
        np.random.default_rng(rng.randrange(2**32)).normal(0, 0.2, (round(seconds * 48_000), 2)),
        -1,
        1,
    )
    data = (samples * 32767).astype(np.int16).tobytes()
    chain = FilterChain(parse_filters(random_filters(rng)), position=rng.uniform(0, 100))
    frames: list[FilteredFrame] = []
    seeks: set[int] = set()
    offset = 0
    while offset < len(data):
        size = rng.choice([1, 7, 480, 960, 4_000, 24_000, 96_000]) * 4
        frames += chain.push(data[offset : offset + size])
        offset += size
        action = rng.random()
        if action < 0.15:
            chain.configure(parse_filters(random_filters(rng)))
        elif action < 0.25 and frames:
            back = rng.randint(0, min(len(frames), 60))
            try:
                chain.rewind(frames[-1].index + 1 - back)
            except RewindError:
                continue
            del frames[len(frames) - back :]
        elif action < 0.28:
            chain.seek(rng.uniform(0, 100))
            seeks.add(chain.next_index)
    frames += chain.flush()
    _check(frames, seeks)
    chain.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for example in range(args.examples):
        rng = random.Random(args.seed * 1_000_003 + example)
        try:
            run_example(rng)
        except Exception as exc:
            print(f"example {example} (seed {args.seed}) failed: {exc!r}", file=sys.stderr)
            raise
    print(f"{args.examples} examples passed")


if __name__ == "__main__":
    main()
