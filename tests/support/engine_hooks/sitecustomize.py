"""Test aids for the engine processes the tests start: never part of the product.

Python imports ``sitecustomize`` at start-up from the first directory on its path that
has one; ``tests.support.hooks.hook_env`` puts this directory on ``PYTHONPATH`` with the
knobs below, so the engine's front and its worker processes (which inherit the
environment) apply them. Without a knob set, nothing is imported or changed.

- ``AUDIOGATE_TEST_LOOP_STALL_MS`` (and ``AUDIOGATE_TEST_LOOP_STALL_EVERY``, default 1):
  a worker keeps its event loop busy this long after every Nth tick, as a loaded
  engine's loop would be;
- ``AUDIOGATE_TEST_SESSION_CPU``: one unit of work (a plain transcoding session at
  complexity 10) costs this many cores, fixed: admission becomes deterministic (no
  measurement, no degradation rule);
- ``AUDIOGATE_TEST_RESTORE_AFTER``: seconds the load must stay low before the libopus
  complexity steps back up (instead of ``cost.RESTORE_AFTER``);
- ``AUDIOGATE_TEST_HUNG_AFTER``: seconds without a tick after which the front kills a
  worker (instead of ``front.WORKER_HUNG_AFTER``).
"""

from __future__ import annotations

import os
import time
from typing import Any


def _stall_ticks(milliseconds: float, every: int) -> None:
    from audio_engine.engine import Engine

    original = Engine._tick

    def tick(self: Any, index: int, lateness: float) -> None:
        original(self, index, lateness)
        if index % every == 0:
            end = time.perf_counter() + milliseconds / 1000
            while time.perf_counter() < end:  # holds the GIL, as real work would
                pass

    Engine._tick = tick  # type: ignore[method-assign]


def _fixed_cost(cores: float) -> None:
    from audio_engine.cluster import cost, governor

    governor._prior_from = lambda bare_micros: cores
    original_init = governor.LoadGovernor.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.cost = cost.CostModel(cores)

    governor.LoadGovernor.__init__ = init  # type: ignore[method-assign]
    cost.CostModel.observe = lambda self, cores, units: None  # type: ignore[method-assign]
    governor._degraded = lambda room: False


_stall = float(os.environ.get("AUDIOGATE_TEST_LOOP_STALL_MS", "0") or 0)
if _stall > 0:
    _stall_ticks(_stall, int(os.environ.get("AUDIOGATE_TEST_LOOP_STALL_EVERY", "1") or 1))
_cost = float(os.environ.get("AUDIOGATE_TEST_SESSION_CPU", "0") or 0)
if _cost > 0:
    _fixed_cost(_cost)
_hung = float(os.environ.get("AUDIOGATE_TEST_HUNG_AFTER", "0") or 0)
if _hung > 0:
    from audio_engine.cluster import front as _front_module

    _front_module.WORKER_HUNG_AFTER = _hung  # type: ignore[misc]
_restore = float(os.environ.get("AUDIOGATE_TEST_RESTORE_AFTER", "0") or 0)
if _restore > 0:
    from audio_engine.cluster import cost as _cost_module

    _cost_module.RESTORE_AFTER = _restore  # type: ignore[misc]
