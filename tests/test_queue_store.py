"""The queue database when things go wrong: a damaged file is moved aside with one
clear log line, a locked one is retried, and a save is never dropped silently."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.database import DatabaseError
from gateway.player import Enqueue, PlayerRegistry, QueueStore, SetCrossfade, SetFilters, Track
from gateway.router import Router
from protocol.filters import parse_filters

from .support.scripted_engine import ScriptedEngine
from .support.waiting import poll_until_async, wait_until

pytestmark = pytest.mark.timeout(60)


def damaged_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "gateway.database" and r.levelno >= logging.ERROR]


async def test_a_file_that_is_not_a_database_is_moved_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queues.sqlite3"
    path.write_bytes(b"this is not a database at all " * 100)
    with caplog.at_level(logging.ERROR):
        store = QueueStore(path)
    try:
        lines = damaged_lines(caplog)
        assert len(lines) == 1 and "damaged" in lines[0] and "moved it to" in lines[0]
        aside = await asyncio.to_thread(lambda: list(tmp_path.glob("queues.sqlite3.corrupt-*")))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
        assert store.corrupt_recoveries == 1
        await store.save("g", {"tracks": []})
        assert await store.load_all() == {"g": {"tracks": []}}
    finally:
        await store.aclose()


async def test_a_database_with_damaged_pages_is_moved_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queues.sqlite3"
    store = QueueStore(path)
    for index in range(200):
        await store.save(f"user-{index}", {"tracks": [{"url": "x" * 200}]})
    await store.aclose()
    data = bytearray(path.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = b"\xff" * 4096  # a b-tree page of garbage
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        reopened = QueueStore(path)
    try:
        assert len(damaged_lines(caplog)) == 1
        assert await reopened.load_all() == {}
        assert await asyncio.to_thread(lambda: list(tmp_path.glob("queues.sqlite3.corrupt-*")))
    finally:
        await reopened.aclose()


async def test_a_locked_database_is_retried_until_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "queues.sqlite3"
    store = QueueStore(path, lock_timeout=5.0)
    holder = sqlite3.connect(path)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        asyncio.get_running_loop().call_later(0.5, holder.rollback)
        await store.save("g", {"tracks": [1]})
        assert store.lock_retries >= 1 and store.failed_saves == 0
        assert await store.load("g") == {"tracks": [1]}
    finally:
        holder.close()
        await store.aclose()


async def test_a_save_that_stays_locked_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "queues.sqlite3"
    store = QueueStore(path, lock_timeout=0.3)
    holder = sqlite3.connect(path)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DatabaseError, match="stayed locked"):
            await store.save("g", {"tracks": [1]})
        assert store.failed_saves == 1
    finally:
        holder.rollback()
        holder.close()
        await store.aclose()


async def test_a_player_keeps_a_save_that_failed_and_saves_it_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.player import controller

    monkeypatch.setattr(controller, "RETRY_FIRST", 0.05)
    path = tmp_path / "queues.sqlite3"
    store = QueueStore(path, lock_timeout=0.2)
    engine = ScriptedEngine(features=["play_id"])
    client = engine.client()
    registry = PlayerRegistry(engine=client, router=Router(), store=store)
    holder = sqlite3.connect(path)
    try:
        player = registry.get("k-save")
        holder.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.ERROR, logger="gateway.player.controller"):
            await player.apply(Enqueue(Track("http://media.test/a.mp3", title="a")))
            await wait_until(lambda: registry.stats.failed_saves >= 2, 10)
        assert any("saving the queue failed" in r.getMessage() for r in caplog.records)
        holder.rollback()

        async def saved() -> bool:
            state = await store.load("k-save")
            return bool(state and state["tracks"])

        await poll_until_async(saved, timeout=10)
    finally:
        holder.close()
        await registry.close(release=False)
        await client.aclose()
        await store.aclose()


async def test_an_old_database_is_migrated_and_keeps_its_queues(tmp_path: Path) -> None:
    """A file of schema 0 (queues only) opens: its queues load, and sound settings
    get their own table, kept when the queue is forgotten."""
    path = tmp_path / "queues.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE players (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
                "updated REAL NOT NULL)")
    old.execute("INSERT INTO players VALUES ('g1', ?, 0)",
                ('{"tracks": [{"url": "http://x/a.mp3"}], "index": 0}',))
    old.commit()
    old.close()
    store = QueueStore(path)
    try:
        loaded = await store.load("g1")
        assert loaded is not None and loaded["tracks"][0]["url"] == "http://x/a.mp3"
        assert "settings" not in loaded
        settings = {"filters": {"rotation": {"rotationHz": 0.2}}, "filter_name": "8d",
                    "crossfade": 2.0}
        await store.save("g1", {**loaded, "settings": settings})
        again = await store.load("g1")
        assert again is not None and again["settings"] == settings
        assert "settings" not in (await store.load_all())["g1"]
        await store.delete("g1")  # the queue goes, the settings stay
        assert await store.load("g1") == {"settings": settings}
        # Defaults leave no row behind.
        await store.save_settings("g1", {"filters": {}, "filter_name": "", "crossfade": 0})
        assert await store.load("g1") is None
    finally:
        await store.aclose()
    check = sqlite3.connect(path)
    try:
        (version,) = check.execute("PRAGMA user_version").fetchone()
        assert version == 2  # schema 2 added the playlists
    finally:
        check.close()
    await QueueStore(path).aclose()  # a migrated file opens again as it is


async def test_sound_settings_outlive_an_emptied_queue(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite3")
    engine = ScriptedEngine(features=["play_id", "volume", "finish_reason", "filters",
                                      "crossfade"])
    try:
        registry = PlayerRegistry(engine=engine.client(), router=Router(), store=store)
        registry.engine_connected()
        await wait_until(lambda: registry.link.discovered)
        player = registry.get("u1")
        await player.apply(SetCrossfade(4.0))
        await player.apply(SetFilters(parse_filters({"lowPass": {"smoothing": 20.0}}), "soft"))
        await registry.close(release=False)
        registry = PlayerRegistry(engine=engine.client(), router=Router(), store=store)
        player = registry.get("u1")
        await player.loaded()
        view = player.view()
        assert view.crossfade == 4.0 and view.filter_name == "soft"
        assert view.current is None
        await registry.close(release=False)
    finally:
        await store.aclose()


async def test_closing_never_blocks_the_event_loop_even_with_a_lock_wait(
        tmp_path: Path) -> None:
    """A save waiting on a lock (up to 5 s) does not hold ``aclose``, nor the loop: the
    shutdown deadline stays in force."""
    path = tmp_path / "queues.sqlite3"
    store = QueueStore(path, lock_timeout=5.0)
    await store.count()
    holder = sqlite3.connect(path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        holder.execute("BEGIN EXCLUSIVE")
        saving = asyncio.create_task(store.save("g", {"tracks": [1]}))
        await wait_until(lambda: store.lock_retries >= 1, 5)
        loop = asyncio.get_running_loop()
        started, ticks_before = loop.time(), ticks
        await store.aclose()
        assert loop.time() - started < 1.5
        with pytest.raises(DatabaseError, match="closing"):
            await saving
        assert ticks > ticks_before  # the loop kept turning meanwhile
        with pytest.raises(DatabaseError, match="closed"):
            await store.save("g", {"tracks": [2]})
    finally:
        running.cancel()
        holder.rollback()
        holder.close()


async def test_one_database_moves_a_damaged_file_aside_once_for_every_table(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The queues and the bot's guild settings share one database and one policy: a
    damaged file is moved aside once, and both tables live on in the fresh one (two
    owners of one file used to disagree: one moved it aside, the other kept it)."""
    from bot.guild_settings import GuildSettings, GuildSettingsStore
    from gateway.database import Database

    path = tmp_path / "queues.sqlite3"
    database = Database(path)
    queues, guilds = QueueStore(database), GuildSettingsStore(database, cache_size=0)
    await queues.save("g", {"tracks": [1]})
    await guilds.update(7, stay=True)
    await database.aclose()
    with path.open("r+b") as file:  # another program writes over the header
        file.write(b"\x00" * 100)

    with caplog.at_level(logging.ERROR):
        database = Database(path)
    queues, guilds = QueueStore(database), GuildSettingsStore(database, cache_size=0)
    try:
        assert await guilds.get(7) == GuildSettings()
        assert await queues.load("g") is None
        await queues.save("g", {"tracks": [2]})
        await guilds.update(7, dj_role_id=5)
        assert await queues.load("g") == {"tracks": [2]}
        assert await guilds.get(7) == GuildSettings(dj_role_id=5)
        assert len(damaged_lines(caplog)) == 1 and database.corrupt_recoveries == 1
        aside = await asyncio.to_thread(lambda: list(tmp_path.glob("queues.sqlite3.corrupt-*")))
        assert len(aside) == 1
    finally:
        await database.aclose()
