"""Any valid filter set, changed, rewound and sought at random, runs without crashing
the process and keeps the frame stream whole (tests/support/filter_fuzz.py).

The examples run in a child process: an FFmpeg assertion aborts the process it is in,
and the engine must never meet one; here it fails this test instead of the test run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("seed", [101, 202])
def test_random_filters_and_changes_never_crash(seed: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.filter_fuzz", "--examples", "30",
         "--seed", str(seed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"exit status {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )
    assert "30 examples passed" in result.stdout
