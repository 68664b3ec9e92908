"""Fair slots: the pure queue's rules, and the asyncio shell's waiting and
cancelling."""

from __future__ import annotations

import asyncio

import pytest

from audio_engine.sources.fair import FairQueue, FairSlots, SlotsBusy


def test_one_caller_cannot_hold_every_slot() -> None:
    queue: FairQueue[str] = FairQueue(capacity=4, per_caller=2, max_waiting=10)
    assert queue.request("a", "a1") and queue.request("a", "a2")
    assert not queue.request("a", "a3")  # a's share is used up
    assert queue.request("b", "b1")  # b still gets a slot at once
    assert queue.held == 3 and queue.waiting == 1


def test_freed_slots_go_round_robin_between_waiting_callers() -> None:
    queue: FairQueue[str] = FairQueue(capacity=2, per_caller=2, max_waiting=10)
    assert queue.request("a", "a1") and queue.request("a", "a2")
    for ticket in ("a3", "a4", "a5"):
        assert not queue.request("a", ticket)
    for ticket in ("b1", "b2"):
        assert not queue.request("b", ticket)
    assert not queue.request("c", "c1")
    granted = [queue.release("a")[0][1] for _ in range(2)]
    # a held both slots: the ones freed go to b and c before a's backlog.
    assert granted == ["b1", "c1"]
    assert [t for _, t in queue.release("c")] == ["a3"]  # a holds none now, b one
    assert [t for _, t in queue.release("b")] == ["b2"]  # b holds none, a one


def test_waiting_is_bounded_per_caller_and_cancel_withdraws() -> None:
    queue: FairQueue[str] = FairQueue(capacity=1, per_caller=1, max_waiting=2)
    assert queue.request("a", "a1")
    assert not queue.request("a", "a2")
    assert not queue.request("a", "a3")
    with pytest.raises(SlotsBusy):
        queue.request("a", "a4")
    assert not queue.request("b", "b1")  # another caller still queues
    queue.cancel("a", "a2")
    assert [t for _, t in queue.release("a")] == ["b1"]  # b's turn comes before a3's
    assert [t for _, t in queue.release("b")] == ["a3"]


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        FairQueue(0, 1, 1)


async def test_the_shell_grants_in_turn_and_frees_slots_of_cancelled_waiters() -> None:
    slots = FairSlots(capacity=1, per_caller=1, max_waiting=4)
    order: list[str] = []
    release = asyncio.Event()

    async def job(caller: str, name: str) -> None:
        async with slots.hold(caller, wait=10):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(job("a", "a1"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(job("a", "a2")), asyncio.create_task(job("b", "b1"))]
    doomed = asyncio.create_task(job("c", "c1"))
    await asyncio.sleep(0)
    assert slots.waiting == 3
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    assert slots.waiting == 2
    release.set()
    await asyncio.wait_for(asyncio.gather(first, *waiting), 5)
    assert order == ["a1", "b1", "a2"]  # a just released: b goes first
    assert slots.held == 0 and slots.waiting == 0


async def test_the_shell_gives_up_after_its_wait() -> None:
    slots = FairSlots(capacity=1, per_caller=1)
    async with slots.hold("a", wait=1):
        with pytest.raises(SlotsBusy):
            async with slots.hold("b", wait=0.05):
                pass
    assert slots.held == 0 and slots.waiting == 0
