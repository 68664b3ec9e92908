"""The admission gate for new sources: a few at a time, in arrival order, and
none while the engine is behind."""

from __future__ import annotations

import asyncio

import pytest

from audio_engine.sessions.admission import AdmissionRefused, OpenGate, admissible

pytestmark = pytest.mark.timeout(30)


def test_the_rule() -> None:
    limits = {"max_pool_lag": 0.005, "max_loop_lag": 0.03}
    assert admissible(0, 2, 0.0, 0.0, **limits)
    assert not admissible(2, 2, 0.0, 0.0, **limits)  # enough sources opening
    assert not admissible(0, 2, 0.2, 0.0, **limits)  # the pools are behind
    assert not admissible(0, 2, 0.0, 0.2, **limits)  # the event loop is behind


async def test_a_burst_is_admitted_a_few_at_a_time_in_arrival_order() -> None:
    gate = OpenGate(concurrency=2)
    order: list[int] = []
    opening_seen: list[int] = []
    done = asyncio.Event()
    two_in = asyncio.Event()

    async def source(index: int) -> None:
        admission = await gate.admit()
        order.append(index)
        opening_seen.append(gate.opening)
        if index < 2:
            if len(order) == 2:
                two_in.set()
            await done.wait()
        admission.release()
        admission.release()  # idempotent

    tasks = [asyncio.create_task(source(i)) for i in range(20)]
    await asyncio.wait_for(two_in.wait(), 5)
    await asyncio.sleep(0.05)  # the others had time to get in, had the gate let them
    assert order == [0, 1] and gate.waiting == 18  # the rest wait while two open
    done.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == list(range(20))
    assert max(opening_seen) <= 2
    assert gate.opening == 0 and gate.waiting == 0


async def test_nothing_opens_while_the_pools_are_behind() -> None:
    lag = 1.0
    gate = OpenGate(concurrency=4, pool_lag=lambda: lag)
    waiter = asyncio.create_task(gate.admit())
    await asyncio.sleep(0.2)
    assert not waiter.done()
    lag = 0.0
    admission = await asyncio.wait_for(waiter, 5)
    assert gate.opening == 1
    admission.release()


async def test_a_source_that_waits_too_long_is_refused_and_cancelling_is_safe() -> None:
    gate = OpenGate(concurrency=1, max_wait=0.2)
    held = await gate.admit()
    with pytest.raises(AdmissionRefused, match="too busy"):
        await gate.admit()
    patient = OpenGate(concurrency=1)
    first = await patient.admit()
    waiter = asyncio.create_task(patient.admit())
    await asyncio.sleep(0.05)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert patient.waiting == 0 and patient.opening == 1
    first.release()
    second = await asyncio.wait_for(patient.admit(), 5)
    second.release()
    held.release()
