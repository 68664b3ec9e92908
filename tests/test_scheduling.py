"""The real-time clock thread (audiogate.scheduling): granted, refused, given back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from audiogate import scheduling
from audiogate.scheduling import RealtimeClock


def test_priority_zero_leaves_the_thread_alone() -> None:
    async def run() -> str:
        return RealtimeClock(0).start()

    before = os.sched_getscheduler(0)
    assert asyncio.run(run()) == "normal (real-time clock priority off)"
    assert os.sched_getscheduler(0) == before


def test_without_the_right_to_real_time_it_runs_normally_and_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(scheduling.os, "sched_setscheduler", refuse)

    async def run() -> str:
        return RealtimeClock(10).start()

    words = asyncio.run(run())
    assert words.startswith("normal (real-time scheduling not permitted")
    assert "CAP_SYS_NICE" in words and "RLIMIT_RTPRIO" in words


_CHILD = textwrap.dedent("""
    import asyncio, os, signal, threading
    from audiogate import scheduling

    async def main():
        clock = scheduling.RealtimeClock(10)
        words = clock.start()
        if not words.startswith("real-time"):
            print("refused", words)
            return
        assert os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR
        seen = []
        # A thread this one starts is normal (reset on fork applies to clones too).
        threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0))).start()
        await asyncio.sleep(0.05)
        assert seen == [os.SCHED_OTHER], seen
        # SIGXCPU (the RTTIME limit): back to normal at once, with words for /health.
        os.kill(os.getpid(), signal.SIGXCPU)
        await asyncio.sleep(0.05)
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        print("demoted", clock.description)

    asyncio.run(main())
""")


def test_the_clock_thread_runs_real_time_and_falls_back_on_sigxcpu() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    if done.stdout.startswith("refused"):
        # A host that grants no real time (no CAP_SYS_NICE, no RLIMIT_RTPRIO): the
        # refusal is the other test's; here the words must say so.
        assert "not permitted" in done.stdout or "unavailable" in done.stdout
        return
    assert done.stdout.strip() == (
        "demoted normal for now (the clock thread ran without a pause)"), done.stdout
