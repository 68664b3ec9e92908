"""Load generation and measurement against any engine that speaks the contract.

Used by ``bench/`` and by the ``audiogate-loadtest`` command.
"""

from __future__ import annotations

from loadtest.runner import (
    CapacityReport,
    LoadConfig,
    LoadReport,
    Target,
    run_capacity,
    run_load,
    run_sequential,
)

__all__ = [
    "CapacityReport",
    "LoadConfig",
    "LoadReport",
    "Target",
    "run_capacity",
    "run_load",
    "run_sequential",
]
