"""Lavalink-style frameStats arithmetic, on a controlled clock."""

from __future__ import annotations

from audio_engine.sessions.framestats import FrameStats


def test_a_full_minute_of_clean_playback() -> None:
    stats = FrameStats(start=0.0)
    stats.roll(0.0, 0, {"a": (0, 0, 0), "b": (0, 0, 0)})
    assert not stats.due(59.9) and stats.due(60.0)
    window = stats.roll(60.0, 3000, {"a": (3000, 3000, 0), "b": (3000, 2990, 10)})
    assert (window.sent, window.nulled, window.deficit, window.players) == (2995, 5, 0, 2)


def test_skipped_ticks_are_a_deficit_and_partial_sessions_do_not_count() -> None:
    stats = FrameStats(start=100.0)
    stats.roll(100.0, 500, {"a": (10, 10, 0), "late": (0, 0, 0)})
    # The clock skipped 100 ticks this minute; "late" was paused half the time;
    # "new" started within the window.
    window = stats.roll(160.0, 3400, {
        "a": (2910, 2880, 20), "late": (1450, 1450, 0), "new": (200, 200, 0),
    })
    assert window.ticks == 2900
    assert window.players == 1
    assert (window.sent, window.nulled, window.deficit) == (2870, 20, 110)
    assert stats.last is window


def test_no_full_session_gives_zeros() -> None:
    stats = FrameStats(start=0.0)
    window = stats.roll(60.0, 3000, {"a": (3000, 3000, 0)})  # no baseline yet
    assert (window.players, window.sent) == (0, 0)
