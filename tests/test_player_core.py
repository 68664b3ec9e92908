"""Queue and transport rules of one player: the pure core, no I/O."""

from __future__ import annotations

import pytest

from gateway.player import (
    Clear,
    CommandError,
    EngineEvent,
    Enqueue,
    Jump,
    Move,
    Pause,
    PlayerCore,
    PlayerStatus,
    PlayNow,
    Previous,
    Queue,
    Remove,
    Resume,
    Seek,
    SetLoop,
    SetVolume,
    Shuffle,
    Skip,
    Stop,
    Track,
)
from gateway.player.core import LoopMode
from protocol import EventType


def track(name: str, duration: float | None = 100.0) -> Track:
    return Track(url=f"http://media/{name}.mp3", title=name, duration=duration)


def started(core: PlayerCore, play_id: int | None, now: float = 0.0) -> None:
    """What the shell and the engine do after a play: send, bind, ready."""
    core.sending(core.nonce)
    core.bind_play(core.nonce, play_id, now)
    core.on_event(EngineEvent(EventType.READY, play_id), now)


def test_enqueue_on_an_idle_player_starts_playing() -> None:
    core = PlayerCore("g")
    assert core.desired().track is None
    assert core.apply(Enqueue(track("a")), 0.0).position == 0
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "a"
    assert core.status is PlayerStatus.LOADING
    started(core, 1)
    assert core.status is PlayerStatus.PLAYING


def test_enqueue_while_playing_reports_the_position() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    nonce = core.nonce
    assert core.apply(Enqueue(track("b")), 0.0).position == 1
    assert core.apply(Enqueue(track("c")), 0.0).position == 2
    assert core.nonce == nonce  # the current track is not restarted
    assert [t.title for t in core.queue.upcoming] == ["b", "c"]


def test_finished_advances_and_the_end_of_the_queue_goes_idle() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, 1)
    assert core.on_event(EngineEvent(EventType.FINISHED, 1), 5.0)
    assert core.current is not None and core.current.title == "b"
    assert core.status is PlayerStatus.LOADING
    started(core, 2, 5.0)
    assert core.on_event(EngineEvent(EventType.FINISHED, 2), 9.0)
    assert core.current is None and core.status is PlayerStatus.IDLE
    assert core.desired().track is None


def test_a_late_finished_of_a_replaced_play_is_ignored() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.apply(Enqueue(track(name)), 0.0)
    started(core, 1)
    core.apply(Skip(), 1.0)  # a -> b
    core.sending(core.nonce)
    # The engine ends play 1 because of the replacement; it arrives late.
    assert not core.on_event(EngineEvent(EventType.FINISHED, 1), 1.1)
    core.bind_play(core.nonce, 2, 1.1)
    assert core.current is not None and core.current.title == "b"
    assert not core.on_event(EngineEvent(EventType.FINISHED, 1), 1.2)
    assert core.current.title == "b"


def test_events_that_arrive_before_the_play_answer_are_kept() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.sending(core.nonce)
    assert not core.on_event(EngineEvent(EventType.READY, 7), 0.5)  # socket faster than HTTP
    core.bind_play(core.nonce, 7, 0.6)
    assert core.status is PlayerStatus.PLAYING


def test_an_error_advances_with_a_readable_message() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("broken")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, 1)
    assert core.on_event(EngineEvent(EventType.ERROR, 1, "source stalled"), 2.0)
    assert core.error == "could not play broken: source stalled"
    assert core.current is not None and core.current.title == "b"


def test_a_refused_play_advances() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "invalid request: unsupported URL scheme", 0.1)
    assert core.current is not None and core.current.title == "b"
    assert "unsupported URL scheme" in core.error


def test_rapid_skips_resolve_to_the_last_one() -> None:
    core = PlayerCore("g")
    for name in "abcdef":
        core.apply(Enqueue(track(name)), 0.0)
    first = core.nonce
    for _ in range(4):
        core.apply(Skip(), 0.0)
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "e"
    assert desired.nonce == first + 4


def test_previous_and_its_limit() -> None:
    core = PlayerCore("g")
    with pytest.raises(CommandError, match="no previous track"):
        core.apply(Previous(), 0.0)
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    core.apply(Skip(), 0.0)
    assert core.apply(Previous(), 0.0).track.title == "a"
    assert [t.title for t in core.queue.upcoming] == ["b"]
    with pytest.raises(CommandError, match="no previous track"):
        core.apply(Previous(), 0.0)


def test_previous_after_the_end_of_the_queue_replays_the_last_track() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1)
    core.on_event(EngineEvent(EventType.FINISHED, 1), 3.0)
    assert core.current is None
    assert core.apply(Previous(), 3.0).track.title == "a"


def test_jump_remove_clear_and_their_errors() -> None:
    core = PlayerCore("g")
    for name in "abcde":
        core.apply(Enqueue(track(name)), 0.0)
    with pytest.raises(CommandError, match=r"no track 9 in the queue \(1 to 4\)"):
        core.apply(Jump(9), 0.0)
    with pytest.raises(CommandError, match="no track 0"):
        core.apply(Remove(0), 0.0)
    assert core.apply(Remove(2), 0.0).track.title == "c"
    assert [t.title for t in core.queue.upcoming] == ["b", "d", "e"]
    assert core.apply(Jump(2), 0.0).track.title == "d"
    assert [t.title for t in core.queue.upcoming] == ["e"]
    assert core.apply(Clear(), 0.0).count == 1
    with pytest.raises(CommandError, match="the queue is empty"):
        core.apply(Jump(1), 0.0)


def test_commands_that_need_a_track_say_so() -> None:
    core = PlayerCore("g")
    for command in (lambda: core.apply(Skip(), 0.0).track, lambda: core.apply(Pause(), 0.0),
                    lambda: core.apply(Resume(), 0.0), lambda: core.apply(Seek(5), 0.0)):
        with pytest.raises(CommandError, match="nothing is playing"):
            command()


def test_seek_replays_from_the_position_and_checks_the_range() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a", duration=90.0)), 0.0)
    started(core, 1)
    nonce = core.nonce
    with pytest.raises(CommandError, match="only 1:30 long"):
        core.apply(Seek(95), 1.0)
    with pytest.raises(CommandError, match="negative"):
        core.apply(Seek(-1), 1.0)
    core.apply(Seek(30), 1.0)
    assert core.nonce == nonce + 1
    assert core.desired().start_at == 30
    assert core.position(2.0) == 30
    started(core, 2, 2.0)
    assert core.position(5.0) == pytest.approx(33.0)


def test_position_stops_while_paused() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1, 10.0)
    assert core.position(14.0) == pytest.approx(4.0)
    core.apply(Pause(), 14.0)
    assert core.status is PlayerStatus.PAUSED and core.desired().paused
    assert core.position(20.0) == pytest.approx(4.0)
    with pytest.raises(CommandError, match="already paused"):
        core.apply(Pause(), 20.0)
    core.apply(Resume(), 20.0)
    assert core.position(21.0) == pytest.approx(5.0)
    with pytest.raises(CommandError, match="not paused"):
        core.apply(Resume(), 21.0)


def test_volume_range() -> None:
    core = PlayerCore("g")
    core.apply(SetVolume(0.5), 0.0)
    assert core.desired().volume == 0.5
    with pytest.raises(CommandError, match="between 0 and 200"):
        core.apply(SetVolume(2.5), 0.0)


def test_stop_forgets_the_queue() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.apply(Enqueue(track(name)), 0.0)
    core.apply(Stop(), 0.0)
    assert core.current is None and not core.queue.tracks
    assert core.desired().track is None and core.status is PlayerStatus.IDLE


# -- an engine without play ids (the Go engine) ---------------------------------------


def test_without_play_ids_our_own_finished_is_not_an_end() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.apply(Enqueue(track(name)), 0.0)
    started(core, None)
    core.apply(Skip(), 1.0)
    core.sending(core.nonce)  # replaces a live stream: its finished is ours
    core.bind_play(core.nonce, None, 1.1)
    assert not core.on_event(EngineEvent(EventType.FINISHED, None), 1.2)
    assert core.current is not None and core.current.title == "b"
    assert core.on_event(EngineEvent(EventType.READY, None), 1.3)
    assert core.status is PlayerStatus.PLAYING
    assert core.on_event(EngineEvent(EventType.FINISHED, None), 9.0)  # a real end
    assert core.current is not None and core.current.title == "c"


def test_without_play_ids_a_replaced_stream_that_had_not_started() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, None, 0.0)  # a's play answered, no ready yet
    core.apply(Skip(), 0.1)
    core.sending(core.nonce)  # replaces a before its ready arrived
    core.bind_play(core.nonce, None, 0.2)
    # a's ready was in flight, then its finished right after: both stale.
    core.on_event(EngineEvent(EventType.READY, None), 0.3)
    assert not core.on_event(EngineEvent(EventType.FINISHED, None, packets_since_ready=2), 0.31)
    assert core.current is not None and core.current.title == "b"
    assert core.on_event(EngineEvent(EventType.READY, None), 0.4)
    assert core.status is PlayerStatus.PLAYING


def test_without_play_ids_early_events_wait_for_the_answer() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.sending(core.nonce)
    assert not core.on_event(EngineEvent(EventType.READY, None), 0.1)
    core.bind_play(core.nonce, None, 0.2)
    assert core.status is PlayerStatus.PLAYING


# -- persistence ---------------------------------------------------------------------


def test_snapshot_and_restore_keep_queue_cursor_position_and_volume() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.apply(Enqueue(track(name)), 0.0)
    core.apply(SetVolume(0.7), 0.0)
    started(core, 1, 0.0)
    core.on_event(EngineEvent(EventType.FINISHED, 1), 10.0)
    started(core, 2, 10.0)
    data = core.snapshot(25.0)
    restored = PlayerCore.restore("g", data)
    assert restored.current is not None and restored.current.title == "b"
    assert [t.title for t in restored.queue.upcoming] == ["c"]
    assert restored.volume == 0.7
    assert restored.status is PlayerStatus.PAUSED
    assert restored.position(99.0) == pytest.approx(15.0)
    nonce = restored.nonce
    restored.apply(Resume(), 100.0)
    assert restored.nonce == nonce + 1
    assert restored.desired().start_at == pytest.approx(15.0)
    assert not restored.desired().paused


# -- loop, shuffle, move ---------------------------------------------------------------


def titles(tracks: list[Track] | tuple[Track, ...]) -> list[str]:
    return [t.title for t in tracks]


def test_loop_track_plays_the_same_track_again_as_a_new_play() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    core.apply(SetLoop(LoopMode.TRACK), 0.0)
    started(core, 1)
    nonce = core.nonce
    assert core.on_event(EngineEvent(EventType.FINISHED, 1), 100.0)
    assert core.current is not None and core.current.title == "a"
    assert core.nonce == nonce + 1 and core.desired().start_at == 0.0
    assert core.status is PlayerStatus.LOADING
    # The finished play's late events do not restart it a second time.
    assert not core.on_event(EngineEvent(EventType.FINISHED, 1), 100.1)
    started(core, 2, 100.2)
    assert core.nonce == nonce + 1 and core.status is PlayerStatus.PLAYING
    # A skip still moves on, and the loop applies to the new track.
    assert core.apply(Skip(), 101.0).track is not None
    assert core.current is not None and core.current.title == "b"
    started(core, 3, 101.0)
    core.on_event(EngineEvent(EventType.FINISHED, 3), 200.0)
    assert core.current is not None and core.current.title == "b"


def test_loop_track_does_not_loop_a_failing_track() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("broken")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    core.apply(SetLoop(LoopMode.TRACK), 0.0)
    started(core, 1)
    core.on_event(EngineEvent(EventType.ERROR, 1, "could not reach the source"), 1.0)
    assert core.current is not None and core.current.title == "b"
    assert core.failure is not None and core.failure.track.title == "broken"


def test_loop_queue_sends_each_ended_track_back_to_the_end() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.apply(Enqueue(track(name)), 0.0)
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    played = []
    for play_id in range(1, 8):
        assert core.current is not None
        played.append(core.current.title)
        started(core, play_id, float(play_id))
        core.on_event(EngineEvent(EventType.FINISHED, play_id), play_id + 0.5)
    assert played == ["a", "b", "c", "a", "b", "c", "a"]
    # The queue does not grow: the same three tracks, new entries each round.
    assert len(core.queue.upcoming) == 2
    ids = [t.id for t in core.queue.tracks]
    assert len(ids) == len(set(ids))


def test_loop_queue_keeps_skipped_tracks_and_drops_failing_ones() -> None:
    core = PlayerCore("g")
    for name in ("a", "broken", "c"):
        core.apply(Enqueue(track(name)), 0.0)
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    started(core, 1)
    core.apply(Skip(), 1.0)  # a goes back to the end
    assert titles(core.queue.upcoming) == ["c", "a"]
    started(core, 2, 1.0)
    core.on_event(EngineEvent(EventType.ERROR, 2, "not a playable media file (invalid data)"), 2.0)
    assert core.current is not None and core.current.title == "c"
    assert titles(core.queue.upcoming) == ["a"]  # the broken one is not looped


def test_a_queue_of_failing_tracks_ends_under_loop_queue() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("x")), 0.0)
    core.apply(Enqueue(track("y")), 0.0)
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "invalid request: unsupported URL scheme", 0.0)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "invalid request: unsupported URL scheme", 0.0)
    assert core.current is None and core.status is PlayerStatus.IDLE


def test_setting_the_loop_does_not_touch_the_current_play() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1)
    desired = core.desired()
    for mode in LoopMode:
        core.apply(SetLoop(mode), 0.0)
        assert core.desired() == desired
        assert core.view(1.0).loop is mode


def test_shuffle_reorders_only_the_upcoming_tracks_and_keeps_the_play() -> None:
    core = PlayerCore("g")
    for name in "abcdefgh":
        core.apply(Enqueue(track(name)), 0.0)
    core.sending(core.nonce)  # a's play is on its way
    desired = core.desired()
    assert core.apply(Shuffle(3), 0.0).count == 7
    assert core.desired() == desired
    assert sorted(titles(core.queue.upcoming)) == list("bcdefgh")
    assert titles(core.queue.upcoming) != list("bcdefgh")
    # The answer and events of the play sent before the shuffle still match it.
    core.bind_play(core.nonce, 1, 0.1)
    assert core.on_event(EngineEvent(EventType.READY, 1), 0.2)
    assert core.current is not None and core.current.title == "a"
    first = core.queue.upcoming[0].title
    core.on_event(EngineEvent(EventType.FINISHED, 1), 9.0)
    assert core.current is not None and core.current.title == first


def test_shuffle_needs_two_upcoming_tracks() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    with pytest.raises(CommandError, match="nothing to shuffle"):
        core.apply(Shuffle(1), 0.0)


def test_move_and_its_range() -> None:
    core = PlayerCore("g")
    for name in "abcde":
        core.apply(Enqueue(track(name)), 0.0)
    nonce = core.nonce
    assert core.apply(Move(4, 1), 0.0).track.title == "e"
    assert titles(core.queue.upcoming) == ["e", "b", "c", "d"]
    assert core.apply(Move(1, 4), 0.0).track.title == "e"
    assert titles(core.queue.upcoming) == ["b", "c", "d", "e"]
    assert core.nonce == nonce
    with pytest.raises(CommandError, match=r"no track 5 in the queue \(1 to 4\)"):
        core.apply(Move(1, 5), 0.0)
    with pytest.raises(CommandError, match="no track 0"):
        core.apply(Move(0, 1), 0.0)


def test_loop_mode_survives_a_restart() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    assert PlayerCore.restore("g", core.snapshot(1.0)).queue.loop is LoopMode.QUEUE
    assert PlayerCore.restore("g", {"tracks": [], "loop": "sideways"}).queue.loop is LoopMode.OFF


# -- a "play now" that fails keeps the current track ------------------------------------


def test_a_refused_play_now_keeps_the_current_stream_as_it_was() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, 1, 0.0)
    core.apply(PlayNow(track("bad")), 30.0)
    core.sending(core.nonce)
    nonce = core.nonce
    core.play_failed(nonce, "invalid request: url is longer than 4096 characters", 30.1)
    # The engine never replaced play 1: no new play is needed and it still matches.
    assert core.nonce == nonce
    assert core.current is not None and core.current.title == "a"
    assert titles(core.queue.upcoming) == ["b"]
    assert core.status is PlayerStatus.PLAYING
    assert core.position(40.0) == pytest.approx(40.0)
    failure = core.failure
    assert failure is not None and failure.track.title == "bad"
    assert failure.kept is not None and failure.kept.title == "a"
    assert "longer than 4096" in core.error
    # Play 1 goes on and its real end advances as usual.
    assert core.on_event(EngineEvent(EventType.FINISHED, 1), 100.0)
    assert core.current is not None and core.current.title == "b"


def test_a_play_now_that_errors_before_ready_gives_the_track_back_where_it_was() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, 1, 0.0)
    core.apply(PlayNow(track("offline")), 42.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, 2, 42.1)
    assert not core.on_event(EngineEvent(EventType.FINISHED, 1), 42.2)  # the replaced stream's end
    assert core.on_event(
        EngineEvent(EventType.ERROR, 2, "extraction failed: unable to download"), 43.0)
    # The engine had replaced play 1: a new play of "a" from 0:42.
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "a"
    assert desired.start_at == pytest.approx(42.0)
    assert not desired.paused
    assert titles(core.queue.upcoming) == ["b"]
    assert core.failure is not None and core.failure.track.title == "offline"
    assert core.failure.kept is not None and core.failure.kept.title == "a"
    started(core, 3, 43.5)
    assert core.position(45.5) == pytest.approx(44.0)


def test_a_failed_play_now_keeps_a_paused_track_paused() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1, 0.0)
    core.apply(Pause(), 10.0)
    core.apply(PlayNow(track("offline")), 20.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, 2, 20.1)
    core.on_event(EngineEvent(EventType.ERROR, 2, "could not reach the source"), 21.0)
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "a"
    assert desired.paused and desired.start_at == pytest.approx(10.0)


def test_a_play_now_that_started_fails_later_like_any_track() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, 1, 0.0)
    core.apply(PlayNow(track("new")), 5.0)
    started(core, 2, 5.1)
    core.on_event(EngineEvent(EventType.ERROR, 2, "the source stopped sending audio"), 30.0)
    assert core.current is not None and core.current.title == "b"
    assert core.failure is not None and core.failure.kept is None


def test_a_failed_play_now_on_an_idle_player_goes_idle() -> None:
    core = PlayerCore("g")
    core.apply(PlayNow(track("bad")), 0.0)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "invalid request: unsupported URL scheme", 0.1)
    assert core.current is None and core.status is PlayerStatus.IDLE
    assert core.failure is not None and core.failure.kept is None


def test_a_failed_play_now_is_not_undone_after_another_command() -> None:
    core = PlayerCore("g")
    for name in "ab":
        core.apply(Enqueue(track(name)), 0.0)
    started(core, 1, 0.0)
    core.apply(PlayNow(track("offline")), 5.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, 2, 5.1)
    core.apply(Skip(), 5.2)  # the user moved on before the failure arrived
    assert not core.on_event(EngineEvent(EventType.ERROR, 2, "could not reach the source"), 6.0)
    assert core.current is not None and core.current.title == "b"


def test_a_play_now_interrupting_a_play_not_yet_answered_starts_it_again() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)  # never sent: play now comes first
    core.apply(PlayNow(track("bad")), 0.1)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "invalid request: unsupported URL scheme", 0.2)
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "a"
    assert core.status is PlayerStatus.LOADING  # a new play of "a" is due


def test_without_play_ids_a_refused_play_now_keeps_matching_the_stream() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, None, 0.0)
    core.apply(PlayNow(track("bad")), 10.0)
    core.sending(core.nonce)  # counted as ending a's stream...
    core.play_failed(core.nonce, "invalid request: missing url", 10.1)
    # ...but the engine refused it: a's real end must advance.
    assert core.on_event(EngineEvent(EventType.FINISHED, None), 60.0)
    assert core.current is not None and core.current.title == "b"


def test_without_play_ids_an_end_during_the_refused_play_now_is_not_lost() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(track("b")), 0.0)
    started(core, None, 0.0)
    core.apply(PlayNow(track("bad")), 99.9)
    core.sending(core.nonce)
    # a really ended just now:
    assert not core.on_event(EngineEvent(EventType.FINISHED, None), 100.0)
    core.sending(core.nonce)
    core.play_failed(core.nonce, "invalid request: missing url", 100.1)
    assert core.current is not None and core.current.title == "b"
    assert core.status is PlayerStatus.LOADING


def test_without_play_ids_a_play_now_error_gives_the_track_back() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, None, 0.0)
    core.apply(PlayNow(track("offline")), 20.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, None, 20.1)
    assert not core.on_event(EngineEvent(EventType.FINISHED, None), 20.2)  # a's stream, replaced
    assert core.on_event(EngineEvent(EventType.ERROR, None, "could not reach the source"), 21.0)
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "a"
    assert desired.start_at == pytest.approx(20.0)


def test_enqueue_many_adds_what_fits_and_starts_an_idle_player() -> None:
    core = PlayerCore("g")
    outcome = core.apply(Enqueue(track("a"), (track("b"), track("c"))), 0.0)
    assert (outcome.position, outcome.count) == (0, 3)
    assert core.current is not None and core.current.title == "a"
    assert titles(core.queue.upcoming) == ["b", "c"]
    nonce = core.nonce
    room = Queue.MAX_TRACKS - 1 - len(core.queue.upcoming)
    more = tuple(track(f"t{i}") for i in range(room + 10))
    outcome = core.apply(Enqueue(more[0], more[1:]), 1.0)
    assert (outcome.position, outcome.count) == (3, room) and core.nonce == nonce
    with pytest.raises(CommandError, match="the queue is full"):
        core.apply(Enqueue(track("x")), 2.0)


def test_play_now_with_more_tracks_queues_them_at_the_end() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a"), (track("b"),)), 0.0)
    outcome = core.apply(PlayNow(track("p"), (track("q"), track("r"))), 1.0)
    assert outcome.count == 3 and outcome.track is not None and outcome.track.title == "p"
    assert core.current is not None and core.current.title == "p"
    assert titles(core.queue.upcoming) == ["b", "q", "r"]
    assert titles(core.queue.history) == ["a"]
