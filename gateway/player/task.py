"""One player's supervised task: load its stored queue, then have its ``Reconciler``
make the engine match the core one call at a time, with the failure policy of each
call. Runs on the event loop.

The task sleeps until woken (``wake``: a command, an event, a hold, the link back);
then it makes calls until nothing is pending, so a burst of commands costs one engine
call per *settled* state. The failure policy of a call:

* engine unreachable: the desired state is kept, the view says so (``UNAVAILABLE``),
  and the call is made again when the engine is back (or after a growing delay, for
  an engine whose API is down while its socket is up);
* engine error (5xx), or an answer that makes no sense here: tried again after a
  growing delay (a play is given up after a few attempts, ``plays``).

An unexpected exception is logged, counted and the task run again after a growing
delay (``restart``); what the call in flight did at the engine is then unknown, so
the engine is asked about the stream first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from applog import SessionLogger
from gateway.engine_client import EngineError, EngineFault, EngineUnavailable
from gateway.player.core import PlayerCore
from gateway.player.link import LinkView
from gateway.player.reconcile import Reconciler
from gateway.player.stats import PlayerStats
from lifecycle import Backoff

__all__ = ["UNAVAILABLE", "PlayerTask"]

#: What the view says while the engine cannot be reached.
UNAVAILABLE = "the audio engine is unavailable; waiting for it to come back"
#: A task that ran this long before failing starts its restart delays from the first
#: again (seconds).
RESTART_RESET_AFTER = 60.0


class _Player(Protocol):
    """What the task needs of its player."""

    log: SessionLogger
    stats: PlayerStats

    @property
    def core(self) -> PlayerCore: ...

    @property
    def pending(self) -> bool: ...

    @property
    def notice(self) -> str: ...

    async def load(self) -> None: ...

    def resume_if_held(self) -> None: ...

    def set_notice(self, notice: str) -> None: ...

    def update_settled(self) -> None: ...


class PlayerTask:
    """The body of one player's task (``supervise``), and its wake-up.

    Args:
        player: the player (its core, what is pending, its notice and listeners).
        reconciler: makes the engine calls.
        link: the engine connection's state (a call is tried again when it changes).
        loaded: set once the stored queue is loaded (``player.load`` sets it).
        clock: the shell's monotonic clock.
        retry: delays between attempts after an engine error.
        restart: makes the delays before a crashed task is run again.
    """

    def __init__(self, player: _Player, *, reconciler: Reconciler, link: LinkView,
                 loaded: asyncio.Event, clock: Callable[[], float], retry: Backoff,
                 restart: Callable[[], Backoff]) -> None:
        self._player = player
        self._reconciler = reconciler
        self._link = link
        self._loaded = loaded
        self._clock = clock
        self._retry = retry
        self._restart = restart
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Have the task look at the desired state again."""
        self._wake.set()

    async def supervise(self) -> None:
        """Run the task, and run it again after any unexpected error. Never returns;
        cancelling is safe (the player's ``close``)."""
        player = self._player
        backoff = self._restart()
        while True:
            started = self._clock()
            try:
                await self._run()
            except Exception:
                player.stats.restarts += 1
                if self._clock() - started > RESTART_RESET_AFTER:
                    backoff.reset()
                delay = backoff.next()
                player.log.exception("player task failed; restarting it in %.1f s", delay)
                # Whatever the call in flight did at the engine is unknown.
                self._reconciler.verify = player.core.current is not None
                self._loaded.set()
                await asyncio.sleep(delay)
                self._wake.set()

    async def _run(self) -> None:
        player = self._player
        if not self._loaded.is_set():
            await player.load()
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            player.resume_if_held()
            while player.pending:
                await self._step()
                player.resume_if_held()
            if self._link.connected:
                # Settled with the socket up (it may have come back after the
                # last call): nothing left to warn about.
                player.set_notice("")
            player.update_settled()

    async def _step(self) -> None:
        """One engine call towards the desired state, with its failure policy."""
        player = self._player
        try:
            await self._reconciler.step()
            self._retry.reset()
            self._reconciler.faults_cleared()
            if self._link.connected:
                # (With the socket down no audio reaches us, whatever the API says:
                # an engine shutting down may still answer on an open connection.)
                player.set_notice("")
        except EngineUnavailable as exc:
            # Keep the desired state; try again when the engine is back (or after
            # a delay, for an engine whose API is down while its socket is up).
            delay = self._retry.next()
            if player.notice != UNAVAILABLE:
                player.log.warning("%s (%s); retrying when it is back", exc, exc.detail)
            player.set_notice(UNAVAILABLE)
            await self._link.wait_change(delay)
        except EngineFault as exc:
            delay = self._retry.next()
            player.log.warning("the engine failed (%s %s); retrying in %.1f s",
                               exc.status, exc, delay)
            player.set_notice(f"the audio engine failed ({exc}); retrying")
            await asyncio.sleep(delay)
        except EngineError as exc:
            # An answer that makes no sense here (a question about the stream
            # only: every call that changes something handles its refusals).
            delay = self._retry.next()
            player.log.warning("unexpected answer from the engine (%s); retrying in %.1f s",
                               exc.detail, delay)
            await asyncio.sleep(delay)
        player.update_settled()
