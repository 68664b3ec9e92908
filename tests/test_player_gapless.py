"""Gapless queues, filters and crossfade in the player's pure core: next-track plans,
joins without a play, failed and missed joins, stale play ids, sound settings."""

from __future__ import annotations

import pytest

from gateway.player import (
    Clear,
    CommandError,
    EngineEvent,
    Enqueue,
    Move,
    Phase,
    PlayerCore,
    PlayerStatus,
    Remove,
    SetCrossfade,
    SetFilters,
    SetLoop,
    Shuffle,
    Skip,
    Track,
)
from gateway.player.core import MAX_CROSSFADE, LoopMode, NextPlan
from protocol import EventType, FinishReason
from protocol.filter_presets import Preset, preset
from protocol.filters import Filters, parse_filters


def track(name: str) -> Track:
    return Track(url=f"http://media/{name}.mp3", title=name, duration=100.0)


def started(core: PlayerCore, play_id: int, now: float = 0.0) -> None:
    core.sending(core.nonce)
    core.bind_play(core.nonce, play_id, now)
    core.on_event(EngineEvent(EventType.READY, play_id), now)


def queue(*names: str) -> PlayerCore:
    core = PlayerCore("g")
    for name in names:
        core.apply(Enqueue(track(name)), 0.0)
    return core


def set_next(core: PlayerCore, play_id: int) -> NextPlan:
    plan = core.next_plan()
    assert plan is not None
    assert core.bind_next(plan, play_id, 0.0) is False
    return plan


def test_no_next_plan_until_the_current_play_streams() -> None:
    core = queue("a", "b")
    assert core.next_plan() is None  # not sent
    core.sending(core.nonce)
    core.bind_play(core.nonce, 1, 0.0)
    assert core.next_plan() is None  # answered, no ready yet
    core.on_event(EngineEvent(EventType.READY, 1), 0.0)
    plan = core.next_plan()
    assert plan is not None and plan.track.title == "b" and plan.nonce == core.nonce


def test_the_next_plan_follows_the_queue_and_the_loop_mode() -> None:
    core = queue("a", "b", "c")
    started(core, 1)
    plan = core.next_plan()
    assert plan is not None and plan.track.title == "b"
    core.apply(Move(2, 1), 0.0)
    plan = core.next_plan()
    assert plan is not None and plan.track.title == "c"
    core.apply(SetLoop(LoopMode.TRACK), 0.0)
    plan = core.next_plan()
    assert plan is not None and plan.track.title == "a"
    core.apply(SetLoop(LoopMode.OFF), 0.0)
    core.apply(Clear(), 0.0)
    assert core.next_plan() is None
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    plan = core.next_plan()
    assert plan is not None and plan.track.title == "a"  # alone: itself again


def test_a_join_moves_the_queue_on_without_a_new_play() -> None:
    core = queue("a", "b", "c")
    started(core, 1)
    set_next(core, 2)
    assert core.next_play_id == 2
    assert core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    # Moved on and already bound to the engine's play 2: nothing to send.
    assert core.current is not None and core.current.title == "b"
    assert core.phase is Phase.JOINING and core.binding.joined
    assert core.binding.play_id == 2 and core.next_play_id is None
    assert core.status is PlayerStatus.LOADING
    assert core.on_event(EngineEvent(EventType.READY, 2), 10.0)
    assert core.status is PlayerStatus.PLAYING and core.position(12.0) == pytest.approx(2.0)
    # And the next plan is the track after.
    plan = core.next_plan()
    assert plan is not None and plan.track.title == "c"


def test_the_next_tracks_ready_may_come_first_and_is_kept() -> None:
    core = queue("a", "b")
    started(core, 1)
    set_next(core, 2)
    assert not core.on_event(EngineEvent(EventType.READY, 2), 10.0)  # before the join's finished
    assert core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    assert core.phase is Phase.STREAMING and core.status is PlayerStatus.PLAYING


def test_a_finished_that_is_not_an_end_does_not_join() -> None:
    for reason in (FinishReason.STOPPED, FinishReason.REPLACED, None):
        core = queue("a", "b")
        started(core, 1)
        set_next(core, 2)
        core.on_event(EngineEvent(EventType.FINISHED, 1, reason=reason), 10.0)
        assert core.current is not None and core.current.title == "b"
        assert not core.binding.joined and core.phase is Phase.WANTED, reason


def test_shutdown_keeps_the_track_and_forgets_the_next() -> None:
    core = queue("a", "b")
    started(core, 1)
    set_next(core, 2)
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.SHUTDOWN), 10.0)
    assert core.current is not None and core.current.title == "a"
    assert core.next_play_id is None and not core.binding.joined


def test_a_failed_next_track_reports_and_advances_like_a_failed_play() -> None:
    core = queue("a", "b", "c")
    started(core, 1)
    set_next(core, 2)
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    assert core.on_event(EngineEvent(EventType.ERROR, 2, "unsupported format"), 10.0)
    assert core.failure is not None and core.failure.track.title == "b"
    assert "unsupported format" in core.error
    # c needs a plain play (the engine's session ended).
    assert core.current is not None and core.current.title == "c"
    assert core.phase is Phase.WANTED and not core.binding.joined


def test_loop_track_joins_the_same_track_again() -> None:
    core = queue("a")
    core.apply(SetLoop(LoopMode.TRACK), 0.0)
    started(core, 1)
    set_next(core, 2)
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    assert core.current is not None and core.current.title == "a"
    assert core.binding.play_id == 2 and core.binding.joined


def test_loop_queue_joins_and_requeues() -> None:
    core = queue("a", "b")
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    started(core, 1)
    set_next(core, 2)
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    assert core.current is not None and core.current.title == "b"
    assert [t.title for t in core.queue.upcoming] == ["a"]
    assert core.binding.play_id == 2


def test_a_skip_after_the_next_was_set_is_a_plain_play_and_stale_ids_are_ignored() -> None:
    core = queue("a", "b", "c")
    started(core, 1)
    set_next(core, 2)
    core.apply(Skip(), 5.0)  # plays b plainly: the engine's next goes with the old session
    assert core.next_play_id is None
    core.sending(core.nonce)
    core.bind_play(core.nonce, 3, 5.0)
    # Late events of the replaced play and of the next it held change nothing.
    assert not core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.REPLACED), 5.1)
    assert not core.on_event(EngineEvent(EventType.READY, 2), 5.1)
    assert not core.on_event(EngineEvent(EventType.FINISHED, 2, reason=FinishReason.END), 5.1)
    assert core.current is not None and core.current.title == "b"
    assert core.on_event(EngineEvent(EventType.READY, 3), 5.2)
    assert core.status is PlayerStatus.PLAYING


def test_a_queue_that_changed_before_the_join_plays_what_it_wants() -> None:
    core = queue("a", "b", "c")
    started(core, 1)
    set_next(core, 2)
    core.apply(Remove(1), 0.0)  # b goes; the shell would replace the next by c, but the end wins
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    # The engine joined b, the queue wants c: c is played plainly over it.
    assert core.current is not None and core.current.title == "c"
    assert not core.binding.joined and core.phase is Phase.WANTED
    assert not core.on_event(EngineEvent(EventType.READY, 2), 10.0)


def test_a_next_set_answer_after_the_end_adopts_the_joined_play() -> None:
    core = queue("a", "b")
    started(core, 1)
    plan = core.next_plan()
    assert plan is not None
    # The join happened while the set_next answer was on its way.
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    # Kept: the play id is not known yet.
    assert not core.on_event(EngineEvent(EventType.READY, 2), 10.0)
    assert core.bind_next(plan, 2, 10.1)
    assert core.binding.joined and core.binding.play_id == 2
    assert core.status is PlayerStatus.PLAYING


def test_a_next_set_answer_after_an_end_without_join_changes_nothing() -> None:
    core = queue("a", "b")
    started(core, 1)
    plan = core.next_plan()
    assert plan is not None
    # Too late to join:
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    assert not core.bind_next(plan, 2, 10.1)
    assert core.phase is Phase.WANTED  # b gets a plain play


def test_a_missed_join_becomes_a_plain_play() -> None:
    core = queue("a", "b")
    started(core, 1)
    set_next(core, 2)
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    nonce = core.nonce
    assert core.join_missed(11.0)
    assert core.nonce != nonce and core.phase is Phase.WANTED
    assert core.current is not None and core.current.title == "b"
    assert not core.join_missed(11.0)  # once


def test_a_join_whose_ready_came_is_not_missed() -> None:
    core = queue("a", "b")
    started(core, 1)
    set_next(core, 2)
    core.on_event(EngineEvent(EventType.FINISHED, 1, reason=FinishReason.END), 10.0)
    core.on_event(EngineEvent(EventType.READY, 2), 10.0)
    assert not core.join_missed(11.0)


def test_shuffle_changes_the_plan_but_not_the_play() -> None:
    core = queue("a", "b", "c", "d", "e")
    started(core, 1)
    nonce = core.nonce
    before = core.next_plan()
    for seed in range(20):
        core.apply(Shuffle(seed), 0.0)
        plan = core.next_plan()
        assert plan is not None and plan.track is core.queue.upcoming[0]
    assert core.nonce == nonce and before is not None


def test_filters_and_crossfade_are_desired_state_and_survive_a_restart() -> None:
    core = queue("a")
    started(core, 1)
    nonce = core.nonce
    core.apply(SetFilters.preset(Preset.BASSBOOST), 0.0)
    core.apply(SetCrossfade(3.5), 0.0)
    desired = core.desired()
    assert desired.nonce == nonce  # a live change, not a new play
    assert desired.filters == preset(Preset.BASSBOOST) and desired.crossfade == 3.5
    view = core.view(1.0).as_dict()
    assert view["filter"] == "bassboost" and view["crossfade"] == 3.5
    restored = PlayerCore.restore("g", core.snapshot(1.0))
    assert restored.sound.filters == core.sound.filters
    assert restored.sound.filter_name == "bassboost"
    assert restored.sound.crossfade == 3.5
    core.apply(SetFilters(parse_filters({}), "custom"), 0.0)
    assert core.sound.filter_name == "" and core.desired().filters == Filters()


def test_bad_sound_settings_are_refused_in_words() -> None:
    core = PlayerCore("g")
    with pytest.raises(CommandError, match="between 0 and 12 seconds"):
        core.apply(SetCrossfade(MAX_CROSSFADE + 1), 0.0)
    with pytest.raises(CommandError, match="between 0 and 12"):
        core.apply(SetCrossfade(float("nan")), 0.0)
    with pytest.raises(CommandError, match="object"):
        core.apply(SetFilters.from_json([1, 2]), 0.0)
    with pytest.raises(CommandError, match="at most 15 bands"):
        core.apply(SetFilters.from_json({"equalizer": [{"band": 0, "gain": 0.1}] * 1000}),
                   0.0)
    assert core.sound.filters == Filters() and core.sound.crossfade == 0.0


def test_unreadable_saved_settings_are_ignored() -> None:
    core = PlayerCore.restore("g", {"tracks": [], "settings": {"filters": "loud",
                                                               "crossfade": 99}})
    assert core.sound.filters == Filters() and core.sound.crossfade == 0.0
