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
    UndoClear,
)
from gateway.player.core import UNDO_CLEAR_SECONDS
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


# -- clear, and its undo -------------------------------------------------------------------


def test_a_clear_can_be_undone_for_a_while() -> None:
    core = playing("a", "b", "c")
    assert core.view(1.0).undo_clear == 0
    assert core.apply(Clear(), 10.0).count == 2
    view = core.view(15.0)
    assert not view.upcoming and view.undo_clear == 2
    assert view.undo_seconds == pytest.approx(UNDO_CLEAR_SECONDS - 5.0)
    assert view.as_dict()["undo_clear"] == 2
    core.apply(Enqueue(track("d")), 16.0)  # added after the clear: stays behind
    outcome = core.apply(UndoClear(), 20.0)
    assert outcome.count == 2 and outcome.view.undo_clear == 0
    assert titles(core.queue.upcoming) == ["b", "c", "d"]
    assert core.current is not None and core.current.title == "a"  # never interrupted
    with pytest.raises(CommandError, match="no cleared queue"):
        core.apply(UndoClear(), 21.0)  # once


def test_an_undo_comes_too_late_after_the_window() -> None:
    core = playing("a", "b")
    core.apply(Clear(), 10.0)
    later = 10.0 + UNDO_CLEAR_SECONDS
    assert core.view(later).undo_clear == 0 and core.view(later).undo_seconds == 0.0
    with pytest.raises(CommandError, match="too late: a clear can be undone for 30 seconds"):
        core.apply(UndoClear(), later)
    assert not core.queue.upcoming


def test_only_the_latest_clear_is_kept_and_an_empty_one_keeps_it() -> None:
    core = playing("a", "b", "c")
    core.apply(Clear(), 1.0)
    assert core.apply(Clear(), 2.0).count == 0  # nothing removed: the undo stays
    assert core.view(3.0).undo_clear == 2
    core.apply(Enqueue(track("x")), 4.0)
    core.apply(Clear(), 5.0)  # a new clear replaces the first one
    core.apply(UndoClear(), 6.0)
    assert titles(core.queue.upcoming) == ["x"]
    core.apply(Clear(), 7.0)
    core.apply(Stop(), 8.0)  # forgetting the queue forgets its undo too
    with pytest.raises(CommandError, match="no cleared queue"):
        core.apply(UndoClear(), 9.0)


def test_an_undo_on_an_idle_player_brings_the_tracks_back_waiting() -> None:
    core = playing("a", "b", "c")
    core.apply(Clear(), 1.0)
    core.on_event(EngineEvent(EventType.FINISHED, 1), 5.0)  # "a" ends: idle
    assert core.status is PlayerStatus.IDLE
    core.apply(UndoClear(), 6.0)
    assert core.status is PlayerStatus.IDLE and core.queue.stopped  # no sound by surprise
    assert titles(core.queue.upcoming) == ["b", "c"]
    core.apply(Resume(), 7.0)
    assert core.current is not None and core.current.title == "b"


def test_an_undo_puts_back_what_fits() -> None:
    core = playing("a", *(f"t{i}" for i in range(10)))
    core.apply(Clear(), 1.0)
    room = Queue.MAX_TRACKS - 1  # upcoming tracks a queue holds beside the current one
    more = tuple(track(f"n{i}") for i in range(room))
    core.apply(Enqueue(more[0], more[1 : room - 2]), 2.0)
    assert core.apply(UndoClear(), 3.0).count == 2
    assert titles(core.queue.upcoming)[:3] == ["t0", "t1", "n0"]
    core.apply(Clear(), 4.0)
    core.apply(Enqueue(more[0], more[1:]), 5.0)
    with pytest.raises(CommandError, match="the queue is full"):
        core.apply(UndoClear(), 6.0)


# -- what failed is not history, and every failure reads the same -------------------------


def test_a_track_that_fails_leaves_the_queue_and_is_not_history() -> None:
    core = playing("a", "broken", "c")
    core.on_event(EngineEvent(EventType.FINISHED, 1), 5.0)  # "a" played: history
    started(core, 2, 5.0)
    core.on_event(EngineEvent(EventType.ERROR, 2, "not a playable media file"), 6.0)
    assert core.current is not None and core.current.title == "c"
    assert titles(core.queue.history) == ["a"]
    assert core.error == "could not play broken: not a playable media file"
    assert core.failure is not None and core.failure.track.title == "broken"
    # Going back skips what never played.
    assert core.apply(Previous(), 7.0).track.title == "a"  # type: ignore[union-attr]


def test_a_refused_play_is_worded_as_any_failure_and_is_not_history() -> None:
    core = PlayerCore("u")
    core.apply(Enqueue(track("bad")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "the engine is too busy", 0.1)
    assert core.error == "could not play bad: the engine is too busy"
    assert not core.queue.history and core.current is not None and core.current.title == "b"
    # A failed "play now" keeps the interrupted track, and is no history either.
    core = playing("a")
    core.apply(PlayNow(track("bad")), 3.0)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "url is longer than 4096 characters", 3.1)
    assert core.current is not None and core.current.title == "a"
    assert not core.queue.history
    assert core.error == "could not play bad: url is longer than 4096 characters"
