"""Play-next insertion, relative seeks and duplicate removal: the pure queue operations
and the core's commands, no I/O."""

from __future__ import annotations

import pytest

from gateway.player import (
    CommandError,
    EngineEvent,
    Enqueue,
    Pause,
    PlayerCore,
    PlayerStatus,
    PlayNext,
    Queue,
    RemoveDuplicates,
    SeekBy,
    Skip,
    Track,
)
from protocol import EventType


def track(name: str, duration: float | None = 100.0, url: str | None = None) -> Track:
    return Track(url=url or f"http://media/{name}.mp3", title=name, duration=duration)


def started(core: PlayerCore, play_id: int, now: float = 0.0) -> None:
    core.sending(core.nonce)
    core.bind_play(core.nonce, play_id, now)
    core.on_event(EngineEvent(EventType.READY, play_id), now)


def titles(tracks: object) -> list[str]:
    return [t.title for t in tracks]  # type: ignore[attr-defined]


# -- play next ---------------------------------------------------------------------------


def test_insert_next_goes_right_after_the_current_track_in_order() -> None:
    queue = Queue([track("a"), track("b"), track("c")])
    assert queue.insert_next([track("x"), track("y")]) == (1, 2)
    assert titles(queue.upcoming) == ["x", "y", "b", "c"]
    assert queue.current is not None and queue.current.title == "a"


def test_insert_next_on_an_empty_or_ended_queue_makes_the_first_current() -> None:
    empty = Queue()
    assert empty.insert_next([track("x")]) == (0, 1)
    assert empty.current is not None and empty.current.title == "x"
    ended = Queue([track("a")])
    ended.advance()
    assert ended.current is None
    assert ended.insert_next([track("x"), track("y")]) == (0, 2)
    assert ended.current is not None and ended.current.title == "x"
    assert titles(ended.history) == ["a"] and titles(ended.upcoming) == ["y"]


def test_insert_next_adds_what_fits_and_refuses_a_full_queue() -> None:
    queue = Queue([track(str(i)) for i in range(Queue.MAX_TRACKS - 2)])
    # The current track and MAX_TRACKS - 3 upcoming ones: room for two more.
    assert queue.insert_next([track("x"), track("y"), track("z")]) == (1, 2)
    assert titles(queue.upcoming)[:3] == ["x", "y", "1"]
    with pytest.raises(CommandError, match="the queue is full"):
        queue.insert_next([track("w")])


def test_play_next_keeps_the_current_play_and_changes_what_follows() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, 1)
    nonce = core.nonce
    outcome = core.apply(PlayNext(track("x"), (track("y"),)), 1.0)
    assert (outcome.position, outcome.count) == (1, 2)
    assert outcome.track is not None and outcome.track.title == "x"
    assert core.nonce == nonce and core.status is PlayerStatus.PLAYING
    assert titles(outcome.view.upcoming) == ["x", "y", "b"]
    # The engine is told the new next track for a gapless join.
    plan = core.next_plan()
    assert plan is not None and plan.track.title == "x"
    core.apply(Skip(), 2.0)
    assert core.current is not None and core.current.title == "x"


def test_play_next_on_an_idle_player_starts_playing() -> None:
    core = PlayerCore("g")
    outcome = core.apply(PlayNext(track("x")), 0.0)
    assert outcome.position == 0
    assert core.desired().track is not None and core.status is PlayerStatus.LOADING


# -- relative seeks ----------------------------------------------------------------------


def test_seek_by_moves_from_the_position_reached() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a", duration=100.0)), 0.0)
    started(core, 1, now=0.0)
    nonce = core.nonce
    outcome = core.apply(SeekBy(30), 10.0)  # 10 s played, 30 s forward
    assert core.nonce == nonce + 1  # a new play from there
    assert core.desired().start_at == pytest.approx(40.0)
    assert outcome.view.position == pytest.approx(40.0)
    started(core, 2, now=10.0)
    core.apply(SeekBy(-15), 20.0)  # at 50 s, 15 s back
    assert core.desired().start_at == pytest.approx(35.0)


def test_rewinding_past_the_start_plays_from_the_start() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1)
    core.apply(SeekBy(-90), 5.0)
    assert core.desired().start_at == 0.0


def test_forwarding_past_the_end_is_refused_and_changes_nothing() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a", duration=60.0)), 0.0)
    started(core, 1)
    nonce = core.nonce
    with pytest.raises(CommandError, match="only 0:10 of the track is left"):
        core.apply(SeekBy(15), 50.0)
    assert core.nonce == nonce
    # A live stream (no duration) has no end to pass.
    live = PlayerCore("l")
    live.apply(Enqueue(track("radio", duration=None)), 0.0)
    started(live, 1)
    live.apply(SeekBy(600), 1.0)
    assert live.desired().start_at == pytest.approx(601.0)


def test_seek_by_keeps_a_pause_and_needs_a_track() -> None:
    core = PlayerCore("g")
    with pytest.raises(CommandError, match="nothing is playing"):
        core.apply(SeekBy(10), 0.0)
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1)
    core.apply(Pause(), 4.0)
    core.apply(SeekBy(10), 30.0)  # paused at 4 s: the clock did not run
    desired = core.desired()
    assert desired.paused and desired.start_at == pytest.approx(14.0)
    with pytest.raises(CommandError, match="seconds"):
        core.apply(SeekBy(float("nan")), 31.0)


# -- duplicates --------------------------------------------------------------------------


def test_remove_duplicates_keeps_the_first_of_each_link() -> None:
    queue = Queue([track("a"), track("b"), track("a again", url="http://media/a.mp3"),
                   track("c"), track("b again", url=" http://media/b.mp3 "), track("c")])
    assert queue.remove_duplicates() == 3
    assert titles(queue.upcoming) == ["b", "c"]
    assert queue.current is not None and queue.current.title == "a"
    assert queue.remove_duplicates() == 0


def test_remove_duplicates_leaves_the_history_alone() -> None:
    queue = Queue([track("a"), track("b"), track("a2", url="http://media/a.mp3")], index=1)
    assert queue.remove_duplicates() == 0  # a is behind, not coming up twice
    assert titles(queue.upcoming) == ["a2"]


def test_remove_duplicates_command_counts_and_keeps_the_play() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    for name in ("b", "a", "b", "c"):
        core.apply(Enqueue(track(name)), 0.0)
    started(core, 1)
    nonce = core.nonce
    outcome = core.apply(RemoveDuplicates(), 1.0)
    assert outcome.count == 2
    assert titles(outcome.view.upcoming) == ["b", "c"]
    assert core.nonce == nonce
    assert core.apply(RemoveDuplicates(), 2.0).count == 0
