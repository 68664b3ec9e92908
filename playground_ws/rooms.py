"""One room per playground user: every open tab of that user, and their audio.

The room's ``BrowserSink`` is the router's sink for the user's session id. Every
tab gets the user's state; the audio goes to one tab only, the room's *audio
tab*: the one the person used last (a tab says so with a ``focus`` message; a
new tab starts as the audio tab only when there is none). Each tab is told
whether it plays (``output``), so the others can say where the sound is. When
the audio tab closes, the most recently used of the others takes over.

A connection keeps two small bounded queues (audio frames, text messages)
drained by its own writer task, so a slow tab loses its oldest audio (counted)
and never slows the router, the other tabs, or other users.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import Metric
from starlette.websockets import WebSocket, WebSocketDisconnect

from applog import session_logger
from gateway.metrics import counter, gauge
from gateway.player import CommandError, Pause, Player, PlayerStatus, PlayerView
from gateway.runtime import Gateway
from gateway.settings import setting_default
from gateway.sinks import PacedOpusSink
from lifecycle import TaskOwner, declare
from protocol import Event, OpusStreamStart

__all__ = ["BrowserSink", "Connection", "Room", "Rooms"]

log = logging.getLogger(__name__)

PROGRESS = declare(
    "room-progress-{key}", owner="Room",
    what="a room's progress messages (every second while its user has a tab open)",
    ends="the room's last tab leaves, or the room closes")

#: Audio frames a tab may have queued: 50 frames = 1 s. A tab further behind
#: than that is not keeping up; its oldest frames go.
AUDIO_QUEUE_FRAMES = 50
#: Text messages a tab may have queued (state snapshots replace each other).
TEXT_QUEUE_MESSAGES = 64
#: Seconds between progress messages while playing.
PROGRESS_INTERVAL = 1.0


class Connection:
    """One WebSocket of one tab."""

    def __init__(self, websocket: WebSocket, name: str, client: str = "unknown") -> None:
        self.websocket = websocket
        self.name = name
        #: Who the tab's address belongs to (``admission.client_key``).
        self.client = client
        self._audio: deque[bytes] = deque()
        self._text: deque[str] = deque()
        self._wake = asyncio.Event()
        self.dropped_frames = 0
        self.sent_frames = 0
        self.closed = False
        #: Loop time of the last message from the tab (heartbeat).
        self.last_seen = 0.0
        #: Loop time the person last used this tab (joined or sent ``focus``).
        self.focused_at = 0.0

    def send_audio(self, frame: bytes) -> None:
        """Queue one Opus frame (drops the oldest when the tab is behind)."""
        if len(self._audio) >= AUDIO_QUEUE_FRAMES:
            self._audio.popleft()
            self.dropped_frames += 1
        self._audio.append(frame)
        self._wake.set()

    def drop_audio(self) -> None:
        """Forget queued audio (the sound moved to another tab)."""
        self._audio.clear()

    @property
    def queued_frames(self) -> int:
        """Audio frames waiting to be written."""
        return len(self._audio)

    def send_json(self, message: dict[str, Any]) -> None:
        """Queue one text message."""
        if len(self._text) >= TEXT_QUEUE_MESSAGES:
            self._text.popleft()
        self._text.append(json.dumps(message, separators=(",", ":")))
        self._wake.set()

    async def writer(self) -> None:
        """Drain the queues into the socket until it closes."""
        websocket = self.websocket
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._text or self._audio:
                    if self._text:
                        await websocket.send_text(self._text.popleft())
                    elif self._audio:
                        await websocket.send_bytes(self._audio.popleft())
                        self.sent_frames += 1
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.closed = True


class BrowserSink(PacedOpusSink):
    """The router's sink for one playground user: frames go to the room's audio
    tab, no faster than real time (a Go engine's catch-up burst is paced out)."""

    kind = "browser"

    def __init__(self, room: Room) -> None:
        super().__init__(capacity=AUDIO_QUEUE_FRAMES)
        self._room = room

    def push(self, frame: bytes) -> None:
        """Hand the frame to the audio tab; its queue is the jitter buffer
        (bounded, oldest dropped), so the sink keeps none itself."""
        audio = self._room.audio
        if audio is not None:
            audio.send_audio(frame)

    def stream_started(self, start: OpusStreamStart) -> None:
        """Tell the tabs a new stream began (their decoders may reset)."""
        self._room.broadcast({"type": "stream", "serial": start.serial})


class Room:
    """A user's tabs, sink, player listeners and progress ticker.

    The room holds its player (a held player is never unloaded) from its creation
    until it is released, *linger* seconds after its last tab left; then a
    playing player is paused and ``on_release`` removes the room.
    """

    def __init__(self, user_id: str, player: Player, gateway: Gateway, *,
                 linger: float = setting_default("room_linger"),
                 on_release: Callable[[Room], None] | None = None,
                 wording: Callable[[str], str] = str) -> None:
        self.user_id = user_id
        self.player = player
        self.gateway = gateway
        self.linger = linger
        self.wording = wording
        self.connections: list[Connection] = []
        #: The tab that plays the sound (None without tabs).
        self.audio: Connection | None = None
        self.log = session_logger(log, user_id)
        self.sink = BrowserSink(self)
        self._unsubscribe = player.subscribe(self._on_view)
        self._release_player = player.hold()
        self._on_release = on_release
        self._progress: asyncio.Task[None] | None = None
        self._tasks = TaskOwner(PROGRESS.owner, logger=self.log)
        self._pause_later: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def client(self) -> str:
        """The client of the tab that joined last ("" without tabs)."""
        return self.connections[-1].client if self.connections else ""

    def join(self, connection: Connection) -> None:
        """Add a tab; the first one routes the user's audio to this room, and
        becomes the audio tab. Every tab is told where the sound is."""
        if self._pause_later is not None:
            self._pause_later.cancel()
            self._pause_later = None
        self.connections.append(connection)
        connection.focused_at = asyncio.get_running_loop().time()
        if len(self.connections) == 1:
            self.gateway.router.register_sink(self.user_id, self.sink)
            self.gateway.router.add_listener(self.user_id, self._on_event)
            if not self._tasks.closed:
                self._progress = self._tasks.spawn(PROGRESS, self._tick_progress(),
                                                   key=self.user_id)
        if self.audio is None:
            self.audio = connection
        self.log.info("tab %s joined (%d open)", connection.name, len(self.connections))
        self._announce_output()

    def focus(self, connection: Connection) -> None:
        """The person uses *connection*'s tab now: the sound moves there."""
        if connection not in self.connections:
            return
        connection.focused_at = asyncio.get_running_loop().time()
        if self.audio is connection:
            return
        if self.audio is not None:
            self.audio.drop_audio()
        self.audio = connection
        self.log.info("sound moves to tab %s", connection.name)
        self._announce_output()

    def _announce_output(self) -> None:
        tabs = len(self.connections)
        for connection in self.connections:
            connection.send_json({"type": "output", "here": connection is self.audio,
                                  "tabs": tabs})

    def leave(self, connection: Connection) -> None:
        """Remove a tab; after the last, audio stops flowing here, and after
        *linger* seconds without a tab the player is paused and the room released."""
        if connection in self.connections:
            self.connections.remove(connection)
        self.log.info("tab %s left (%d open)", connection.name, len(self.connections))
        if self.audio is connection:
            self.audio = max(self.connections, key=lambda c: c.focused_at, default=None)
        if self.connections:
            self._announce_output()
        else:
            self.gateway.router.unregister_sink(self.user_id, self.sink)
            self.gateway.router.remove_listener(self.user_id, self._on_event)
            self.sink = BrowserSink(self)
            if self._progress is not None:
                self._progress.cancel()
                self._progress = None
            self._pause_later = asyncio.get_running_loop().call_later(
                self.linger, self._pause_if_empty
            )

    def close(self) -> None:
        """Detach from the player (releasing it) and the router. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._unsubscribe()
        self._release_player()
        self.gateway.router.unregister_sink(self.user_id, self.sink)
        self.gateway.router.remove_listener(self.user_id, self._on_event)
        self.sink.close()
        if self._progress is not None:
            self._progress.cancel()
            self._progress = None
        if self._pause_later is not None:
            self._pause_later.cancel()
            self._pause_later = None

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a text message to every tab."""
        for connection in self.connections:
            connection.send_json(message)

    def state_message(self) -> dict[str, Any]:
        """The full state a tab needs on connect."""
        return self._state(self.player.view())

    def _state(self, view: PlayerView) -> dict[str, Any]:
        state = view.as_dict()
        if state["error"]:
            state["error"] = self.wording(state["error"])
        # Failures so far: a new one is told even when its words repeat the last.
        state["failures"] = view.failure.serial if view.failure else 0
        return {"type": "state", "user_id": self.user_id, "state": state}

    def _on_view(self, view: PlayerView) -> None:
        self.broadcast(self._state(view))

    def _on_event(self, event: Event) -> None:
        message: dict[str, Any] = {"type": "event", "event": event.type.value}
        if event.message:
            message["message"] = self.wording(event.message)
        self.broadcast(message)

    async def _tick_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            view = self.player.view()
            if view.status in (PlayerStatus.PLAYING, PlayerStatus.PAUSED, PlayerStatus.LOADING):
                self.broadcast({
                    "type": "progress",
                    "status": view.status.value,
                    "position": round(view.position, 2),
                    "duration": view.duration,
                    "buffered_frames": sum(c.queued_frames for c in self.connections),
                    "time": time.time(),
                })

    def _pause_if_empty(self) -> None:
        self._pause_later = None
        if self.connections or self.closed:
            return
        view = self.player.view()
        if view.status in (PlayerStatus.PLAYING, PlayerStatus.LOADING) and not view.paused:
            self.log.info("no tab open for %.0f s; pausing", self.linger)
            # Applied to the core at once (the player's own task talks to the
            # engine): nothing of the room outlives it.
            with contextlib.suppress(CommandError):
                self.player.apply_nowait(Pause())
        self.close()
        if self._on_release is not None:
            self._on_release(self)


class Rooms:
    """Every user's room, created on first connection and released *linger*
    seconds after its last tab closed (with its player, see ``_released``)."""

    def __init__(self, gateway: Gateway, *, linger: float = setting_default("room_linger"),
                 wording: Callable[[str], str] = str) -> None:
        self.gateway = gateway
        self.linger = linger
        self.wording = wording
        self._rooms: dict[str, Room] = {}
        #: Frames sent to and dropped for tabs that have since closed.
        self.closed_sent = 0
        self.closed_dropped = 0
        gateway.metrics.add_source(self.metric_families)

    def connection_closed(self, connection: Connection) -> None:
        """Keep a closed tab's counters in the totals."""
        self.closed_sent += connection.sent_frames
        self.closed_dropped += connection.dropped_frames

    def metric_families(self) -> Iterable[Metric]:
        """Playground metrics (see ``gateway.metrics``)."""
        live = [c for room in self._rooms.values() for c in room.connections]
        yield gauge("audiogate_gateway_websocket_connections",
                    "Playground WebSockets open", len(live))
        yield gauge("audiogate_gateway_websocket_users", "Playground users with a tab open",
                    sum(1 for room in self._rooms.values() if room.connections))
        yield counter("audiogate_gateway_websocket_frames_sent", "Opus frames sent to tabs",
                      self.closed_sent + sum(c.sent_frames for c in live))
        yield counter("audiogate_gateway_websocket_frames_dropped",
                      "Opus frames dropped for tabs that fell behind",
                      self.closed_dropped + sum(c.dropped_frames for c in live))

    def get(self, user_id: str) -> Room:
        """The room of *user_id* (join it at once: an empty room is released after
        *linger* seconds only once a tab has left it)."""
        room = self._rooms.get(user_id)
        if room is None:
            player = self.gateway.players.get(user_id, output="web")
            room = self._rooms[user_id] = Room(user_id, player, self.gateway,
                                               linger=self.linger, on_release=self._released,
                                               wording=self.wording)
        return room

    def existing(self, user_id: str) -> Room | None:
        """The room of *user_id*, if it has one now."""
        return self._rooms.get(user_id)

    def rooms(self) -> list[Room]:
        """Every room now."""
        return list(self._rooms.values())

    def _released(self, room: Room) -> None:
        """A room nobody came back to: its player goes too, so a paused session
        no longer holds an engine slot (queue and position are kept)."""
        if self._rooms.get(room.user_id) is room:
            del self._rooms[room.user_id]
        if self.gateway.players.unload_soon(room.user_id):
            room.log.info("no tab for %.0f s: player unloaded, engine session released",
                          self.linger)

    def __len__(self) -> int:
        return len(self._rooms)

    def broadcast_all(self, message: dict[str, Any]) -> None:
        """Send a text message to every tab of every user."""
        for room in self._rooms.values():
            room.broadcast(message)

    @property
    def connections(self) -> int:
        """Open playground WebSockets."""
        return sum(len(room.connections) for room in self._rooms.values())

    def close(self) -> None:
        """Detach every room."""
        for room in self._rooms.values():
            with contextlib.suppress(Exception):
                room.close()
        self._rooms.clear()
