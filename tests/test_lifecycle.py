"""The task owner and the back-off (``lifecycle``): pure rules and real tasks."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from lifecycle import Backoff, OwnerClosed, Process, TaskOwner, declare, ownership_table
from lifecycle.tasks import TaskSpec

pytestmark = pytest.mark.timeout(30)

# -- Backoff ---------------------------------------------------------------------------


def test_backoff_grows_by_its_factor_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, factor=2.0, cap=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5
    assert Backoff(1.0, factor=1.0).next() == Backoff(1.0).next() == 1.0


def test_backoff_jitter_stays_within_its_band_and_follows_the_rng() -> None:
    backoff = Backoff(1.0, factor=1.0, jitter=0.5, rng=random.Random(7))
    delays = [backoff.next() for _ in range(2000)]
    assert min(delays) >= 0.5 and max(delays) <= 1.5
    assert max(delays) - min(delays) > 0.9  # spread over the band, not a constant
    again = Backoff(1.0, factor=1.0, jitter=0.5, rng=random.Random(7))
    assert [again.next() for _ in range(2000)] == delays


def test_backoff_jitter_scales_the_grown_base() -> None:
    class Fixed(random.Random):
        def random(self) -> float:
            return 1.0

    backoff = Backoff(0.1, cap=0.4, jitter=0.5, rng=Fixed())
    assert [round(backoff.next(), 6) for _ in range(4)] == [0.15, 0.3, 0.6, 0.6]
    assert backoff.base == 0.4


@pytest.mark.parametrize("kwargs", [
    {"initial": 0.0}, {"initial": -1.0}, {"initial": 1.0, "factor": 0.5},
    {"initial": 2.0, "cap": 1.0}, {"initial": 1.0, "jitter": 1.5},
    {"initial": 1.0, "jitter": -0.1}, {"initial": float("nan")},
])
def test_backoff_refuses_parameters_out_of_range(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


# -- TaskOwner ---------------------------------------------------------------------------

WORK = declare("test-work-{key}", owner="TestOwner", what="work of a test",
               ends="its end, or the owner's aclose")
OTHER = declare("test-other", owner="SomeoneElse", what="not ours", ends="never")


async def test_spawned_tasks_are_named_kept_and_forgotten_when_done() -> None:
    owner = TaskOwner("TestOwner")
    release = asyncio.Event()
    task = owner.spawn(WORK, release.wait(), key="g1")
    assert task.get_name() == "test-work-g1"
    assert owner.tasks == {task} and len(owner) == 1
    release.set()
    await task
    assert len(owner) == 0


async def test_a_failed_task_is_logged_with_its_cause(caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    owner = TaskOwner("TestOwner", logger=logging.getLogger("test.owner"))

    async def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise RuntimeError("outer") from exc

    with caplog.at_level(logging.ERROR, logger="test.owner"):
        task = owner.spawn(WORK, fail(), key="g2")
        await asyncio.wait([task])
        await asyncio.sleep(0)
    assert owner.failures == 1
    (record,) = [r for r in caplog.records if r.name == "test.owner"]
    assert "test-work-g2" in record.getMessage() and "outer" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert isinstance(record.exc_info[1].__cause__, KeyError)
    assert getattr(record, "session_id", None) == "g2"


async def test_aclose_cancels_and_awaits_everything_and_refuses_new_work() -> None:
    owner = TaskOwner("TestOwner")
    cleaned: list[str] = []

    async def long(name: str) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            cleaned.append(name)

    tasks = [owner.spawn(WORK, long(str(i)), key=str(i)) for i in range(3)]
    await asyncio.sleep(0)
    await owner.aclose()
    assert sorted(cleaned) == ["0", "1", "2"]
    assert all(t.cancelled() for t in tasks) and len(owner) == 0
    assert owner.failures == 0  # cancellation is not a failure
    coroutine = long("late")
    with pytest.raises(OwnerClosed):
        owner.spawn(WORK, coroutine)
    assert coroutine.cr_frame is None  # closed, never started: no "never awaited"
    await owner.aclose()  # idempotent


async def test_join_waits_without_cancelling_including_tasks_started_meanwhile() -> None:
    owner = TaskOwner("TestOwner")
    done: list[int] = []

    async def step(n: int) -> None:
        await asyncio.sleep(0.01)
        done.append(n)
        if n < 3:
            owner.spawn(WORK, step(n + 1), key=str(n + 1))

    owner.spawn(WORK, step(1), key="1")
    await owner.join()
    assert done == [1, 2, 3]


async def test_a_task_of_another_owner_or_undeclared_is_refused() -> None:
    owner = TaskOwner("TestOwner")
    with pytest.raises(ValueError, match="cannot own"):
        owner.spawn(OTHER, asyncio.sleep(0))
    with pytest.raises(ValueError, match="never declared"):
        owner.spawn(TaskSpec("test-secret", "TestOwner", "", ""), asyncio.sleep(0))
    assert WORK.module == __name__


async def test_a_cancelled_aclose_still_cancels_the_tasks() -> None:
    owner = TaskOwner("TestOwner")
    stubborn_done = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.2)
            stubborn_done.set()

    task = owner.spawn(WORK, stubborn())
    await asyncio.sleep(0)
    closing = asyncio.create_task(owner.aclose())
    await asyncio.sleep(0.05)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await asyncio.wait_for(stubborn_done.wait(), 2)
    assert task.cancelled() or task.done()


def test_declarations_must_agree_and_render_as_a_table() -> None:
    assert declare("test-work-{key}", owner="TestOwner", what="work of a test",
                   ends="its end, or the owner's aclose") is not None
    with pytest.raises(ValueError, match="declared twice"):
        declare("test-work-{key}", owner="TestOwner", what="different", ends="x")
    specs = [
        TaskSpec("b-{key}", "Zed", "second", "later"),
        TaskSpec("a", "Alpha", "first", "soon"),
        TaskSpec("pool", "Alpha", "threads", "stop", Process.ENGINE, thread=True),
    ]
    assert ownership_table(specs) == (
        "**gateway**\n\n| task | what it does | owner | ends |\n|---|---|---|---|\n"
        "| `a` | first | Alpha | soon |\n"
        "| `b-{key}` | second | Zed | later |\n\n"
        "**engine**\n\n| task | what it does | owner | ends |\n|---|---|---|---|\n"
        "| `pool` (thread) | threads | Alpha | stop |\n")
    assert TaskSpec("unload-{key}", "R", "", "").task_name("7") == "unload-7"
    assert TaskSpec("unload-{key}", "R", "", "").task_name() == "unload"
