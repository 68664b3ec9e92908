"""A stop that keeps the queue, a clear that can be undone, failed tracks out of the
history: the pure queue and core, no I/O."""

from __future__ import annotations

import pytest

from gateway.player import (
    Clear,
    CommandError,
    EngineEvent,
    Enqueue,
    Jump,
    Move,
    PlayerCore,
    PlayerStatus,
    PlayNow,
    Previous,
    Queue,
    Remove,
    Resume,
    Shuffle,
    Skip,
    Stop,
    Track,
)
from protocol import EventType


def track(name: str) -> Track:
    return Track(url=f"http://media/{name}.mp3", title=name, duration=100.0)


def titles(tracks: object) -> list[str]:
    return [t.title for t in tracks]  # type: ignore[attr-defined]


def started(core: PlayerCore, play_id: int, now: float = 0.0) -> None:
    """What the shell and the engine do after a play: send, bind, ready."""
    core.sending(core.nonce)
    core.bind_play(core.nonce, play_id, now)
    core.on_event(EngineEvent(EventType.READY, play_id), now)


def playing(*names: str) -> PlayerCore:
    """A core playing the first of *names* since 0 s, the others coming up."""
    core = PlayerCore("u")
    for name in names:
        core.apply(Enqueue(track(name)), 0.0)
    started(core, 1, 0.0)
    return core


# -- stop, keeping the queue ------------------------------------------------------------


def test_a_stop_that_keeps_the_queue_leaves_the_track_waiting_first() -> None:
    core = playing("a", "b", "c")
    nonce = core.nonce
    core.apply(Stop(keep_queue=True), 10.0)
    assert core.status is PlayerStatus.IDLE and core.current is None
    assert core.desired().track is None and core.nonce == nonce + 1  # the engine stops
    assert titles(core.queue.upcoming) == ["a", "b", "c"] and core.queue.stopped
    assert not core.at_engine
    view = core.view(11.0)
    assert view.current is None and titles(view.upcoming) == ["a", "b", "c"]
    assert view.position == 0.0
    # Resume plays the waiting track from its start.
    core.apply(Resume(), 20.0)
    assert core.current is not None and core.current.title == "a"
    assert core.desired().start_at == 0.0 and core.status is PlayerStatus.LOADING
    assert titles(core.queue.upcoming) == ["b", "c"] and not core.queue.stopped


def test_a_stopped_queue_waits_for_the_person() -> None:
    core = playing("a", "b")
    core.apply(Stop(keep_queue=True), 10.0)
    # What would start an idle player only joins the waiting queue...
    assert core.apply(Enqueue(track("d")), 11.0).position == 3
    assert core.current is None and titles(core.queue.upcoming) == ["a", "b", "d"]
    # ...commands that need a playing track say so, and stopping again changes nothing.
    with pytest.raises(CommandError, match="nothing is playing"):
        core.apply(Skip(), 12.0)
    core.apply(Stop(keep_queue=True), 12.0)
    assert titles(core.queue.upcoming) == ["a", "b", "d"]
    # Moves, removals and shuffles count positions from the waiting track.
    assert core.apply(Move(3, 1), 13.0).track == core.queue.upcoming[0]
    assert titles(core.queue.upcoming) == ["d", "a", "b"]
    assert core.apply(Remove(2), 13.0).track.title == "a"  # type: ignore[union-attr]
    assert core.apply(Shuffle(seed=1), 13.0).count == 2
    assert sorted(titles(core.queue.upcoming)) == ["b", "d"] and core.queue.stopped


def test_a_jump_play_now_or_previous_picks_up_a_stopped_queue() -> None:
    core = playing("a", "b", "c")
    core.apply(Stop(keep_queue=True), 10.0)
    assert core.apply(Jump(2), 11.0).track.title == "b"  # type: ignore[union-attr]
    assert titles(core.queue.history) == ["a"] and titles(core.queue.upcoming) == ["c"]

    core = playing("a", "b")
    core.apply(Stop(keep_queue=True), 10.0)
    core.apply(PlayNow(track("p")), 11.0)
    assert core.current is not None and core.current.title == "p"
    assert titles(core.queue.upcoming) == ["a", "b"] and not core.queue.history

    core = playing("a", "b")
    core.apply(Skip(), 5.0)
    core.apply(Stop(keep_queue=True), 10.0)
    assert core.apply(Previous(), 11.0).track.title == "a"  # type: ignore[union-attr]
    assert titles(core.queue.upcoming) == ["b"]


def test_emptying_a_stopped_queue_makes_it_plainly_idle() -> None:
    core = playing("a", "b")
    core.apply(Stop(keep_queue=True), 10.0)
    assert core.apply(Clear(), 11.0).count == 2
    assert not core.queue.stopped and not core.queue.upcoming
    assert core.apply(Enqueue(track("n")), 12.0).position == 0  # plays at once again
    assert core.current is not None and core.current.title == "n"
    with pytest.raises(CommandError, match="nothing is playing"):
        PlayerCore("u").apply(Resume(), 0.0)


def test_the_plain_stop_still_forgets_everything() -> None:
    core = playing("a", "b")
    core.apply(Stop(), 10.0)
    assert not core.queue.tracks and core.status is PlayerStatus.IDLE


def test_a_stopped_queue_survives_a_restart() -> None:
    core = playing("a", "b")
    core.apply(Stop(keep_queue=True), 10.0)
    restored = PlayerCore.restore("u", core.snapshot(11.0))
    assert restored.status is PlayerStatus.IDLE and restored.current is None
    assert titles(restored.queue.upcoming) == ["a", "b"] and restored.queue.stopped
    restored.apply(Resume(), 12.0)
    assert restored.current is not None and restored.current.title == "a"
    # An older snapshot (no "stopped") is not stopped.
    assert not Queue.restore({"tracks": [track("a").as_dict()], "index": 0}).stopped
