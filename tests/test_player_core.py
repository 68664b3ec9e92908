"""Queue and transport rules of one player: the pure core, no I/O."""

from __future__ import annotations

import pytest

from gateway.player import CommandError, PlayerCore, PlayerStatus, Track


def track(name: str, duration: float | None = 100.0) -> Track:
    return Track(url=f"http://media/{name}.mp3", title=name, duration=duration)


def started(core: PlayerCore, play_id: int | None, now: float = 0.0) -> None:
    """What the shell and the engine do after a play: send, bind, ready."""
    core.sending(core.nonce)
    core.bind_play(core.nonce, play_id, now)
    core.on_event("ready", play_id, "", now)


def test_enqueue_on_an_idle_player_starts_playing() -> None:
    core = PlayerCore("g")
    assert core.desired().track is None
    assert core.enqueue(track("a"), 0.0) == 0
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "a"
    assert core.status is PlayerStatus.LOADING
    started(core, 1)
    assert core.status is PlayerStatus.PLAYING


def test_enqueue_while_playing_reports_the_position() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    nonce = core.nonce
    assert core.enqueue(track("b"), 0.0) == 1
    assert core.enqueue(track("c"), 0.0) == 2
    assert core.nonce == nonce  # the current track is not restarted
    assert [t.title for t in core.upcoming] == ["b", "c"]


def test_finished_advances_and_the_end_of_the_queue_goes_idle() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    core.enqueue(track("b"), 0.0)
    started(core, 1)
    assert core.on_event("finished", 1, "", 5.0)
    assert core.current is not None and core.current.title == "b"
    assert core.status is PlayerStatus.LOADING
    started(core, 2, 5.0)
    assert core.on_event("finished", 2, "", 9.0)
    assert core.current is None and core.status is PlayerStatus.IDLE
    assert core.desired().track is None


def test_a_late_finished_of_a_replaced_play_is_ignored() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.enqueue(track(name), 0.0)
    started(core, 1)
    core.skip(1.0)  # a -> b
    core.sending(core.nonce)
    # The engine ends play 1 because of the replacement; it arrives late.
    assert not core.on_event("finished", 1, "", 1.1)
    core.bind_play(core.nonce, 2, 1.1)
    assert core.current is not None and core.current.title == "b"
    assert not core.on_event("finished", 1, "", 1.2)
    assert core.current.title == "b"


def test_events_that_arrive_before_the_play_answer_are_kept() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    core.sending(core.nonce)
    assert not core.on_event("ready", 7, "", 0.5)  # socket faster than HTTP
    core.bind_play(core.nonce, 7, 0.6)
    assert core.status is PlayerStatus.PLAYING


def test_an_error_advances_with_a_readable_message() -> None:
    core = PlayerCore("g")
    core.enqueue(track("broken"), 0.0)
    core.enqueue(track("b"), 0.0)
    started(core, 1)
    assert core.on_event("error", 1, "source stalled", 2.0)
    assert core.error == "could not play broken: source stalled"
    assert core.current is not None and core.current.title == "b"


def test_a_refused_play_advances() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    core.enqueue(track("b"), 0.0)
    core.play_failed(core.nonce, "invalid request: unsupported URL scheme", 0.1)
    assert core.current is not None and core.current.title == "b"
    assert "unsupported URL scheme" in core.error


def test_rapid_skips_resolve_to_the_last_one() -> None:
    core = PlayerCore("g")
    for name in "abcdef":
        core.enqueue(track(name), 0.0)
    first = core.nonce
    for _ in range(4):
        core.skip(0.0)
    desired = core.desired()
    assert desired.track is not None and desired.track.title == "e"
    assert desired.nonce == first + 4


def test_previous_and_its_limit() -> None:
    core = PlayerCore("g")
    with pytest.raises(CommandError, match="no previous track"):
        core.previous(0.0)
    core.enqueue(track("a"), 0.0)
    core.enqueue(track("b"), 0.0)
    core.skip(0.0)
    assert core.previous(0.0).title == "a"
    assert [t.title for t in core.upcoming] == ["b"]
    with pytest.raises(CommandError, match="no previous track"):
        core.previous(0.0)


def test_previous_after_the_end_of_the_queue_replays_the_last_track() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    started(core, 1)
    core.on_event("finished", 1, "", 3.0)
    assert core.current is None
    assert core.previous(3.0).title == "a"


def test_jump_remove_clear_and_their_errors() -> None:
    core = PlayerCore("g")
    for name in "abcde":
        core.enqueue(track(name), 0.0)
    with pytest.raises(CommandError, match=r"no track 9 in the queue \(1 to 4\)"):
        core.jump(9, 0.0)
    with pytest.raises(CommandError, match="no track 0"):
        core.remove(0)
    assert core.remove(2).title == "c"
    assert [t.title for t in core.upcoming] == ["b", "d", "e"]
    assert core.jump(2, 0.0).title == "d"
    assert [t.title for t in core.upcoming] == ["e"]
    assert core.clear() == 1
    with pytest.raises(CommandError, match="the queue is empty"):
        core.jump(1, 0.0)


def test_commands_that_need_a_track_say_so() -> None:
    core = PlayerCore("g")
    for command in (lambda: core.skip(0.0), lambda: core.pause(0.0),
                    lambda: core.resume(0.0), lambda: core.seek(5, 0.0)):
        with pytest.raises(CommandError, match="nothing is playing"):
            command()


def test_seek_replays_from_the_position_and_checks_the_range() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a", duration=90.0), 0.0)
    started(core, 1)
    nonce = core.nonce
    with pytest.raises(CommandError, match="only 1:30 long"):
        core.seek(95, 1.0)
    with pytest.raises(CommandError, match="negative"):
        core.seek(-1, 1.0)
    core.seek(30, 1.0)
    assert core.nonce == nonce + 1
    assert core.desired().start_at == 30
    assert core.position(2.0) == 30
    started(core, 2, 2.0)
    assert core.position(5.0) == pytest.approx(33.0)


def test_position_stops_while_paused() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    started(core, 1, 10.0)
    assert core.position(14.0) == pytest.approx(4.0)
    core.pause(14.0)
    assert core.status is PlayerStatus.PAUSED and core.desired().paused
    assert core.position(20.0) == pytest.approx(4.0)
    with pytest.raises(CommandError, match="already paused"):
        core.pause(20.0)
    core.resume(20.0)
    assert core.position(21.0) == pytest.approx(5.0)
    with pytest.raises(CommandError, match="not paused"):
        core.resume(21.0)


def test_volume_range() -> None:
    core = PlayerCore("g")
    core.set_volume(0.5)
    assert core.desired().volume == 0.5
    with pytest.raises(CommandError, match="between 0 and 200"):
        core.set_volume(2.5)


def test_stop_forgets_the_queue() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.enqueue(track(name), 0.0)
    core.stop()
    assert core.current is None and not core.tracks
    assert core.desired().track is None and core.status is PlayerStatus.IDLE


# -- an engine without play ids (the Go engine) ---------------------------------------


def test_without_play_ids_our_own_finished_is_not_an_end() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.enqueue(track(name), 0.0)
    started(core, None)
    core.skip(1.0)
    core.sending(core.nonce)  # replaces a live stream: its finished is ours
    core.bind_play(core.nonce, None, 1.1)
    assert not core.on_event("finished", None, "", 1.2)
    assert core.current is not None and core.current.title == "b"
    assert core.on_event("ready", None, "", 1.3)
    assert core.status is PlayerStatus.PLAYING
    assert core.on_event("finished", None, "", 9.0)  # a real end
    assert core.current is not None and core.current.title == "c"


def test_without_play_ids_a_replaced_stream_that_had_not_started() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    core.enqueue(track("b"), 0.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, None, 0.0)  # a's play answered, no ready yet
    core.skip(0.1)
    core.sending(core.nonce)  # replaces a before its ready arrived
    core.bind_play(core.nonce, None, 0.2)
    # a's ready was in flight, then its finished right after: both stale.
    core.on_event("ready", None, "", 0.3)
    assert not core.on_event("finished", None, "", 0.31, packets_since_ready=2)
    assert core.current is not None and core.current.title == "b"
    assert core.on_event("ready", None, "", 0.4)
    assert core.status is PlayerStatus.PLAYING


def test_without_play_ids_early_events_wait_for_the_answer() -> None:
    core = PlayerCore("g")
    core.enqueue(track("a"), 0.0)
    core.sending(core.nonce)
    assert not core.on_event("ready", None, "", 0.1)
    core.bind_play(core.nonce, None, 0.2)
    assert core.status is PlayerStatus.PLAYING


# -- persistence ---------------------------------------------------------------------


def test_snapshot_and_restore_keep_queue_cursor_position_and_volume() -> None:
    core = PlayerCore("g")
    for name in "abc":
        core.enqueue(track(name), 0.0)
    core.set_volume(0.7)
    started(core, 1, 0.0)
    core.on_event("finished", 1, "", 10.0)
    started(core, 2, 10.0)
    data = core.snapshot(25.0)
    restored = PlayerCore.restore("g", data)
    assert restored.current is not None and restored.current.title == "b"
    assert [t.title for t in restored.upcoming] == ["c"]
    assert restored.volume == 0.7
    assert restored.status is PlayerStatus.PAUSED
    assert restored.position(99.0) == pytest.approx(15.0)
    nonce = restored.nonce
    restored.resume(100.0)
    assert restored.nonce == nonce + 1
    assert restored.desired().start_at == pytest.approx(15.0)
    assert not restored.desired().paused
