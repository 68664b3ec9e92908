"""Finding a socket that is connected but silent.

The Go engine writes only to its most recently connected socket client: when
anything else connects to its socket (a probe, a second gateway, a Node front),
our connection stays open and carries nothing. Every player would stay silent
until the gateway reconnects, and nothing on the socket says so.

The watchdog notices it from the players' side: a player that is playing (its
``ready`` arrived, not paused) whose session id got no audio packet for
``threshold`` seconds is a suspect. The engine is asked (``GET
/session/{id}/status``); "streaming" means the audio goes somewhere else, so the
socket is reconnected (which makes us the most recent client again). Any other
answer goes to the player, which checks its stream itself (it ended, or the
engine lost it).

The decision is pure (``SilenceTracker``); ``SilenceWatchdog`` is the loop around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.engine_client import EngineClient, EngineError
from gateway.player import PlayerRegistry
from gateway.router import Router
from gateway.socket_client import SocketClient

__all__ = ["SilenceTracker", "SilenceWatchdog"]

log = logging.getLogger(__name__)

#: Status calls per round at most: one streaming answer is enough to act, and a
#: flood of them would only load an engine that may be in trouble.
MAX_CHECKS_PER_ROUND = 4


@dataclass(slots=True)
class _Seen:
    count: int
    since: float


class SilenceTracker:
    """Which keys have been silent for ``threshold`` seconds while they should not.

    Feed it, every round, the keys expected to be receiving audio with their
    packet counters (any value that changes when a packet arrives). State is
    kept only for the keys of the latest round, so it is bounded by the number
    of playing players.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._seen: dict[str, _Seen] = {}

    def observe(self, counts: Iterable[tuple[str, int]], now: float) -> list[str]:
        """Record this round's counters; returns the keys silent for the threshold."""
        seen: dict[str, _Seen] = {}
        silent: list[str] = []
        for key, count in counts:
            previous = self._seen.get(key)
            if previous is None or previous.count != count:
                seen[key] = _Seen(count, now)
                continue
            seen[key] = previous
            if now - previous.since >= self.threshold:
                silent.append(key)
        self._seen = seen
        return silent

    def checked(self, key: str, now: float) -> None:
        """*key* was looked into: judge it again only after another threshold."""
        seen = self._seen.get(key)
        if seen is not None:
            seen.since = now

    def forget(self) -> None:
        """Start over (after a reconnect)."""
        self._seen.clear()


class SilenceWatchdog:
    """Reconnects the engine socket when it carries nothing for playing sessions.

    Args:
        registry: the players (which keys should be receiving audio).
        router: packet counters per session id.
        socket: the connection to reconnect.
        engine: asked whether a silent session is streaming.
        threshold: seconds without a packet before a playing key is suspect.
        interval: seconds between rounds.
        clock: monotonic time.
    """

    def __init__(
        self,
        *,
        registry: PlayerRegistry,
        router: Router,
        socket: SocketClient,
        engine: EngineClient,
        threshold: float = 3.0,
        interval: float = 1.0,
        clock: Callable[[], float],
    ) -> None:
        self._registry = registry
        self._router = router
        self._socket = socket
        self._engine = engine
        self._clock = clock
        self.interval = interval
        self.tracker = SilenceTracker(threshold)
        #: Reconnections made because the socket was silent.
        self.reconnects = 0
        self._generation = -1

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled. Cancelling is safe."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except EngineError as exc:
                log.debug("silence check could not ask the engine: %s", exc.detail)

    async def check(self) -> bool:
        """One round; returns True if it reconnected the socket."""
        link = self._registry.link
        if not self._socket.connected.is_set():
            self.tracker.forget()
            return False
        if link.generation != self._generation:
            # A fresh connection: give it a whole threshold before judging.
            self._generation = link.generation
            self.tracker.forget()
        counts = self._router.packets_by_session
        candidates = [(p.key, counts.get(p.key, 0)) for p in self._registry.players
                      if p.silence_candidate]
        silent = self.tracker.observe(candidates, self._clock())
        for key in silent[:MAX_CHECKS_PER_ROUND]:
            status = await self._engine.status(key)
            if status is not None and status.status == "streaming":
                self.reconnects += 1
                log.warning("no audio for %.1f s although the engine is streaming it: "
                            "the socket is silent (another client took it?); reconnecting",
                            self.tracker.threshold, extra={"session_id": key})
                self.tracker.forget()
                self._socket.close()
                return True
            self.tracker.checked(key, self._clock())
            player = self._registry.existing(key)
            if player is not None:
                player.link_back()
        return False
