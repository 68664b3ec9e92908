"""Saved playlists in the gateway's database file: per owner, bounded, named without
regard to letter case, migrated into older files (schema step 2)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.database import Database
from gateway.player import QueueStore, Track
from gateway.playlists import MAX_NAME, PlaylistError, PlaylistStore
from gateway.schema import SCHEMA_VERSION

pytestmark = pytest.mark.timeout(60)


def tracks(*names: str) -> list[Track]:
    return [Track(f"http://media/{n}.mp3", title=n, duration=12.0, requested_by="alice",
                  thumbnail=f"http://media/{n}.jpg") for n in names]


async def test_save_list_load_and_delete_per_owner(tmp_path: Path) -> None:
    database = Database(tmp_path / "q.sqlite3")
    store = PlaylistStore(database)
    try:
        saved = await store.save("discord:1", "  Road   trip ", tracks("a", "b"))
        assert (saved.name, saved.count, saved.left_out, saved.replaced) == (
            "Road trip", 2, 0, False)
        await store.save("discord:1", "calm", tracks("c"))
        await store.save("discord:2", "road trip", tracks("z"))  # another owner's own

        listed = await store.summaries("discord:1")
        assert [(p.name, p.count) for p in listed] == [("calm", 1), ("Road trip", 2)]

        loaded = await store.load("discord:1", "ROAD TRIP", requested_by="bob")
        assert loaded is not None and loaded.name == "Road trip"
        assert [t.title for t in loaded.tracks] == ["a", "b"]
        first = loaded.tracks[0]
        assert (first.url, first.duration, first.thumbnail, first.requested_by) == (
            "http://media/a.mp3", 12.0, "http://media/a.jpg", "bob")
        again = await store.load("discord:1", "road trip")
        assert again is not None and again.tracks[0].id != first.id  # new queue entries
        other = await store.load("discord:2", "Road trip")
        assert other is not None and [t.title for t in other.tracks] == ["z"]
        assert await store.load("discord:3", "Road trip") is None

        replaced = await store.save("discord:1", "road TRIP", tracks("d"))
        assert replaced.replaced and replaced.name == "road TRIP"
        assert [(p.name, p.count) for p in await store.summaries("discord:1")] == [
            ("calm", 1), ("road TRIP", 1)]

        assert await store.delete("discord:1", "Calm") == "calm"
        assert await store.delete("discord:1", "calm") is None
        assert [p.name for p in await store.summaries("discord:1")] == ["road TRIP"]
    finally:
        await database.aclose()


async def test_the_bounds_are_kept_and_said(tmp_path: Path) -> None:
    database = Database(":memory:")
    store = PlaylistStore(database, max_playlists=2, max_tracks=3)
    try:
        cut = await store.save("o", "long", tracks("a", "b", "c", "d", "e"))
        assert (cut.count, cut.left_out) == (3, 2)
        await store.save("o", "second", tracks("a"))
        with pytest.raises(PlaylistError, match="2 playlists, the most"):
            await store.save("o", "third", tracks("a"))
        # Replacing one is not a new one; another owner has their own allowance.
        await store.save("o", "SECOND", tracks("b"))
        await store.save("p", "third", tracks("a"))
        with pytest.raises(PlaylistError, match="nothing to save"):
            await store.save("o", "long", [])
        with pytest.raises(PlaylistError, match="name"):
            await store.save("o", "   ", tracks("a"))
        with pytest.raises(PlaylistError, match=f"at most {MAX_NAME} characters"):
            await store.save("o", "x" * (MAX_NAME + 1), tracks("a"))
        assert [(p.name, p.count) for p in await store.summaries("o")] == [
            ("long", 3), ("SECOND", 1)]
    finally:
        await database.aclose()


async def test_a_schema_1_file_gains_the_playlists_and_keeps_its_queues(
        tmp_path: Path) -> None:
    path = tmp_path / "queues.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE players (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
                "updated REAL NOT NULL)")
    old.execute("CREATE TABLE player_settings (key TEXT PRIMARY KEY, settings TEXT NOT NULL, "
                "updated REAL NOT NULL)")
    old.execute("INSERT INTO players VALUES ('g1', ?, 0)",
                ('{"tracks": [{"url": "http://x/a.mp3"}], "index": 0}',))
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    database = Database(path)
    queues, playlists = QueueStore(database), PlaylistStore(database)
    try:
        loaded = await queues.load("g1")
        assert loaded is not None and loaded["tracks"][0]["url"] == "http://x/a.mp3"
        await playlists.save("o", "kept", tracks("a"))
    finally:
        await database.aclose()
    check = sqlite3.connect(path)
    try:
        (version,) = check.execute("PRAGMA user_version").fetchone()
        assert version == SCHEMA_VERSION == 2
        assert check.execute("SELECT name FROM playlists").fetchall() == [("kept",)]
    finally:
        check.close()


async def test_unreadable_rows_load_as_empty_not_as_an_error(tmp_path: Path) -> None:
    database = Database(":memory:")
    store = PlaylistStore(database)
    try:
        await store.save("o", "bad", tracks("a"))

        def spoil(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute("UPDATE playlists SET tracks = ?",
                                   ('[{"url": ""}, 7, {"title": "no link"}, '
                                    '{"url": "http://x/ok.mp3", "duration": "long"}]',))

        await database.run(spoil, "spoiling")
        loaded = await store.load("o", "bad")
        assert loaded is not None
        assert [(t.url, t.duration) for t in loaded.tracks] == [("http://x/ok.mp3", None)]
    finally:
        await database.aclose()
