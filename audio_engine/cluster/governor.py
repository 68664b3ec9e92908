"""The engine's load governor: the front's judgement of what one more play costs, kept
current from what the workers measure.

The rules are ``cost``'s (pure); the governor holds their inputs and applies their
answers:

- the **budget** (``ENGINE_CPU_BUDGET``, default the cores the front may use) and the
  **admission** (``Admission``): a new play is accepted or refused on its projected
  units beside the units the session directory says the engine carries, stepping the
  libopus complexity down first;
- the **cost per unit** (``CostModel``): its prior from the bare codec pipeline the
  first worker times at start-up (``audio.calibrate``, plus 15 %), then learned from
  the engine's measured CPU;
- the **measured load** (``LoadModel``): every ``LOAD_INTERVAL`` the front's sampler
  hands it the workers' summed load; the cost per unit is observed and the complexity
  settled (down under load, back up once the load has stayed low);
- every change of complexity is logged, counted and cast to every worker.

It starts no task and owns no worker: the front's sampler calls ``sample``, the front's
play path calls ``admit``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from audio_engine.cluster.cost import Admission, CostModel, Decision, Load
from audio_engine.cluster.directory import SessionDirectory
from audio_engine.cluster.pool import WorkerPool, usable_cores
from audio_engine.cluster.workers import WorkerProcess
from audio_engine.metrics import EngineMetrics
from audio_engine.sessions.admission import DEGRADED_MIN_LOAD, Headroom, LoadModel, LoadSample
from audio_engine.settings import EngineSettings
from protocol import FRAME_DURATION

__all__ = ["LoadGovernor"]

log = logging.getLogger(__name__)


class LoadGovernor:
    """See the module docstring.

    Args:
        settings: the engine's settings (CPU budget, maximum load, top complexity).
        sessions: the front's session directory (the units carried).
        pool: the worker processes (the complexity is cast to them).
        metrics: the front's metrics (complexity gauge and steps).
        cost_prior: cores one unit costs before anything was measured; None: from
            the bare pipeline the first worker times (``calibrate``).
    """

    def __init__(self, settings: EngineSettings, sessions: SessionDirectory[WorkerProcess],
                 pool: WorkerPool, metrics: EngineMetrics, *,
                 cost_prior: float | None = None) -> None:
        self._sessions = sessions
        self._pool = pool
        self._metrics = metrics
        self.budget = settings.cpu_budget or float(usable_cores())
        self.admission = Admission(budget=self.budget, max_load=settings.max_load,
                                   top=settings.opus_complexity)
        #: Whether the first worker should time the bare pipeline (no prior was given).
        self.wants_calibration = cost_prior is None
        #: Until the first worker has timed the bare pipeline: 0.02 cores (a session
        #: of about 350 µs per frame, this development machine's).
        self.cost = CostModel(cost_prior or 0.02)
        self._calibrated = cost_prior is not None
        self.load = LoadModel(budget=self.budget)
        #: The complexity the last sample settled on: the load since was measured at it.
        self._sampled = self.admission.complexity
        metrics.opus_complexity.set(self.admission.complexity)

    @property
    def complexity(self) -> int:
        """The libopus complexity of transcoding sessions now."""
        return self.admission.complexity

    def calibrate(self, bare_micros: float) -> None:
        """The first worker timed the bare codec pipeline (µs per frame): the cost
        model's prior, once (later timings are ignored)."""
        if self._calibrated:
            return
        self._calibrated = True
        self.cost = CostModel(_prior_from(bare_micros))
        log.info("bare codec pipeline: %.0f µs per frame; one transcoding session "
                 "costs about %.3f cores", bare_micros, self.cost.prior)

    def admit(self, projected: Load) -> Decision:
        """Whether a new play of *projected* units fits beside what is carried; the
        complexity may step down for it (cast to the workers at once)."""
        before = self.admission.complexity
        decision = self.admission.decide(self.cost, self._sessions.carried(), projected,
                                         degraded=_degraded(self.load.headroom()))
        self._set_complexity(decision.complexity, before)
        return decision

    def sample(self, sample: LoadSample) -> None:
        """The workers' load over the last ``LOAD_INTERVAL``: learn the cost per unit
        and settle the complexity."""
        self.load.add(sample)
        room = self.load.headroom()
        carried = self._sessions.carried()
        before = self._sampled
        if room.seconds > 0:
            self.cost.observe(room.load * self.budget, carried.at(before))
        level = self.admission.settle(self.cost, carried, time.monotonic(),
                                      degraded=_degraded(room))
        self._set_complexity(level, before)
        self._sampled = level

    def headroom(self) -> dict[str, Any]:
        """``/stats`` ``headroom``, beside Lavalink's keys: the admission's inputs now."""
        room = self.load.headroom()
        level = self.admission.complexity
        carried = self._sessions.carried()
        projected = self.cost.cores(carried.at(self.admission.levels[-1]) + 1.0) / self.budget
        return {
            "load": round(room.load, 4),
            "projectedLoad": round(self.cost.cores(carried.at(level)) / self.budget, 4),
            "sessionCost": round(self.cost.per_unit / self.budget, 5),
            "maxLoad": self.admission.max_load,
            "cpuBudget": self.budget,
            "admitting": projected <= self.admission.max_load or self.admission.max_load >= 1,
            "opusComplexity": level,
            "workers": len(self._pool.live()),
            "tickLatenessMs": round(room.tick_lateness * 1000, 2),
            "poolLagMs": round(room.pool_lag * 1000, 2),
            "nulled": room.nulled,
            "deficit": room.deficit,
            "expectedFrames": room.expected_frames,
            "windowSeconds": round(room.seconds, 2),
        }

    def _set_complexity(self, level: int, before: int) -> None:
        if level == before:
            return
        log.info("libopus complexity %d -> %d (load %.0f%% of %.1f cores)", before, level,
                 100 * self.cost.cores(self._sessions.carried().at(level)) / self.budget,
                 self.budget)
        self._metrics.opus_complexity.set(level)
        self._metrics.complexity_steps.labels("down" if level < before else "up").inc()
        self._pool.cast("complexity", level)


def _degraded(room: Headroom) -> bool:
    """The sessions are failing (frames missing, ticks late) while the engine is
    busy: below half its budget, the cause is another process on the host."""
    return room.degraded and room.load >= DEGRADED_MIN_LOAD


def _prior_from(bare_micros: float) -> float:
    """Cores one plain transcoding session costs, from the bare pipeline's µs per
    frame plus the engine's own work on top (Ogg pages, the program, the clock, the
    front): measured at about 15 % (docs/performance.md)."""
    return bare_micros * 1.15 / 1e6 / FRAME_DURATION
