"""The gateway's pool of engine nodes: health, placement, failover, drain.

Each ``EngineNode`` owns its socket connection (``SocketClient``, the node's token
in the hello), its API client, and a watch task that reads ``/stats`` every
``interval`` seconds (and at once when the socket connects or drops). A node is
*up* while its socket is connected and its API answers; it is *down* once its
API fails after the socket dropped, fails twice in a row, or its socket stays
down for ``SOCKET_GRACE`` seconds.

Each player gets a ``NodeBinding`` (its engine calls and its link view). A
session's node is chosen on its first play (``placement.choose``: the lowest
Lavalink-style penalty among usable nodes) and kept for every later call. A play
finds its node unusable (down, or drained) or refused (503/429) -> it is placed
again, on another node; a drained node's session is stopped there first.

When a node goes down, every session placed on it is released and its player told
(``Player.stream_moved``): the player asks its binding about the stream (no node
now, so no session), and plays the track again from the position it had reached
when the node's socket dropped, on the node placement picks. Queue, volume,
filters, crossfade and pause state are the player's (its ``Desired``: whatever it
holds is replayed) and stay as they were. Drained nodes' sessions move
at their next track, or all at once (``drain(move=True)``, or after
``move_after`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from gateway.engine_client import (
    GO_ENGINE,
    EngineBusy,
    EngineCapabilities,
    EngineClient,
    EngineError,
    EngineNotFound,
    EngineOverloaded,
    EngineUnavailable,
    FiltersResult,
    Format,
    NextResult,
    PlayResult,
    SessionInfo,
    SessionStatus,
)
from gateway.nodes.config import NodeConfig
from gateway.nodes.penalty import NodeStats, penalty
from gateway.nodes.placement import Candidate, choose
from gateway.nodes.routing import NodeRouter
from gateway.player.link import EngineApi, EngineLink, LinkView
from gateway.player.registry import PlayerRegistry
from gateway.router import Router
from gateway.socket_client import SocketClient
from lifecycle import TaskOwner, declare
from protocol.filters import Filters

__all__ = ["EngineNode", "NodeBinding", "NodePool", "NodeState", "PoolConnection"]

log = logging.getLogger(__name__)

NODE_SOCKET = declare(
    "node-{key}-socket", owner="EngineNode (`run`'s task group)",
    what="one engine node's socket: connect, read, reconnect with the back-off",
    ends="`Gateway.stop` (the pool's group is cancelled after the players)")
NODE_WATCH = declare(
    "node-{key}-watch", owner="EngineNode (`run`'s task group)",
    what="one engine node's `/stats` watch (placement penalties, features after a connect)",
    ends="`Gateway.stop`, with the node's socket")
NODE = declare(
    "node-{key}", owner="NodePool (`run`'s task group)",
    what="one engine node (its socket and watch)", ends="`Gateway.stop`")
DRAIN_DEADLINE = declare(
    "node-drain-deadline", owner="NodePool (`run`'s task group)",
    what="moving what still plays on a drained node `GATEWAY_DRAIN_MOVE_AFTER` on",
    ends="`Gateway.stop`")
DRAIN_STOP = declare(
    "node-{key}-stop", owner="NodePool",
    what="stopping a moved session on the drained node it left",
    ends="the node's answer, or `STOP_TIMEOUT`; cancelled by `NodePool.aclose`")

#: Seconds a node's socket may stay down while its API answers before the node
#: counts as down (an engine whose socket server broke, or a network that lets
#: HTTP through but not the socket).
SOCKET_GRACE = 3.0
#: Failed polls in a row that make a node down while its socket looks connected
#: (a dead host leaves a half-open TCP connection that carries nothing).
FAILED_POLLS = 2
#: Seconds a poll of ``/stats`` may take.
POLL_TIMEOUT = 1.5
#: Seconds a stop on a node a session left may take.
STOP_TIMEOUT = 2.0
#: What a player hears when no node is usable.
NO_NODE = "no audio engine node is available"


class NodeState(StrEnum):
    """A node's state (admin calls, logs)."""

    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class EngineNode:
    """One engine of the pool: its socket, its API client, its watch."""

    def __init__(self, config: NodeConfig, order: int, pool: NodePool, router: Router) -> None:
        self.config = config
        self.name = config.name
        self.order = order
        self._pool = pool
        token = config.token
        self.client = EngineClient(config.api, token=token)
        #: Polls get no retries: a dead node must be found out at once.
        self._probe = EngineClient(config.api, token=token, retries=0, timeout=POLL_TIMEOUT)
        self.routing = NodeRouter(router, lambda key: pool.owner(key) is self)
        tls = ssl.create_default_context(cafile=str(config.ca)) if config.ca else None
        self.socket = SocketClient(config.socket, self.routing, token=token, tls=tls)
        self.socket.add_state_listener(self._socket_state)
        self.link = EngineLink()
        self.stats = NodeStats()
        #: Sessions placed here since ``stats`` were read.
        self.placed = 0
        self.refused_until = 0.0
        self.draining = False
        self.drained_at: float | None = None
        self.api_ok = False
        self.polls_failed = 0
        self.state = NodeState.CONNECTING
        self.problem = "not checked yet"
        self.socket_lost_at: float | None = None
        #: Counters (metrics): sessions moved off after it went down or was drained,
        #: plays it refused for load or count, times it went down.
        self.failovers = 0
        self.moved = 0
        self.refusals = 0
        self.downs = 0
        self._wake = asyncio.Event()

    @property
    def up(self) -> bool:
        return self.state == NodeState.UP

    @property
    def usable(self) -> bool:
        """Up and not drained: new sessions may go here."""
        return self.up and not self.draining

    def candidate(self) -> Candidate:
        return Candidate(name=self.name, up=self.up, draining=self.draining, stats=self.stats,
                         placed=self.placed, refused_until=self.refused_until,
                         order=self.order)

    def penalty(self) -> float:
        return penalty(self.stats, self.placed)

    def refused(self, exc: EngineError, now: float) -> None:
        """The node refused a play of ours (503 for load, 429 for its count)."""
        self.refusals += 1
        wait = exc.retry_after if isinstance(exc, EngineOverloaded) else 5.0
        self.refused_until = now + wait
        log.info("node %s refused a play (%s); placing elsewhere for %.0f s",
                 self.name, exc, wait)

    def nudge(self) -> None:
        self._wake.set()

    # -- tasks ---------------------------------------------------------------------

    async def run(self) -> None:
        """The socket's reconnect loop and the watch, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.socket.run(), name=NODE_SOCKET.task_name(self.name))
            tasks.create_task(self._watch(), name=NODE_WATCH.task_name(self.name))

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._probe.aclose()

    async def _watch(self) -> None:
        while True:
            self._wake.clear()
            await self.check()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._pool.interval):
                    await self._wake.wait()

    async def check(self) -> None:
        """Read ``/stats`` (and the features after a connect) once; update the
        state. Never raises (but cancelling is safe)."""
        try:
            async with asyncio.timeout(POLL_TIMEOUT + 0.5):
                document = await self._probe.stats()
                if not self.link.discovered and self.socket.connected.is_set():
                    self.link.set_capabilities(await self._probe.capabilities())
        except (TimeoutError, EngineError) as exc:
            self.polls_failed += 1
            self.api_ok = False
            self.problem = str(exc) if isinstance(exc, EngineError) else "no answer in time"
        else:
            self.polls_failed = 0
            self.api_ok = True
            self.problem = ""
            self.stats = NodeStats.from_stats(document)
            self.placed = 0
        self._update()

    def _socket_state(self, connected: bool) -> None:
        now = self._pool.clock()
        if connected:
            self.socket_lost_at = None
            self.link.mark_connected()
        else:
            self.socket_lost_at = now
            self.link.mark_lost(now)
            self._pool.link_lost(self, now)
        self.nudge()  # check the API at once: alive, or dead?
        self._update()

    def _update(self) -> None:
        connected = self.socket.connected.is_set()
        now = self._pool.clock()
        was = self.state
        lost_for = now - self.socket_lost_at if self.socket_lost_at is not None else 0.0
        if connected and self.api_ok and self.link.discovered:
            state = NodeState.UP
        elif (not self.api_ok and self.polls_failed and not connected) \
                or self.polls_failed >= FAILED_POLLS or lost_for >= SOCKET_GRACE:
            state = NodeState.DOWN
        else:
            state = was  # a hiccup (one failed poll, a socket reconnecting): wait
        if state != was:
            self.state = state
            log.warning("node %s is %s%s", self.name, state,
                        f" ({self.problem})" if state == NodeState.DOWN and self.problem
                        else "")
            if state == NodeState.DOWN:
                self.downs += 1
            self._pool.node_changed(self, was)


class NodeBinding:
    """One player's engine and link: the node its session is placed on.

    Calls about the session go to that node; a play places the session first
    when it has no usable node (see the module docstring). Without a node there
    is no session: ``status`` is None, pause and resume raise ``EngineNotFound``.
    Live changes (volume, filters, crossfade, the next track) go to the bound
    node; what a moved session gets back is the player's ``Desired``, replayed by
    the player.
    """

    def __init__(self, pool: NodePool, key: str) -> None:
        self._pool = pool
        self.key = key
        self._seen: tuple[str, int] | None = None
        self._generation = 0

    @property
    def node(self) -> EngineNode | None:
        return self._pool.owner(self.key)

    # -- LinkView ------------------------------------------------------------------

    @property
    def capabilities(self) -> EngineCapabilities:
        node = self.node or self._pool.best()
        return node.link.capabilities if node is not None else GO_ENGINE

    @property
    def connected(self) -> bool:
        node = self.node
        if node is None:
            return self._pool.best() is not None
        return node.link.connected

    @property
    def discovered(self) -> bool:
        node = self.node or self._pool.best()
        return node.link.discovered if node is not None else False

    @property
    def generation(self) -> int:
        """Changes whenever the player's engine may be a different process: a
        new node, or a reconnect of its node."""
        node = self.node
        seen = (node.name, node.link.generation) if node is not None else None
        if seen is not None and seen != self._seen:
            self._seen = seen
            self._generation += 1
        return self._generation

    @property
    def lost_at(self) -> float | None:
        node = self.node
        return node.link.lost_at if node is not None else None

    async def wait_change(self, seconds: float) -> None:
        await self._pool.wait_change(seconds)

    # -- EngineApi -----------------------------------------------------------------

    async def play(self, session_id: str, url: str, *, format: Format = "opus",
                   start_at: float = 0.0, duration: float = 0.0,
                   volume: float | None = None, filters: Filters | None = None,
                   crossfade: float | None = None) -> PlayResult:
        """Play on the session's node, placing it first when it has none usable;
        a node that refuses (load, count) is left for the next best.

        Raises:
            EngineUnavailable: no node is usable; or what the last node raised.
        """
        pool = self._pool
        tried: set[str] = set()
        last: EngineError | None = None
        while True:
            node = self.node
            if node is None or not node.usable or node.name in tried:
                node = await pool.place(self.key, exclude=tried)
                if node is None:
                    if last is not None:
                        raise last
                    raise EngineUnavailable(NO_NODE, detail=NO_NODE)
            try:
                return await node.client.play(session_id, url, format=format,
                                              start_at=start_at, duration=duration,
                                              volume=volume, filters=filters,
                                              crossfade=crossfade)
            except (EngineOverloaded, EngineBusy) as exc:
                node.refused(exc, pool.clock())
                tried.add(node.name)
                pool.release(self.key, node)
                last = exc

    async def stop(self, session_id: str) -> None:
        node = self.node
        if node is not None:
            # The player stays on its node (its next track plays there too) until
            # it is unloaded, or the node dies or is drained.
            await node.client.stop(session_id)

    async def pause(self, session_id: str) -> None:
        await self._bound().client.pause(session_id)

    async def resume(self, session_id: str) -> None:
        await self._bound().client.resume(session_id)

    async def status(self, session_id: str) -> SessionStatus | None:
        node = self.node
        return await node.client.status(session_id) if node is not None else None

    async def session_info(self, session_id: str) -> SessionInfo | None:
        node = self.node
        return await node.client.session_info(session_id) if node is not None else None

    async def set_volume(self, session_id: str, volume: float) -> None:
        await self._bound().client.set_volume(session_id, volume)

    async def set_filters(self, session_id: str,
                          filters: Filters) -> FiltersResult:
        return await self._bound().client.set_filters(session_id, filters)

    async def set_crossfade(self, session_id: str, seconds: float) -> float:
        return await self._bound().client.set_crossfade(session_id, seconds)

    async def set_next(self, session_id: str, url: str, *, start_at: float = 0.0,
                       duration: float = 0.0, filters: Filters | None = None,
                       now: bool = False) -> NextResult:
        """The next track joins the current stream, so it goes to the session's
        node (a session without one has no stream to join: 404)."""
        return await self._bound().client.set_next(session_id, url, start_at=start_at,
                                                   duration=duration, filters=filters,
                                                   now=now)

    async def cancel_next(self, session_id: str) -> int | None:
        return await self._bound().client.cancel_next(session_id)

    def _bound(self) -> EngineNode:
        node = self.node
        if node is None:
            raise EngineNotFound("session not found", 404)
        return node


class NodePool:
    """Every engine node of one gateway process (see the module docstring).

    Args:
        configs: the nodes, in order (ties in placement go to the earlier).
        router: the gateway's shared router.
        interval: seconds between polls of each node's ``/stats``.
        drained: names of nodes drained from the start.
        move_after: seconds a drained node's sessions may finish their track
            before they are moved live.
        clock: monotonic time (the players' clock).
    """

    def __init__(self, configs: Iterable[NodeConfig], router: Router, *,
                 interval: float = 2.0, drained: Iterable[str] = (),
                 move_after: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.move_after = move_after
        self.clock = clock
        self.nodes = [EngineNode(config, index, self, router)
                      for index, config in enumerate(configs)]
        self._by_name = {node.name: node for node in self.nodes}
        unknown = set(drained) - set(self._by_name)
        if unknown:
            raise ValueError(f"GATEWAY_DRAIN_NODES names unknown nodes: "
                             f"{', '.join(sorted(unknown))}")
        for name in drained:
            self._by_name[name].draining = True
            self._by_name[name].drained_at = clock()
        self._owners: dict[str, EngineNode] = {}
        self._bindings: dict[str, NodeBinding] = {}
        self._registry: PlayerRegistry | None = None
        self._pulse = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        #: Stops of moved sessions on drained nodes, in flight.
        self._tasks = TaskOwner(DRAIN_STOP.owner, logger=log)
        #: Sessions placed, by node name (metrics).
        self.placements: dict[str, int] = {node.name: 0 for node in self.nodes}

    def attach(self, registry: PlayerRegistry) -> None:
        """The players the pool moves on failover and drain."""
        self._registry = registry

    def node(self, name: str) -> EngineNode | None:
        return self._by_name.get(name)

    # -- bindings (PlayerRegistry's Binder) --------------------------------------------

    def bind(self, key: str) -> tuple[EngineApi, LinkView]:
        binding = self._bindings.get(key)
        if binding is None:
            binding = self._bindings[key] = NodeBinding(self, key)
        return binding, binding

    def unbind(self, key: str) -> None:
        self._bindings.pop(key, None)
        self._owners.pop(key, None)

    def owner(self, key: str) -> EngineNode | None:
        """The node *key*'s session is placed on, if any."""
        return self._owners.get(key)

    def sessions_on(self, node: EngineNode) -> list[str]:
        return [key for key, owner in self._owners.items() if owner is node]

    # -- placement ---------------------------------------------------------------------

    def best(self, exclude: Iterable[str] = ()) -> EngineNode | None:
        """The node a new session would go to now (None: no usable node)."""
        chosen = choose((n.candidate() for n in self.nodes), self.clock(), exclude)
        return self._by_name[chosen.name] if chosen is not None else None

    async def place(self, key: str, *, exclude: Iterable[str] = ()) -> EngineNode | None:
        """Place *key*'s session on the best node (releasing the node it had: a
        drained one's session is stopped there first, a dead one's is gone)."""
        old = self._owners.get(key)
        node = self.best(exclude)
        if node is None:
            return None
        if old is not None and old is not node:
            self.release(key, old)
            if old.up:
                old.moved += 1
                await self._stop_quietly(old, key)
        self._owners[key] = node
        node.placed += 1
        self.placements[node.name] += 1
        log.info("session placed on node %s (penalty %.1f)", node.name, node.penalty(),
                 extra={"session_id": key})
        self._fire()
        return node

    def release(self, key: str, node: EngineNode) -> None:
        """*key*'s session is no longer on *node*."""
        if self._owners.get(key) is node:
            del self._owners[key]

    # -- node events ---------------------------------------------------------------------

    def link_lost(self, node: EngineNode, now: float) -> None:
        """*node*'s socket dropped: its players note it (their position is
        taken from then if the node turns out dead)."""
        registry = self._registry
        if registry is None:
            return
        for key in self.sessions_on(node):
            player = registry.existing(key)
            if player is not None:
                player.link_lost(now)
        self._fire()

    def node_changed(self, node: EngineNode, was: str) -> None:
        """*node*'s state changed: a node down loses its sessions to the others;
        one back (after a reconnect) has its players check their streams."""
        if node.state == NodeState.DOWN:
            self._move_all(node, failover=True)
        elif node.state == NodeState.UP and self._registry is not None:
            for key in self.sessions_on(node):
                player = self._registry.existing(key)
                if player is not None:
                    player.link_back()
        self._fire()

    def _move_all(self, node: EngineNode, *, failover: bool) -> int:
        """Release every session of *node*; their players play on elsewhere."""
        keys = self.sessions_on(node)
        at = node.socket_lost_at if failover and node.socket_lost_at is not None \
            else self.clock()
        for key in keys:
            self.release(key, node)
            if failover:
                node.failovers += 1
            else:
                node.moved += 1
                # A drained node is alive: end the session there too.
                if not self._tasks.closed:
                    self._tasks.spawn(DRAIN_STOP, self._stop_quietly(node, key), key=node.name)
            player = self._registry.existing(key) if self._registry is not None else None
            if player is not None:
                player.stream_moved(at)
        if keys:
            log.warning("%s %d sessions off node %s", "failing over" if failover else "moving",
                        len(keys), node.name)
        return len(keys)

    async def _stop_quietly(self, node: EngineNode, key: str) -> None:
        """Stop *key*'s session on *node*, which it has left; a node that does not
        answer within ``STOP_TIMEOUT`` is not waited for (its idle reaper, or its
        drain, ends the session)."""
        with contextlib.suppress(EngineError, TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):
                await node.client.stop(key)

    # -- drain ---------------------------------------------------------------------------

    def drain(self, name: str, *, move: bool = False) -> int:
        """Take *name* out of placement; with *move*, move its sessions now.
        Returns how many sessions were moved.

        Raises:
            KeyError: no such node.
        """
        node = self._by_name[name]
        if not node.draining:
            node.draining = True
            node.drained_at = self.clock()
            log.warning("node %s drained: no new sessions; %d playing there move at "
                        "their next track", name, len(self.sessions_on(node)))
        self._fire()
        return self._move_all(node, failover=False) if move else 0

    def undrain(self, name: str) -> None:
        """Put *name* back into placement. Raises ``KeyError`` for no such node."""
        node = self._by_name[name]
        node.draining = False
        node.drained_at = None
        log.info("node %s takes new sessions again", name)
        self._fire()

    async def _drain_deadline(self) -> None:
        """Move what still plays on a drained node ``move_after`` seconds on."""
        while True:
            await asyncio.sleep(min(5.0, max(0.05, self.move_after / 4)))
            now = self.clock()
            for node in self.nodes:
                if node.draining and node.drained_at is not None \
                        and now - node.drained_at >= self.move_after and self.sessions_on(node):
                    self._move_all(node, failover=False)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Every node's socket and watch, and the drain deadline, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for node in self.nodes:
                tasks.create_task(node.run(), name=NODE.task_name(node.name))
            tasks.create_task(self._drain_deadline(), name=DRAIN_DEADLINE.task_name())

    async def aclose(self) -> None:
        """Cancel the stops in flight and close every node's clients."""
        await self._tasks.aclose()
        for node in self.nodes:
            await node.aclose()

    async def wait_change(self, seconds: float) -> None:
        """Return after the next node change or placement, or after *seconds*."""
        pulse = self._pulse
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await pulse.wait()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call *listener* after every node change, placement or drain."""
        self._listeners.append(listener)

    def _fire(self) -> None:
        self._pulse.set()
        self._pulse = asyncio.Event()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("pool listener failed")

    # -- views -------------------------------------------------------------------------------

    @property
    def any_up(self) -> bool:
        return any(node.up for node in self.nodes)

    def readiness(self) -> str | None:
        """None when a node can take sessions, else why not (no addresses)."""
        if any(node.usable for node in self.nodes):
            return None
        if any(node.up for node in self.nodes):
            return "every engine node is drained"
        return "no engine node is up"

    def view(self) -> list[dict[str, Any]]:
        """Every node for ``GET /admin/nodes`` (no addresses or tokens)."""
        return [
            {
                "name": node.name,
                "state": node.state,
                "draining": node.draining,
                "sessions": len(self.sessions_on(node)),
                "penalty": round(node.penalty(), 2),
                "playing": node.stats.playing,
                "load": round(node.stats.load, 3),
                "admitting": node.stats.admitting and node.refused_until <= self.clock(),
                "problem": node.problem if node.state == NodeState.DOWN else "",
                "placements": self.placements[node.name],
                "failovers": node.failovers,
                "moved": node.moved,
                "refusals": node.refusals,
            }
            for node in self.nodes
        ]


class PoolConnection:
    """What fronts read of "the engine connection" when there is a pool: connected
    while any node is up (``connected``, state listeners), counters summed."""

    def __init__(self, pool: NodePool) -> None:
        self._pool = pool
        self.connected = asyncio.Event()
        self._listeners: list[Callable[[bool], None]] = []
        pool.add_listener(self._changed)

    def add_state_listener(self, listener: Callable[[bool], None]) -> None:
        """Call *listener* with True when the first node comes up and False when
        the last one goes."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        up = self._pool.any_up
        if up == self.connected.is_set():
            return
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        for listener in list(self._listeners):
            try:
                listener(up)
            except Exception:
                log.exception("connection state listener failed")

    @property
    def reconnects(self) -> int:
        return sum(node.socket.reconnects for node in self._pool.nodes)

    @property
    def protocol_errors(self) -> int:
        return sum(node.socket.protocol_errors for node in self._pool.nodes)
