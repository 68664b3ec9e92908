"""One filter set running over a stretch of a track: a ``Lane``.

A lane owns the FFmpeg graphs (and numpy steps) of one ``GraphPlan``. It is started at a
track position, fed float stereo blocks, and queues what comes out. Its output sample
``j`` corresponds to track time ``start + j · tempo / 48000``: every step of a plan keeps
its output aligned with its input (``alimiter`` with latency compensation, ``vibrato``
primed and trimmed, atempo stretching from the first sample), only some of them hold
samples back until more input (or ``finish()``) arrives. The chain runs one lane, and two
while it crossfades from one filter set to the next.

Not thread-safe: the chain calls it from one worker at a time.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import av
import av.filter
import numpy as np
import numpy.typing as npt

from audio_engine.audio.filters.graph import GraphPlan, Stage, build
from protocol import SAMPLE_RATE

__all__ = ["Lane", "SampleQueue", "Samples"]

Samples = npt.NDArray[np.float32]

_TIME_BASE: Final = Fraction(1, SAMPLE_RATE)

#: Samples per frame handed to FFmpeg (100 ms): big enough that the per-call overhead
#: stays small, small enough to stay clear of atempo's trouble with large frames.
_MAX_FRAME: Final = SAMPLE_RATE // 10

#: Silence fed after the last input so every filter's tail comes out (≈ 85 ms; atempo's
#: window at the slowest tempo is under 50 ms of output).
_TAIL_PAD: Final = 4096


def _empty() -> Samples:
    return np.zeros((0, 2), dtype=np.float32)


class SampleQueue:
    """A FIFO of float stereo samples, taken in any amounts."""

    def __init__(self) -> None:
        self._blocks: list[Samples] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, block: Samples) -> None:
        if len(block):
            self._blocks.append(block)
            self._size += len(block)

    def prepend(self, block: Samples) -> None:
        if len(block):
            self._blocks.insert(0, block)
            self._size += len(block)

    def take(self, count: int) -> Samples:
        """Remove and return the first ``count`` samples (fewer if fewer are queued)."""
        count = min(count, self._size)
        if count == 0:
            return _empty()
        parts: list[Samples] = []
        needed = count
        while needed:
            head = self._blocks[0]
            if len(head) <= needed:
                parts.append(head)
                self._blocks.pop(0)
                needed -= len(head)
            else:
                parts.append(head[:needed])
                self._blocks[0] = head[needed:]
                needed = 0
        self._size -= count
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def take_all(self) -> Samples:
        return self.take(self._size)

    def drop_last(self, count: int) -> int:
        """Remove up to ``count`` samples from the end; returns how many were removed."""
        removed = 0
        while self._blocks and removed < count:
            tail = self._blocks[-1]
            cut = min(len(tail), count - removed)
            if cut == len(tail):
                self._blocks.pop()
            else:
                self._blocks[-1] = tail[: len(tail) - cut]
            removed += cut
        self._size -= removed
        return removed

    def clear(self) -> None:
        self._blocks.clear()
        self._size = 0


def _pull_all(graph: av.filter.Graph, into: list[Samples]) -> None:
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        into.append(np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1, 2))


class Lane:
    """``plan`` applied to the track from ``start`` (seconds) on.

    Raises (constructor):
        av.FFmpegError: FFmpeg refused the graph.
    """

    def __init__(self, plan: GraphPlan, start: float) -> None:
        self.plan = plan
        self.start = start
        #: Output samples produced so far (taken or still queued).
        self.produced = 0
        #: Input samples fed so far.
        self.consumed = 0
        self.output = SampleQueue()
        self._stages: list[Stage] = build(plan)
        self._pts = [0] * len(self._stages)
        self._finished = False

    @property
    def tempo(self) -> float:
        return self.plan.tempo

    def track_time(self, produced: int) -> float:
        """Track seconds of this lane's output sample number ``produced``."""
        return self.start + produced * self.plan.tempo / SAMPLE_RATE

    def feed(self, block: Samples) -> None:
        """Run ``block`` (float32, shape (n, 2)) through the stages; queue the output."""
        if self._finished:
            raise RuntimeError("lane already finished")
        self.consumed += len(block)
        self._run(block, final=False)

    def finish(self) -> None:
        """End of input: drain every stage (atempo and the limiter hold samples back).

        FFmpeg's atempo ends a few milliseconds early or late (its last window), so the
        stages get ``_TAIL_PAD`` samples of silence before the end, and the output is cut
        (or, never seen, padded) to exactly ``consumed / tempo`` samples: the track's
        last sample is in it, and nothing after it is.
        """
        if self._finished:
            return
        self._finished = True
        if self._stages:
            self._run(np.zeros((_TAIL_PAD, 2), dtype=np.float32), final=True)
        expected = round(self.consumed / self.plan.tempo)
        if self.produced > expected:
            self.produced -= self.output.drop_last(self.produced - expected)
        if self.produced < expected:
            self.output.append(np.zeros((expected - self.produced, 2), dtype=np.float32))
            self.produced = expected

    def close(self) -> None:
        """Release the graphs. Idempotent."""
        self._stages = []
        self._finished = True

    def _run(self, block: Samples, *, final: bool) -> None:
        current = block
        for index, stage in enumerate(self._stages):
            if isinstance(stage, av.filter.Graph):
                outputs: list[Samples] = []
                for start in range(0, len(current), _MAX_FRAME):
                    piece = current[start : start + _MAX_FRAME]
                    frame = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(piece, dtype=np.float32).reshape(1, -1),
                        format="flt",
                        layout="stereo",
                    )
                    frame.sample_rate = SAMPLE_RATE
                    frame.pts = self._pts[index]
                    frame.time_base = _TIME_BASE
                    self._pts[index] += len(piece)
                    stage.push(frame)
                    _pull_all(stage, outputs)
                if final:
                    stage.push(None)
                    _pull_all(stage, outputs)
                current = (
                    _empty()
                    if not outputs
                    else outputs[0]
                    if len(outputs) == 1
                    else np.concatenate(outputs)
                )
            elif len(current):
                current = stage(current)
        self.produced += len(current)
        self.output.append(current)
