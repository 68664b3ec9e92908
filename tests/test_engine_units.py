"""The engine's pure pieces on their own: the clock's schedule, the frame ring,
the output stream's packets, and the deadline-ordered elastic pool."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, Future

import pytest

from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.output import OutputStream
from audio_engine.sessions.pools import ElasticPool
from audio_engine.wire.clock import TickSchedule
from audio_engine.wire.ring import Frame, FrameRing, RingSize
from protocol import (
    NEED_DATA,
    AudioPacket,
    OggOpusWriter,
    OggPage,
    OggPageReader,
    StreamDecoder,
    encode_packet,
)

from .support.waiting import poll_until

# -- TickSchedule ----------------------------------------------------------------------


def test_ticks_fall_on_absolute_deadlines_without_drift() -> None:
    schedule = TickSchedule(100.0, period=0.02)
    assert schedule.due(100.0199) is None
    ticks = []
    for n in range(1, 10_001):
        deadline = 100.0 + n * 0.02
        assert schedule.next_deadline == pytest.approx(deadline, abs=1e-9)
        # Each tick runs a little late; the lateness never moves the next deadline.
        due = schedule.due(deadline + 0.003)
        assert due is not None
        ticks.append(due)
    assert [index for index, _ in ticks] == list(range(1, 10_001))
    assert all(lateness == pytest.approx(0.003) for _, lateness in ticks)
    assert schedule.slipped == 0


def test_a_short_stall_is_caught_up_tick_by_tick() -> None:
    schedule = TickSchedule(0.0, period=0.02, max_catch_up=5)
    now = 0.02 + 4 * 0.02 + 0.001  # 4 ticks behind: within the catch-up limit
    caught = []
    while (due := schedule.due(now)) is not None:
        caught.append(due)
    assert [index for index, _ in caught] == [1, 2, 3, 4, 5]
    assert [round(lateness, 3) for _, lateness in caught] == [0.081, 0.061, 0.041, 0.021,
                                                              0.001]
    assert schedule.slipped == 0
    assert schedule.due(now) is None


def test_a_long_stall_is_skipped_and_counted_not_burst() -> None:
    schedule = TickSchedule(0.0, period=0.02, max_catch_up=5)
    now = 0.02 + 50 * 0.02 + 0.005  # 50 ticks behind
    due = schedule.due(now)
    assert due is not None
    index, lateness = due
    assert index == 1 and lateness == pytest.approx(0.005)
    assert schedule.slipped == 50
    assert schedule.due(now) is None  # no burst: the schedule re-anchored at now
    assert schedule.next_deadline == pytest.approx(now - 0.005 + 0.02)


# -- FrameRing ---------------------------------------------------------------------------


def _frames(count: int, start: int = 0) -> list[Frame]:
    return [Frame(bytes([n % 256]), 1, n * 0.02) for n in range(start, start + count)]


def test_the_ring_is_a_bounded_fifo_that_hands_back_what_does_not_fit() -> None:
    ring = FrameRing(RingSize(capacity=5, low_water=2))
    assert ring.pop() is None and ring.needs_refill
    rest = ring.extend(_frames(7))
    assert len(ring) == 5 and ring.space == 0
    assert [f.position for f in rest] == [pytest.approx(0.10), pytest.approx(0.12)]
    assert [ring.pop() for _ in range(3)] == _frames(3)
    assert len(ring) == 2 and ring.needs_refill  # at the low-water mark
    assert ring.extend(rest) == []
    assert [ring.pop() for _ in range(4)] == _frames(2, 3) + rest
    assert ring.pop() is None


def test_the_ring_resizes_and_clears() -> None:
    ring = FrameRing(RingSize(4, 1))
    ring.extend(_frames(4))
    ring.resize(RingSize(2, 0))
    assert len(ring) == 4 and ring.space == 0  # frames already held are kept
    assert not ring.needs_refill
    ring.clear()
    assert len(ring) == 0 and ring.space == 2
    for bad in (RingSize(3, 3), RingSize(3, -1)):
        with pytest.raises(ValueError, match="low_water"):
            ring.resize(bad)


# -- OutputStream packets (what the stream makes of each encoded frame) ------------------


def _decoded(frames: list[Frame]) -> list[AudioPacket]:
    decoder = StreamDecoder()
    decoder.receive_data(b"".join(f.packet for f in frames))
    messages = decoder.events()
    assert all(isinstance(m, AudioPacket) for m in messages)
    return [m for m in messages if isinstance(m, AudioPacket)]


def test_pcm_frames_become_bare_packets() -> None:
    stream = OutputStream("pcm-1", OutputFormat.PCM, 0, None)
    data = [bytes([n]) * 3840 for n in range(3)]
    frames = [stream.emit(d, n * 0.02, last=n == 2) for n, d in enumerate(data)]
    assert [f.packet for f in frames] == [encode_packet("pcm-1", d) for d in data]
    assert [f.payload_size for f in frames] == [3840] * 3
    assert [f.last for f in frames] == [False, False, True]
    assert [f.number for f in frames] == [0, 1, 2]
    assert [p.payload for p in _decoded(frames)] == data
    assert stream.finished


def test_opus_frames_become_one_ogg_page_each_with_granules_and_eos() -> None:
    stream = OutputStream("ogg-1", OutputFormat.OPUS, 0x1234, None)
    stream.writer = OggOpusWriter(serial=0x1234)
    frames = [stream.emit(b"\xfc" + bytes([n]), n * 0.02, last=False) for n in range(5)]
    # The last page may end before its frame does: its granule trims the padding.
    frames.append(stream.emit(b"\xfc\x10", 0.1, last=True, samples=480))
    pages = []
    reader = OggPageReader()
    for packet in _decoded(frames):
        assert packet.session_id == "ogg-1"
        reader.receive_data(packet.payload)
        page = reader.next_page()
        assert isinstance(page, OggPage)
        assert reader.next_page() is NEED_DATA  # exactly one page per packet
        pages.append(page)
    assert [p.granule_position for p in pages] == [960, 1920, 2880, 3840, 4800, 5280]
    assert [p.sequence for p in pages] == [2, 3, 4, 5, 6, 7]  # after the two headers
    assert [f.granule for f in frames] == [p.granule_position for p in pages]
    assert [f.sequence for f in frames] == [p.sequence for p in pages]
    assert [p.eos for p in pages] == [False] * 5 + [True]
    assert [f.last for f in frames] == [False] * 5 + [True]
    assert all(p.serial == 0x1234 for p in pages)
    assert [f.payload_size for f in frames] == [len(p.payload) for p in _decoded(frames)]


# -- ElasticPool -------------------------------------------------------------------------


def _blocker(pool: ElasticPool) -> tuple[threading.Event, Future[None]]:
    """A job that holds a thread, waiting (no CPU) until released."""
    release = threading.Event()
    return release, pool.submit_by(0.0, release.wait, 30)


def test_jobs_run_earliest_deadline_first() -> None:
    pool = ElasticPool(1, 1, name="t-order")
    try:
        release, held = _blocker(pool)
        poll_until(lambda: pool.queued == 0)  # the blocker is running
        order: list[int] = []
        now = time.monotonic()
        futures = [pool.submit_by(now + deadline, order.append, deadline)
                   for deadline in (5, 1, 4, 2, 3)]
        futures.append(pool.submit(order.append, 0))  # due in DEFAULT_SLACK (1 s)
        release.set()
        for future in [held, *futures]:
            future.result(10)
        # ``submit`` is due DEFAULT_SLACK (1 s) after it was called: after the
        # job due at now + 1, before the one due at now + 2.
        assert order == [1, 0, 2, 3, 4, 5]
        assert pool.jobs_done == 7
    finally:
        pool.shutdown()


def test_the_pool_grows_only_past_blocked_threads_and_shrinks_after() -> None:
    pool = ElasticPool(1, 3, stuck_after=0.05, idle_exit=0.5, name="t-grow")
    try:
        release, held = _blocker(pool)
        done = pool.submit(lambda: "ran")
        # The only thread waits in the kernel: a second one starts for the queued job.
        assert done.result(10) == "ran"
        assert pool.grown == 1 and pool.size == 2
        release.set()
        held.result(10)
        poll_until(lambda: pool.size == 1, timeout=10)  # the extra thread left
    finally:
        pool.shutdown()


def test_a_busy_thread_is_not_blocked_so_the_pool_does_not_grow() -> None:
    pool = ElasticPool(1, 3, stuck_after=0.05, name="t-busy")

    def spin(seconds: float) -> None:
        until = time.thread_time() + seconds
        while time.thread_time() < until:  # CPU work, like a codec
            pass

    try:
        busy = pool.submit_by(0.0, spin, 0.5)
        poll_until(lambda: pool.queued == 0)
        queued = pool.submit(lambda: "after")
        assert queued.result(30) == "after"
        busy.result(30)
        assert pool.grown == 0 and pool.size == 1
    finally:
        pool.shutdown()


def test_shutdown_cancels_queued_jobs_and_refuses_new_ones() -> None:
    pool = ElasticPool(1, 1, name="t-shut")
    release, held = _blocker(pool)
    poll_until(lambda: pool.queued == 0)
    waiting = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(CancelledError):
        waiting.result(5)
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(lambda: None)
    release.set()
    held.result(10)


def test_pool_sizes_are_checked() -> None:
    for core, most in ((0, 1), (3, 2)):
        with pytest.raises(ValueError, match="core_workers"):
            ElasticPool(core, most)


async def test_a_burst_of_session_ends_costs_one_memory_release() -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from audio_engine.sessions.memory import MemoryReleaser, release_free_memory

    calls: list[float] = []
    gate = threading.Event()

    def release() -> int:
        calls.append(time.monotonic())
        gate.wait(5)
        return 1024

    with ThreadPoolExecutor(1) as pool:
        releaser = MemoryReleaser(pool, delay=0.05, release=release)
        for _ in range(5):
            releaser.session_ended()
        async with asyncio.timeout(5):
            while not calls:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert len(calls) == 1  # one release for the burst, still running
        releaser.session_ended()  # an end during the release: one more after it
        gate.set()
        async with asyncio.timeout(5):
            while releaser.releases < 2:
                await asyncio.sleep(0.01)
        assert len(calls) == 2 and releaser.released_bytes == 2048
        releaser.session_ended()
        await releaser.close()  # a pending release is dropped
        await asyncio.sleep(0.1)
        assert len(calls) == 2
    assert release_free_memory() >= 0  # glibc here: a real trim, nothing to assert on size
