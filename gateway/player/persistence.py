"""A player's queue in the store: loaded once, saved in the background, saved last at
close.

Every change marks the player dirty; one task per player saves the latest snapshot
(coalesced: a burst of changes is one write, the newest). A save that fails is logged,
counted and retried with growing delays, never dropped: a newer change saves the newer
state. At close the queue is saved one last time (an empty one is deleted, its sound
settings kept), bounded in time.

Positions move without any change: ``save_positions`` writes the snapshots of every
playing player in one transaction, which the registry does every few seconds, so a
gateway killed without warning loses at most that much of everyone's progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from applog import SessionLogger
from gateway.database import DatabaseError
from gateway.player.stats import PlayerStats
from gateway.player.store import QueueStore
from lifecycle import Backoff, TaskOwner, declare

__all__ = ["CLOSE_TIMEOUT", "POSITION_SAVE_INTERVAL", "PlayerSaver", "save_positions"]

#: Longest wait for the final save of one player at close (seconds).
CLOSE_TIMEOUT = 3.0
#: Seconds between background saves of playing positions: a kill loses at most this
#: much progress, plus the write.
POSITION_SAVE_INTERVAL = 4.0

SAVE_TASK = declare(
    "player-save-{key}", owner="PlayerSaver",
    what="saving one player's queue in the background while it is dirty",
    ends="clean (saved), or the player's close (a final save follows, bounded)")


class PlayerSaver:
    """The store side of one player.

    Args:
        key: the player's key.
        store: where queues live.
        snapshot: the player's current snapshot (called when a save starts).
        stats: shared counters (failed saves).
        log: the player's logger.
        retry: a fresh back-off for the delays between failed saves.
    """

    def __init__(self, key: str, store: QueueStore, *, snapshot: Callable[[], dict[str, Any]],
                 stats: PlayerStats, log: SessionLogger,
                 retry: Callable[[], Backoff]) -> None:
        self.key = key
        self._store = store
        self._snapshot = snapshot
        self._stats = stats
        self._log = log
        self._retry = retry
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._tasks = TaskOwner(SAVE_TASK.owner, logger=log)

    async def load(self) -> dict[str, Any] | None:
        """The stored snapshot, or None (none, or unreadable: logged)."""
        try:
            return await self._store.load(self.key)
        except DatabaseError as exc:
            self._log.error("the saved queue could not be read (%s); starting empty", exc)
            return None

    def schedule(self) -> None:
        """Save soon (the snapshot taken when the write starts)."""
        if self._tasks.closed:
            return
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = self._tasks.spawn(SAVE_TASK, self._save_while_dirty(), key=self.key)

    async def _save_while_dirty(self) -> None:
        backoff = self._retry()
        while self._dirty:
            self._dirty = False
            try:
                await self._store.save(self.key, self._snapshot())
            except DatabaseError as exc:
                # Never dropped: keep it dirty and try again (a newer change
                # saves the newer state).
                self._dirty = True
                self._stats.failed_saves += 1
                delay = backoff.next()
                self._log.error("saving the queue failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            else:
                backoff.reset()

    async def aclose(self, *, final: dict[str, Any] | None) -> None:
        """Stop saving in the background; then store *final* (a snapshot; one
        without tracks deletes the queue and keeps its sound settings), bounded by
        ``CLOSE_TIMEOUT``. None: no final save. Idempotent."""
        await self._tasks.aclose()
        if final is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if final.get("tracks"):
                    await self._store.save(self.key, final)
                else:
                    await self._store.delete(self.key)
                    await self._store.save_settings(self.key, final.get("settings") or {})
        except (DatabaseError, TimeoutError) as exc:
            self._stats.failed_saves += 1
            self._log.error("the queue could not be saved (%s); it is lost",
                            exc or "timed out")


async def save_positions(store: QueueStore, snapshots: Iterable[tuple[str, dict[str, Any]]],
                         stats: PlayerStats) -> int:
    """Write the snapshots of playing players in one transaction; returns how many.

    Raises:
        DatabaseError: nothing was written (counted in ``failed_saves``; the next
            round writes newer positions).
    """
    batch = list(snapshots)
    if not batch:
        return 0
    try:
        await store.save_many(batch)
    except DatabaseError:
        stats.failed_saves += 1
        raise
    stats.position_saves += 1
    return len(batch)
