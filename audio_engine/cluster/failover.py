"""The front's recovery of a dead or stuck worker: its sessions are played again on
live workers from where their listeners were, and its slot is started again.

A worker whose channel closes is dead (``worker_lost``): its slot restarts after
0.5 s, doubling to 10 s while it keeps dying (``pool``), and its live sessions move:
each goes to a live worker (the restarted one if it is the only one) from the
position its listeners reached, continuing the same Ogg logical stream (serial,
granules, page numbers) without a new ``ready``, with its volume, filters and
crossfade (``directory``); its Lavalink players' voice connections are made again
where their sessions went (``claims``). A worker whose clock has not ticked for
``WORKER_HUNG_AFTER`` while its channel is open is killed (``kill_hung``) and
recovered the same way. The other sessions never notice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from audio_engine.cluster.calls import CALL_TIMEOUT
from audio_engine.cluster.claims import VoiceClaims
from audio_engine.cluster.directory import SessionDirectory
from audio_engine.cluster.peer import CallFailed, CallTimedOut, PeerGone
from audio_engine.cluster.pool import WorkerPool, silent_for
from audio_engine.cluster.workers import WorkerProcess
from audio_engine.metrics import EngineMetrics
from lifecycle import Process, TaskOwner, declare

__all__ = ["MOVE", "RESTART", "WORKER_HUNG_AFTER", "Failover"]

log = logging.getLogger(__name__)

#: Seconds a moved session waits for a live worker before it is given up.
_MOVE_WAIT: Final = 15.0
#: Seconds without a tick after which a worker counts as stuck and is killed: far
#: beyond any stall a loaded host causes (a clock that stalls a second is already
#: "not ready"), short enough that its listeners lose seconds, not minutes.
WORKER_HUNG_AFTER: Final = 15.0

_OWNER = "Failover (the front's)"
RESTART = declare(
    "engine-worker-{key}-restart", owner=_OWNER, process=Process.ENGINE,
    what="starting a dead worker's slot again, after 0.5 s doubling to 10 s while it "
         "keeps dying",
    ends="the new worker started, or `Front.close_now` (cancelled, awaited)")
MOVE = declare(
    "engine-worker-{key}-move", owner=_OWNER, process=Process.ENGINE,
    what="playing a dead worker's sessions again on live workers, from where their "
         "listeners were, and connecting its Lavalink players' voice connections again",
    ends="every session moved (or given up after 15 s without a live worker), or "
         "`Front.close_now`")


class Failover:
    """See the module docstring.

    Args:
        sessions: the front's session directory.
        pool: the worker processes.
        voices: the Lavalink players' claims.
        metrics: the front's metrics (restarts, moves, kills).
        place: the front's placement: the worker a session goes to, among live ones.
        stopping: set when the front stops (a worker lost then is not recovered).
    """

    def __init__(self, sessions: SessionDirectory[WorkerProcess], pool: WorkerPool,
                 voices: VoiceClaims, metrics: EngineMetrics,
                 place: Callable[[list[WorkerProcess]], WorkerProcess],
                 stopping: asyncio.Event) -> None:
        self._sessions = sessions
        self._pool = pool
        self._voices = voices
        self._metrics = metrics
        self._place = place
        self._stopping = stopping
        self._tasks = TaskOwner(_OWNER, logger=log)

    def worker_lost(self, worker: WorkerProcess) -> None:
        """*worker*'s channel closed: restart its slot and move its sessions (unless
        the pool already knew, or the front stops)."""
        if not self._pool.lost(worker) or self._stopping.is_set():
            return
        self._metrics.worker_restarts.inc()
        moving = self._sessions.orphaned(worker)
        log.error("engine worker %d died (%s); moving its %d sessions", worker.index,
                  worker.lost_reason or "channel closed", moving)
        if not self._tasks.closed:
            self._tasks.spawn(RESTART, self._pool.restart(worker), key=str(worker.index))
            if moving or self._voices.holds_any(worker):
                self._tasks.spawn(MOVE, self._move(worker, time.monotonic()),
                                  key=str(worker.index))

    async def _move(self, dead: WorkerProcess, died_at: float) -> None:
        """Play the dead worker's live sessions again on live workers, from where
        their listeners were, in the same Ogg streams; connect its voice connections
        again where their sessions went."""
        voices = self._voices.held_by(dead)
        if not await self._pool.wait_live(_MOVE_WAIT):
            log.error("no engine worker to move sessions to; they are lost")
        for session_id, record in self._sessions.to_move(dead):
            workers = self._pool.live(started=True)
            if not workers:
                self._sessions.pop(session_id)
                continue
            target = self._place(workers)
            voice = self._voices.get(session_id)
            if voice is not None:
                voice.worker = target  # its connection is made again there (reconnect)
            request, resume = SessionDirectory.moved_play(record, died_at)
            record.worker = target
            record.moving = False
            record.confirmed = False
            try:
                await target.call("play", session_id, request, record.play_id, resume,
                                  within=CALL_TIMEOUT)
                record.confirmed = True
                self._metrics.sessions_moved.inc()
                log.info("session %s moved to worker %d at %.2f s", session_id, target.index,
                         request.start_at)
            except (PeerGone, CallTimedOut, CallFailed) as exc:
                log.error("session %s could not be moved: %s", session_id, exc)
                self._sessions.pop(session_id)
        await self._voices.reconnect(dead, voices)

    def kill_hung(self) -> None:
        """A worker whose clock has not ticked for ``WORKER_HUNG_AFTER`` while its
        channel is open is stuck (a deadlock, a call that never returns): its sessions
        are silent. It is killed, so they move and it restarts."""
        for worker in self._pool.live(started=True):
            silent = silent_for(worker)
            if silent > WORKER_HUNG_AFTER:
                log.error("engine worker %d has not ticked for %.0f s; killing it",
                          worker.index, silent)
                self._metrics.workers_killed.inc()
                worker.kill()

    async def close(self) -> None:
        """Cancel and await the restarts and moves under way. Idempotent."""
        await self._tasks.aclose()
