"""Loudness normalization: FFmpeg's EBU R128 meter, a gain that follows it, a limiter.

A queue of tracks mastered at different levels should play at one level. EBU R128's
measure of a programme's level is its *integrated loudness* (LUFS: K-weighted, gated
mean power). ``LoudnessMeter`` runs FFmpeg's ``ebur128`` filter on the track as it plays
and reports the integrated loudness so far; ``GainRider`` turns that into a gain
(``target - loudness``, at most ``maxGain`` dB up) that moves smoothly; the gain is
applied as a per-sample ramp before the filter graph, and the graph ends with FFmpeg's
``alimiter`` at the ``peak`` ceiling (``graph.py``).

Why not FFmpeg's ``loudnorm``: measured on this machine it costs ~540 µs per 20 ms
frame (it upsamples to 192 kHz) against ~50 µs for ``ebur128`` + ``alimiter``, and it
holds back 3 s of audio before its first output, so switching it on while playing could
not take effect within a fraction of a second. Why the gain is applied outside the graph:
FFmpeg's ``volume`` filter changes its gain once per frame, in steps; a ramp per sample
is free of zipper noise. That ramp (a multiplication) is the only arithmetic on samples
done here; measuring and limiting are FFmpeg's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Final

import av
import av.filter
import numpy as np
import numpy.typing as npt

from protocol import SAMPLE_RATE
from protocol.filters import Loudness

__all__ = ["GainRider", "LoudnessControl", "LoudnessMeter"]

_TIME_BASE: Final = Fraction(1, SAMPLE_RATE)

#: With loudness on and nothing measured yet (start of a track, or switching it on with
#: little kept input), input is held back until the meter has a reading, at most this
#: long; then it plays at the current gain (a silent intro has no loudness to measure).
_HOLD_SECONDS: Final = 0.5

#: ebur128 reports -70 LUFS (its absolute gate) until some audio passed the gate.
_SILENT: Final = -69.9

#: The gain never cuts by more than this (a track measured that loud is broken).
_MAX_CUT_DB: Final = 30.0

#: How fast the gain may move (dB per second of audio): quickly until it first reaches
#: the level the meter asks for, slowly afterwards, so the music's own dynamics (a quiet
#: verse, a loud chorus) are kept and only the track's overall level changes.
_ACQUIRE_DB_PER_S: Final = 40.0
_FOLLOW_DB_PER_S: Final = 3.0


class LoudnessMeter:
    """Integrated loudness (EBU R128) of everything fed so far, via FFmpeg's ``ebur128``.

    Not thread-safe; one per chain. ``ebur128`` reports every 100 ms of audio.
    """

    def __init__(self) -> None:
        self._graph = av.filter.Graph()
        self._graph.threads = 1
        source = self._graph.add_abuffer(
            sample_rate=SAMPLE_RATE,
            format="flt",
            layout="stereo",
            time_base=Fraction(1, SAMPLE_RATE),
        )
        meter = self._graph.add("ebur128", metadata="1", framelog="quiet")
        sink = self._graph.add("abuffersink")
        source.link_to(meter)
        meter.link_to(sink)
        self._graph.configure()
        self._pts = 0
        self._integrated: float | None = None
        #: Seconds of audio fed.
        self.seconds = 0.0

    @property
    def integrated(self) -> float | None:
        """LUFS so far, or None until some audio was loud enough to count."""
        return self._integrated

    def feed(self, block: npt.NDArray[np.float32]) -> None:
        """Measure ``block`` (float32, shape (n, 2))."""
        if not len(block):
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block).reshape(1, -1), format="flt", layout="stereo"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._pts += len(block)
        self.seconds += len(block) / SAMPLE_RATE
        self._graph.push(frame)
        while True:
            try:
                measured = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break
            value = measured.metadata.get("lavfi.r128.I")
            if value is not None:
                loudness = float(value)
                if loudness > _SILENT and math.isfinite(loudness):
                    self._integrated = loudness


class GainRider:
    """The loudness gain over time: pure arithmetic, no I/O.

    ``advance(measured, seconds)`` returns the linear gain at the start and at the end of
    the next ``seconds`` of audio, moving towards ``target - measured`` (bounded by
    ``maxGain`` up and 30 dB down) no faster than 40 dB/s until it first gets there, then
    3 dB/s. With no measurement yet, the gain holds.
    """

    def __init__(self, settings: Loudness, gain_db: float = 0.0) -> None:
        self.settings = settings
        self.gain_db = gain_db
        self._locked = False

    def desired(self, measured: float | None) -> float | None:
        """The gain (dB) that brings ``measured`` LUFS to the target, or None if unknown."""
        if measured is None:
            return None
        wanted = self.settings.target - measured
        return min(max(wanted, -_MAX_CUT_DB), self.settings.max_gain)

    def jump(self, measured: float | None) -> None:
        """Take the desired gain at once (used before any of the audio is heard)."""
        desired = self.desired(measured)
        if desired is not None:
            self.gain_db = desired
            self._locked = True

    def advance(self, measured: float | None, seconds: float) -> tuple[float, float]:
        """(start, end) linear gains for the next ``seconds`` of audio."""
        start = self.gain_db
        desired = self.desired(measured)
        if desired is not None:
            rate = _FOLLOW_DB_PER_S if self._locked else _ACQUIRE_DB_PER_S
            step = rate * seconds
            delta = min(max(desired - start, -step), step)
            self.gain_db = start + delta
            if abs(desired - self.gain_db) < 0.1:
                self._locked = True
        return _linear(start), _linear(self.gain_db)

    @property
    def locked(self) -> bool:
        """Whether the gain has reached a measured level once (acquisition is over)."""
        return self._locked

    @property
    def gain(self) -> float:
        """The current linear gain."""
        return _linear(self.gain_db)


class LoudnessControl:
    """A chain's loudness state: the meter (while loudness is on) and the gain rider
    (while any lane still applies loudness). Not thread-safe; one per chain."""

    def __init__(self, settings: Loudness | None = None) -> None:
        self.meter: LoudnessMeter | None = None
        self.rider: GainRider | None = None
        if settings is not None:
            self.meter = LoudnessMeter()
            self.rider = GainRider(settings)

    def snapshot(self) -> tuple[LoudnessMeter | None, GainRider | None]:
        return self.meter, self.rider

    def restore(self, state: tuple[LoudnessMeter | None, GainRider | None]) -> None:
        self.meter, self.rider = state

    def measure(self, block: npt.NDArray[np.float32]) -> None:
        """Meter a block of new input (float, shape (n, 2)) if loudness is on."""
        if self.meter is not None:
            self.meter.feed(block)

    def retune(self, settings: Loudness | None, kept: Iterable[npt.NDArray[np.float32]]) -> None:
        """Follow new settings. Switching loudness on meters the ``kept`` input first, so
        the gain is known for the frames about to be redone."""
        if settings is None:
            # A lane fading out may still apply loudness: the rider keeps its last gain
            # for it until the crossfade is over (``settle``).
            self.meter = None
            return
        if self.meter is None:
            self.meter = LoudnessMeter()
            for block in kept:
                self.meter.feed(block)
        if self.rider is None or self.rider.settings != settings:
            gain_db = self.rider.gain_db if self.rider is not None else 0.0
            self.rider = GainRider(settings, gain_db)
            self.rider.jump(self.meter.integrated)

    def settle(self, settings: Loudness | None) -> None:
        """No lane applies loudness any more unless ``settings`` say so."""
        if settings is None:
            self.rider = None

    def replay_gains(self) -> tuple[float, float] | None:
        """Gain for kept input replayed into a lane that newly applies loudness: the
        current one if it was measured, else None (hold until measured)."""
        rider = self.rider
        return (rider.gain, rider.gain) if rider is not None and rider.locked else None

    def assign(self, lengths: list[int], *, final: bool) -> list[tuple[float, float]] | None:
        """(start, end) gains for new input blocks of ``lengths`` samples, or None to
        hold them back (loudness on, nothing measured yet, under ``_HOLD_SECONDS`` held,
        not the end of the track)."""
        rider, meter = self.rider, self.meter
        if rider is None or meter is None:
            flat = rider.gain if rider is not None else 1.0
            return [(flat, flat)] * len(lengths)
        measured = meter.integrated
        if measured is None and sum(lengths) / SAMPLE_RATE < _HOLD_SECONDS and not final:
            return None
        if measured is not None and not rider.locked:
            rider.jump(measured)
        return [rider.advance(measured, length / SAMPLE_RATE) for length in lengths]


def _linear(db: float) -> float:
    return float(10.0 ** (db / 20.0))
