"""The pure policies of the gateway's shell: pacing push sinks (``FramePacer``) and
telling a silent socket (``SilenceTracker``)."""

from __future__ import annotations

import itertools

import pytest

from gateway.sinks import FramePacer
from gateway.watchdog import SilenceTracker


def frames(count: int, start: int = 0) -> list[bytes]:
    return [f"f{i}".encode() for i in range(start, start + count)]


def test_frames_at_real_time_pass_at_once() -> None:
    pacer = FramePacer()
    out = []
    for index, frame in enumerate(frames(500)):
        out += pacer.offer(frame, index * 0.02)
    assert out == frames(500)
    assert pacer.delayed == 0 and len(pacer) == 0


def test_a_late_clump_within_the_credit_passes_at_once() -> None:
    pacer = FramePacer(credit=10)
    for index, frame in enumerate(frames(50)):
        pacer.offer(frame, index * 0.02)
    # A stall of 100 ms, then five frames at once (a clock catching up).
    out = []
    for frame in frames(5, 50):
        out += pacer.offer(frame, 50 * 0.02 + 0.1)
    assert out == frames(5, 50) and pacer.delayed == 0


def test_a_burst_is_released_at_real_time_and_bounded() -> None:
    pacer = FramePacer(credit=10, capacity=25, speed=1.0)
    now = 0.0
    released = pacer.offer(b"first", now)
    burst = frames(500)
    for frame in burst:
        released += pacer.offer(frame, now)
    # The credit passes at once; the rest waits, only the newest 25 kept.
    assert len(released) == 10
    assert len(pacer) == 25 and pacer.dropped == 500 + 1 - 10 - 25
    waiting_tail = burst[-25:]
    times = []
    while len(pacer):
        when = pacer.next_release()
        assert when is not None and when >= now
        now = when
        got = pacer.release(now)
        assert len(got) == 1
        times.append(now)
        released += got
    assert released[-25:] == waiting_tail
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(gap - 0.02) < 1e-9 for gap in gaps)
    assert pacer.next_release() is None


def test_the_queue_left_by_a_burst_drains_when_the_sender_goes_on_at_real_time() -> None:
    pacer = FramePacer(credit=3, capacity=25, speed=1.02)
    now = 0.0
    for frame in frames(100):
        pacer.offer(frame, now)
    assert len(pacer) == 25
    sent = 100
    for tick in range(1, 60 * 50):
        now = tick * 0.02
        pacer.offer(f"live{sent}".encode(), now)
        sent += 1
        pacer.release(now)
    assert len(pacer) <= 1  # 2 % faster than the sender: 25 frames gone within a minute


def test_pacer_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        FramePacer(credit=0)


def test_silence_is_a_counter_that_stops_for_the_threshold() -> None:
    tracker = SilenceTracker(threshold=3.0)
    assert tracker.observe([("a", 10), ("b", 5)], 0.0) == []
    assert tracker.observe([("a", 60), ("b", 5)], 1.0) == []
    assert tracker.observe([("a", 110), ("b", 5)], 2.9) == []
    assert tracker.observe([("a", 160), ("b", 5)], 3.0) == ["b"]
    tracker.checked("b", 3.0)
    assert tracker.observe([("a", 160), ("b", 5)], 4.0) == []
    assert tracker.observe([("a", 160), ("b", 5)], 6.1) == ["a", "b"]


def test_silence_state_follows_the_current_candidates_only() -> None:
    tracker = SilenceTracker(threshold=1.0)
    tracker.observe([(f"k{i}", 0) for i in range(1000)], 0.0)
    tracker.observe([("k1", 0)], 0.5)
    assert tracker.observe([("k1", 0), ("k2", 0)], 1.0) == ["k1"]  # k2 starts over
    tracker.forget()
    assert tracker.observe([("k1", 0)], 5.0) == []
