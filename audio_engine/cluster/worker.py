"""A worker's side of the engine: its link to the front and what the front may ask.

``WorkerLink`` is the channel to the front seen from a worker. It is the ``Hub`` the
worker's session manager writes to (each tick's bytes become one ``BATCH``), the
way the worker's resolver reaches the front's yt-dlp pool (``jobs``), and the
dispatcher of the front's calls to ``WorkerService``.

``WorkerService`` turns each call into the session manager's operation and answers
with plain values (views as dicts, failures as ``Failure``): the front never sees a
``Session`` object. It also attaches the voice connections of Lavalink players
(``voice``, ``voice_close``; see ``cluster.voice``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from audio_engine.audio.formats import OutputFormat
from audio_engine.cluster.channel import Batch, Failure, encode_batch, encode_events
from audio_engine.cluster.peer import CallFailed, Peer
from audio_engine.cluster.reports import VoiceServer, WorkerReport
from audio_engine.cluster.voice import VoicePlayers
from audio_engine.engine import Engine
from audio_engine.metrics import EngineMetrics, families_of
from audio_engine.sessions.manager import NotPlayable, TooManySessions
from audio_engine.sessions.session import PlayRequest, Resume
from audio_engine.sessions.views import filters_view, session_view
from audio_engine.sources.resolve_pool import JobFailed, JobTimedOut, WorkerLimits
from protocol.filters import Filters

__all__ = ["FRONT_QUEUE_LIMIT", "RemoteJobs", "WorkerLink", "WorkerService"]

log = logging.getLogger(__name__)

#: Bytes the front may leave unread on a worker's channel before the worker drops
#: its ticks' audio (event lines still go): 2 s of a thousand passthrough sessions.
FRONT_QUEUE_LIMIT = 32 * 1024 * 1024
#: Seconds a ``voice`` call waits for its connection to be usable (Discord's voice
#: handshake takes well under a second; a connection still trying after this goes on).
VOICE_CONNECT_WAIT: Final = 10.0


class WorkerLink(Peer):
    """See the module docstring.

    Args:
        metrics: where audio dropped because the front is behind is counted.
        queue_limit: see ``FRONT_QUEUE_LIMIT``.
    """

    def __init__(self, metrics: EngineMetrics, *, queue_limit: int = FRONT_QUEUE_LIMIT) -> None:
        super().__init__("front")
        self._metrics = metrics
        self._queue_limit = queue_limit
        #: Until the front says otherwise, a Go-style consumer may be connected: the
        #: Node-safe margins apply.
        self._go_style = True
        self._lost = asyncio.Event()
        self.handlers["consumers"] = self._consumers

    def use_metrics(self, metrics: EngineMetrics) -> None:
        """Count in *metrics* from now on (the engine's, once it exists)."""
        self._metrics = metrics

    # -- the Hub of the session manager ------------------------------------------------------

    @property
    def go_style_connected(self) -> bool:
        return self._go_style

    def _consumers(self, go_style: bool) -> None:
        self._go_style = go_style

    def broadcast(self, parts: list[bytes], events: list[bytes], audio_packets: int, *,
                  announced: Sequence[str] = (),
                  headers: Sequence[tuple[str, bytes]] = ()) -> float | None:
        """One tick to the front; first audio after *announced* ``ready`` lines is
        timed from when the front wrote them (``ready_written``), so None."""
        event_bytes = b"".join(events)
        if self.queued_bytes > self._queue_limit:
            # The front is not reading: keep the lines (and first header pages),
            # drop this tick's audio, as a consumer over its queue gets.
            self._metrics.frames_dropped.labels("front_behind").inc(audio_packets)
            data = event_bytes + b"".join(packet for _, packet in headers)
            batch = Batch(data, event_bytes, 0, tuple(announced), tuple(headers))
        else:
            batch = Batch(b"".join(parts), event_bytes, audio_packets, tuple(announced),
                          tuple(headers))
        self.write(encode_batch(batch))
        return None

    def send_event(self, line: bytes) -> None:
        self.write(encode_events(line))

    def forget(self, session_id: str) -> None:
        self.cast("forget", session_id)

    # -- the rest ------------------------------------------------------------------------------

    def on_lost(self, exc: Exception | None) -> None:
        self._lost.set()

    async def lost(self) -> None:
        """Wait until the front closed the channel (it stopped, or died)."""
        await self._lost.wait()


class RemoteJobs:
    """The front's resolution pool seen from a worker (``resolver.JobRunner``)."""

    def __init__(self, link: WorkerLink, limits: WorkerLimits) -> None:
        self._link = link
        self._limits = limits

    @property
    def limits(self) -> WorkerLimits:
        return self._limits

    async def run(self, job: dict[str, Any], *, caller: str) -> dict[str, Any]:
        """See ``JobRunner.run``; cancelling cancels the job at the front (its worker
        process is killed)."""
        try:
            answer = await self._link.call("resolve_job", job, caller,
                                           within=2 * self._limits.deadline + 5)
        except CallFailed as exc:
            if exc.kind == "timeout":
                raise JobTimedOut(str(exc)) from exc
            raise JobFailed(str(exc)) from exc
        except Exception as exc:
            raise JobFailed("the engine's resolver is unavailable") from exc
        if not isinstance(answer, dict):
            raise JobFailed("the resolver answered nonsense")
        return answer


def _not_found() -> CallFailed:
    return CallFailed(Failure("not_found", "session not found"))


class WorkerService:
    """The calls a worker answers (registered on its ``WorkerLink``)."""

    def __init__(self, engine: Engine, link: WorkerLink, *, index: int = 0,
                 voices: VoicePlayers | None = None) -> None:
        self.engine = engine
        self.link = link
        self.index = index
        self.manager = engine.manager
        self.voices = voices if voices is not None else VoicePlayers(link)
        self._gates: dict[int, Any] = {}
        self._gate_ids = 0
        link.handlers.update({
            "play": self.play,
            "stop": self.stop,
            "pause": self.pause,
            "resume": self.resume,
            "status": self.status,
            "view": self.view,
            "views": self.views,
            "volume": self.volume,
            "seek": self.seek,
            "filters": self.filters,
            "set_filters": self.set_filters,
            "crossfade": self.crossfade,
            "set_next": self.set_next,
            "cancel_next": self.cancel_next,
            "end_at": self.end_at,
            "voice": self.voice,
            "voice_close": self.voice_close,
            "touch": self.manager.touch,
            "health": self.engine.health,
            "metrics": lambda: families_of(engine.metrics.registry),
            "replied": self.replied,
            "ready_written": self.ready_written,
            "complexity": self.set_complexity,
            "shutdown": self.shutdown,
        })

    def report(self, sample: WorkerReport) -> None:
        """Send the front the worker's state (the engine's reporter calls it), with
        its voice connections'."""
        if self.voices.any:
            sample = dataclasses.replace(sample, voices=self.voices.snapshots())
        self.link.cast("report", sample)

    # -- gates: replies before events ---------------------------------------------------------

    def _gate_id(self, gate: Any) -> int:
        self._gate_ids += 1
        self._gates[self._gate_ids] = gate
        return self._gate_ids

    def replied(self, gate_id: int) -> None:
        """The front wrote the reply of the request that holds gate *gate_id*."""
        gate = self._gates.pop(gate_id, None)
        if gate is not None:
            self.manager.replied(gate)
        # Gates the front never confirms open by themselves after 2 s; forget them.
        if len(self._gates) > 10_000:
            now = time.monotonic()
            for key in [k for k, g in self._gates.items() if g.deadline < now]:
                del self._gates[key]

    def ready_written(self, session_ids: Sequence[str], at: float) -> None:
        """The front wrote these sessions' ``ready`` at *at*."""
        self.manager.ready_written(session_ids, at)

    def set_complexity(self, level: int) -> None:
        """Encode transcoding sessions with libopus complexity *level* from now on."""
        self.engine.complexity.level = level

    # -- sessions -------------------------------------------------------------------------------

    def play(self, session_id: str, request: PlayRequest, play_id: int,
             resume: Resume | None = None) -> int:
        """Start (or replace) a session; returns the id of the gate holding its events.
        A ``voice`` play's frames go to its guild's voice connection (``voice``)."""
        if request.output is OutputFormat.VOICE:
            voice = self.voices.sink(session_id)
        else:
            voice = None
            self.voices.disown(session_id)
        try:
            session = self.manager.play(session_id, request, play_id=play_id, resume=resume,
                                        voice=voice)
        except TooManySessions as exc:
            raise CallFailed(Failure("too_many", str(exc))) from exc
        return self._gate_id(session.gate)

    def stop(self, session_id: str) -> int:
        gate = self.manager.reply_gate()
        self.manager.stop(session_id, gate=gate)
        return self._gate_id(gate)

    def pause(self, session_id: str) -> bool:
        return self.manager.pause(session_id) is not None

    def resume(self, session_id: str) -> bool:
        return self.manager.resume(session_id) is not None

    def status(self, session_id: str) -> dict[str, Any] | None:
        """The Go engine's ``/status`` fields (None: unknown id)."""
        session = self.manager.get(session_id)
        if session is None:
            return None
        self.manager.touch(session_id)
        return {"state": session.state.value, "bytes_sent": session.bytes_sent,
                "url": session.request.url}

    def view(self, session_id: str) -> dict[str, Any] | None:
        session = self.manager.get(session_id)
        return {**session_view(session), "worker": self.index} if session is not None else None

    def views(self) -> list[dict[str, Any]]:
        return [{**session_view(s), "worker": self.index} for s in self.manager.sessions]

    def volume(self, session_id: str, volume: float) -> float:
        session = self.manager.set_volume(session_id, volume)
        if session is None:
            raise _not_found()
        return session.volume

    def seek(self, session_id: str, position: float) -> str:
        try:
            session = self.manager.seek(session_id, position)
        except NotPlayable as exc:
            raise CallFailed(Failure("not_playable", str(exc))) from exc
        if session is None:
            raise _not_found()
        return session.status.value

    def filters(self, session_id: str) -> dict[str, Any]:
        session = self.manager.get(session_id)
        if session is None:
            raise _not_found()
        return {"filters": filters_view(session),
                "active": list(self.engine.active_filters(session)),
                "passthrough": session.passthrough}

    def set_filters(self, session_id: str, filters: Filters, loudness_default: bool
                    ) -> dict[str, Any]:
        session = self.manager.set_filters(session_id, filters,
                                           loudness_default=loudness_default)
        if session is None:
            raise _not_found()
        return filters_view(session)

    def crossfade(self, session_id: str, seconds: float) -> float:
        session = self.manager.set_crossfade(session_id, seconds)
        if session is None:
            raise _not_found()
        return session.crossfade

    def set_next(self, session_id: str, request: PlayRequest, filters: Filters | None,
                 loudness_default: bool, play_id: int, now: bool = False) -> int:
        """Set the next track (or a "play now" one); returns the id of the gate
        holding its events (0: none)."""
        session = self.manager.get(session_id)
        if session is None:
            raise _not_found()
        if request.output is not session.request.output:
            raise CallFailed(Failure(
                "bad_format", "format must be the session's "
                f"({session.request.output.value}): the next track continues its stream"))
        try:
            nxt = self.manager.set_next(session_id, request, filters=filters,
                                        loudness_default=loudness_default, play_id=play_id,
                                        now=now)
        except NotPlayable as exc:
            raise CallFailed(Failure("not_playable", str(exc))) from exc
        if nxt is None:
            raise _not_found()
        return self._gate_id(nxt.gate) if nxt.gate is not None else 0

    def cancel_next(self, session_id: str) -> int | None:
        session = self.manager.get(session_id)
        if session is None:
            raise _not_found()
        cancelled = session.next.play_id if session.next is not None else None
        self.manager.cancel_next(session_id)
        return cancelled

    def end_at(self, session_id: str, end_at: float | None) -> None:
        """The track position at which the current play ends (None: at its end)."""
        if self.manager.set_end(session_id, end_at) is None:
            raise _not_found()

    async def voice(self, session_id: str, server: VoiceServer) -> dict[str, Any]:
        """Connect (or move) *session_id*'s voice connection; see
        ``VoicePlayers.attach``."""
        return await self.voices.attach(session_id, server, within=VOICE_CONNECT_WAIT)

    async def voice_close(self, session_id: str) -> None:
        """Close *session_id*'s voice connection (its player was destroyed)."""
        await self.voices.close(session_id)

    async def shutdown(self) -> None:
        """End every session (``finished`` events go to the front first), close the
        voice connections, stop."""
        await self.engine.stop()
        await self.voices.close_all()
