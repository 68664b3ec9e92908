"""What a session costs, whether one more fits, and which libopus complexity to use
(pure: the front feeds it measurements and asks).

**Units.** A plain transcoding session at complexity 10 is one unit. Its encoder is
about half of that (libopus at complexity 10 is ~160 µs of a ~310 µs frame in
``bench/filters.py``); at complexity 8 or 5 the encoder costs about 85 % or 62 % of
that (``bench/opus_encode.py``), so the session about 0.93 or 0.81 units. A filter
adds its own share (``FILTER_UNITS``, from ``bench/filters.py``: its µs per frame
over the bare pipeline's), whatever the complexity. A passthrough session (Opus
packets forwarded as they are) is ``PASSTHROUGH_UNITS``.

**Cores per unit** (``CostModel``) start from a calibration (the bare pipeline timed
on this machine when the engine starts, with the engine's overhead on top) and then
follow what the engine measures: its CPU over the last seconds divided by the units
it carried, once enough sessions play for the quotient to mean something.

**Admission** (``Admission.decide``): a play is charged its projected units the moment
it is accepted (not when a measurement catches up, so a burst is judged on everything
already accepted). Before refusing, the complexity steps down (10 → 8 → 5,
``COMPLEXITY_STEPS``); a play is refused with 503 only when even the lowest step
would put the engine over ``max_load`` of its budget, or when its sessions are already
degrading (frames missing, ticks late) while it is busy. The complexity steps back
up once the load at the higher step stays under ``max_load - RESTORE_MARGIN`` for
``RESTORE_AFTER`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "COMPLEXITY_STEPS",
    "ENCODER_SHARE",
    "FILTER_UNITS",
    "PASSTHROUGH_UNITS",
    "RESTORE_AFTER",
    "RESTORE_MARGIN",
    "Admission",
    "CostModel",
    "Decision",
    "Load",
    "complexity_factor",
    "play_units",
]

#: The libopus complexities the engine steps through under load, best first: 8 costs
#: about 10 % less than 10 per encoded frame and is hard to tell apart from it; 5 about
#: 40 % less (bench/opus_encode.py), still far above the quality of a 64 kb/s stream.
COMPLEXITY_STEPS: Final = (10, 8, 5)
#: Share of a plain transcoding session spent in the encoder at complexity 10.
ENCODER_SHARE: Final = 0.5
#: Encoder cost at each complexity relative to complexity 10 (bench/opus_encode.py).
_ENCODER_RELATIVE: Final[Mapping[int, float]] = {10: 1.0, 9: 0.95, 8: 0.85, 7: 0.8,
                                                 6: 0.7, 5: 0.62}
#: Extra units of each filter (its µs per frame over a ~310 µs plain session).
FILTER_UNITS: Final[Mapping[str, float]] = {
    "volume": 0.02,
    "equalizer": 0.6,  # 15 bands; a preset touching fewer costs less, counted as all
    "karaoke": 0.08,
    "timescale": 0.25,
    "tremolo": 0.04,
    "vibrato": 0.06,
    "rotation": 0.18,
    "distortion": 0.2,
    "channelMix": 0.03,
    "lowPass": 0.05,
    "loudness": 0.2,
}
#: A passthrough session (demux, page, socket) against a transcoding one.
PASSTHROUGH_UNITS: Final = 0.05
#: Load must stay this far under ``max_load`` at the higher complexity before it is
#: restored, and for this long: a step up that would be undone at once costs more
#: than it gives.
RESTORE_MARGIN: Final = 0.1
RESTORE_AFTER: Final = 5.0
#: Units below which the measured cost per unit is not trusted (the engine's own
#: overhead would dominate it).
_MIN_UNITS_TO_LEARN: Final = 8.0
#: Weight of a new measurement in the learned cost (one per half second: the cost
#: follows a change within a few seconds, a noisy sample moves it little).
_LEARN_RATE: Final = 0.2


def complexity_factor(level: int) -> float:
    """Units of a plain transcoding session encoding at *level*."""
    relative = _ENCODER_RELATIVE.get(level, 0.6 if level < 5 else 1.0)
    return 1.0 - ENCODER_SHARE * (1.0 - relative)


def play_units(*, transcoding: bool, filters: Iterable[str]) -> tuple[float, float]:
    """A session's units as ``(encoder-bearing, fixed)``: the first scales with the
    complexity, the second (filters, passthrough) does not."""
    extra = sum(FILTER_UNITS.get(name, 0.1) for name in filters)
    if not transcoding:
        return 0.0, PASSTHROUGH_UNITS + extra
    return 1.0, extra


@dataclass(frozen=True, slots=True)
class Load:
    """The units the engine carries: ``encoding`` (transcoding sessions, scaled by
    the complexity) and ``fixed`` (filters and passthrough)."""

    encoding: float = 0.0
    fixed: float = 0.0

    def at(self, level: int) -> float:
        """Units at complexity *level*."""
        return self.encoding * complexity_factor(level) + self.fixed

    def __add__(self, other: Load) -> Load:
        return Load(self.encoding + other.encoding, self.fixed + other.fixed)


class CostModel:
    """Cores per unit: a calibrated prior, then learned from measurements.

    Args:
        prior: cores one unit costs before anything was measured.
    """

    def __init__(self, prior: float) -> None:
        if prior <= 0:
            raise ValueError("the prior cost must be positive")
        self.prior = prior
        self.per_unit = prior
        self.learned = False

    def observe(self, cores: float, units: float) -> None:
        """The engine used *cores* (averaged over the last seconds) while carrying
        *units* (at the complexity it had then)."""
        if units < _MIN_UNITS_TO_LEARN or cores <= 0:
            return
        measured = cores / units
        if not self.learned:
            self.per_unit = measured
            self.learned = True
        else:
            self.per_unit += _LEARN_RATE * (measured - self.per_unit)

    def cores(self, units: float) -> float:
        return units * self.per_unit


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a play: take it (at *complexity*), or refuse it with
    *message* and a ``Retry-After`` of *retry_after* seconds."""

    accept: bool
    complexity: int
    message: str = ""
    retry_after: int = 0


#: ``Retry-After`` seconds: an engine at capacity frees it as tracks end (minutes), but
#: a pool retries elsewhere at once and a user may try again soon; a degraded one may
#: recover within seconds.
RETRY_AFTER_FULL: Final = 10
RETRY_AFTER_DEGRADED: Final = 5


class Admission:
    """Decides plays and the complexity (see the module docstring).

    Args:
        budget: cores the engine may use.
        max_load: share of *budget* the engine may be brought to (1: no refusals for
            load, the session count alone).
        top: the complexity to use when there is room (the setting).
        steps: the complexities to step through, best first.
    """

    def __init__(self, *, budget: float, max_load: float, top: int,
                 steps: tuple[int, ...] = COMPLEXITY_STEPS) -> None:
        if budget <= 0:
            raise ValueError("the CPU budget must be positive")
        self.budget = budget
        self.max_load = max_load
        self.levels = (top, *(s for s in steps if s < top))
        self.complexity = top
        #: Since when the load would have allowed the next higher complexity.
        self._room_since: float | None = None

    def _fits(self, model: CostModel, load: Load, level: int, share: float) -> bool:
        return model.cores(load.at(level)) <= share * self.budget

    def decide(self, model: CostModel, carried: Load, play: Load, *,
               degraded: bool = False) -> Decision:
        """Whether a play costing *play* fits beside *carried*; may step the complexity
        down (the returned one is the engine's from now on)."""
        if self.max_load >= 1.0:
            return Decision(True, self.complexity)
        total = carried + play
        for level in self.levels:
            if self.levels.index(level) < self.levels.index(self.complexity):
                continue  # never step up for a play: that is ``settle``'s job
            if self._fits(model, total, level, self.max_load):
                if level != self.complexity:
                    self.complexity = level
                    self._room_since = None
                if degraded and model.cores(carried.at(level)) >= 0.5 * self.budget:
                    break
                return Decision(True, level)
        else:
            used = model.cores(carried.at(self.levels[-1])) / self.budget
            if self.complexity != self.levels[-1]:
                self.complexity = self.levels[-1]
                self._room_since = None
            return Decision(
                False, self.complexity,
                f"the engine is at capacity ({used:.0%} of its CPU budget in use, another "
                f"stream would take it past {self.max_load:.0%}); try again in "
                f"{RETRY_AFTER_FULL} s", RETRY_AFTER_FULL)
        return Decision(
            False, self.complexity,
            "the engine is overloaded (its streams are falling behind); try again in "
            f"{RETRY_AFTER_DEGRADED} s", RETRY_AFTER_DEGRADED)

    def settle(self, model: CostModel, carried: Load, now: float, *,
               degraded: bool = False) -> int:
        """Step the complexity down when *carried* no longer fits at it (or the
        sessions degrade), or up once the next higher one has fitted with margin for
        ``RESTORE_AFTER`` seconds. Returns the complexity to use."""
        index = self.levels.index(self.complexity)
        if self.max_load < 1.0 and index + 1 < len(self.levels) and (
                degraded or not self._fits(model, carried, self.complexity, self.max_load)):
            self.complexity = self.levels[index + 1]
            self._room_since = None
            return self.complexity
        if index == 0 or degraded:
            self._room_since = None
            return self.complexity
        higher = self.levels[index - 1]
        if self._fits(model, carried, higher, self.max_load - RESTORE_MARGIN):
            if self._room_since is None:
                self._room_since = now
            elif now - self._room_since >= RESTORE_AFTER:
                self.complexity = higher
                self._room_since = None
        else:
            self._room_since = None
        return self.complexity
