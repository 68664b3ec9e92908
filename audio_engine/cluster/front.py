"""The engine's front: one endpoint (the HTTP API, the Unix and TCP sockets) over
worker processes that each own a share of the sessions.

One Python process is bound by its GIL to about one core of Python work, so the
engine runs its sessions in ``ENGINE_WORKERS`` processes (default: the cores it may
use), each with its own clock, pools and egress proxy (``audio_engine.engine``). The
front:

- **places** a new session on the worker with the least load and keeps it there for
  the session's life (a replacing play stays on the same worker, so a replaced
  stream's ``finished`` still precedes the new ``ready``; ``directory``);
- **admits** a play by its projected cost before anything starts (its
  ``LoadGovernor``, ``governor``): 503 with ``Retry-After`` and, after the reply, an
  ``error`` event for the session (the Node front ignores HTTP statuses), or 429 at
  the session limit; under load the governor first steps the libopus complexity down;
- **writes** every worker's batches to every socket consumer (``ConsumerHub``), tells
  the workers when a Go-style consumer is connected, and when it wrote a ``ready``
  (the first audio is timed from that write);
- **answers** the catalogue calls itself (its own yt-dlp pool, which the workers'
  play resolutions use too);
- **recovers** a dead worker's sessions: they are played again on a live worker from
  the position their listeners reached, continuing the same Ogg stream (serial,
  granules, page numbers) without a new ``ready``; the worker is restarted (its
  ``failover``, ``failover``). The other sessions never notice;
- **keeps** the Lavalink players' voice connections on the worker that plays their
  guild (its ``voices``, ``claims``): a guild's session id is claimed by its Lavalink
  player, whose plays are ``voice`` sessions on that worker; their events come back as
  notices for the Lavalink face, and on a worker's death the connection is made again
  on the worker the session moves to.

Its ``calls`` forward the API operations on a placed session (pause, seek, filters...)
to the worker that holds it (``calls``); its ``overview`` answers ``/health``,
``/stats``, ``/metrics`` and the session list from every live worker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from audio_engine.audio.formats import OutputFormat
from audio_engine.cluster.calls import CALL_TIMEOUT, SessionCalls
from audio_engine.cluster.channel import Batch, Failure
from audio_engine.cluster.claims import VoiceClaims
from audio_engine.cluster.directory import SessionDirectory, SessionRecord
from audio_engine.cluster.errors import (
    SessionConflict,
    SessionNotFound,
    WorkerUnavailable,
    conflict_message,
)
from audio_engine.cluster.failover import Failover
from audio_engine.cluster.governor import LoadGovernor
from audio_engine.cluster.overview import Overview
from audio_engine.cluster.peer import CallFailed, CallTimedOut, PeerGone
from audio_engine.cluster.pool import WorkerPool, silent_for, ticking, usable_cores
from audio_engine.cluster.reports import VERSION, WorkerReport
from audio_engine.cluster.workers import WorkerProcess
from audio_engine.metrics import EngineMetrics
from audio_engine.sessions.admission import LOAD_INTERVAL
from audio_engine.sessions.session import PlayRequest
from audio_engine.settings import EngineSettings
from audio_engine.sources.egress import EgressProxy
from audio_engine.sources.resolve_pool import JobFailed, JobTimedOut, ResolvePool, WorkerLimits
from audio_engine.sources.resolver import Resolver
from audio_engine.sources.url_policy import UrlPolicy
from audio_engine.wire.consumers import ConsumerHub
from lifecycle import Process, declare
from protocol import Event, EventType, encode_event_line
from protocol.filters import Filters, Loudness

__all__ = [
    "Front",
    "PlayRefused",
    "PlayStarted",
    "Reply",
    "SessionConflict",
    "SessionNotFound",
    "WorkerUnavailable",
]

log = logging.getLogger(__name__)

#: Seconds a worker has to start (first report with a ticking clock).
_START_TIMEOUT: Final = 30.0
SAMPLER = declare(
    "engine-load", owner="`Front.run`'s task group", process=Process.ENGINE,
    what="summing the engine's load every 0.5 s, learning the cost per unit, stepping "
         "the libopus complexity",
    ends="`Front.stop`")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the API does once its reply is written: release the worker's gate, or
    send an event line of the front's own."""

    worker: WorkerProcess | None = None
    gate: int = 0
    line: bytes = b""


@dataclass(frozen=True, slots=True)
class PlayStarted:
    play_id: int
    reply: Reply


@dataclass(frozen=True, slots=True)
class PlayRefused:
    """A play that was not taken: *status* 503 (load, with *retry_after*) or 429
    (count); *reply* carries the ``error`` event (for *play_id*) sent after the
    reply."""

    play_id: int
    status: int
    message: str
    retry_after: int
    reply: Reply


class Front:
    """See the module docstring.

    Args:
        settings: the engine's settings.
        worker_command: the command line of one worker process (the composition
            root's ``python -m ...``).
        workers: how many worker processes; 0: the cores the process may run on.
        cost_prior: cores one unit (a plain transcoding session) costs before
            anything was measured; None: from the bare pipeline the first worker
            times at start-up (``audio.calibrate``).
        worker_env: the workers' environment (default: the front's).
    """

    version = VERSION

    def __init__(self, settings: EngineSettings, *, worker_command: Sequence[str],
                 workers: int = 0, cost_prior: float | None = None,
                 worker_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.metrics = EngineMetrics()
        self.metrics.sessions_gauge.set(settings.max_sessions)
        self.timing = settings.timing
        self.hub = ConsumerHub(self.metrics, queue_limit=settings.consumer_queue_bytes,
                               stall_seconds=settings.consumer_stall_seconds,
                               on_change=self._consumers_changed)
        policy = UrlPolicy(settings.media_dir, settings.allow_private_networks,
                           settings.endpoints)
        self.egress = EgressProxy(
            policy, on_refusal=lambda reason: self.metrics.egress_refusals.labels(reason).inc())
        self.resolve_pool = ResolvePool(
            WorkerLimits(slots=settings.max_resolutions,
                         per_caller=settings.per_caller_resolutions,
                         deadline=settings.resolve_timeout,
                         queue_wait=settings.resolve_timeout,
                         memory_mb=settings.resolve_memory_mb),
            on_outcome=lambda outcome: self.metrics.resolve_jobs.labels(outcome).inc())
        #: Catalogue calls (the workers resolve their plays themselves, in this pool).
        self.resolver = Resolver(self.resolve_pool, self.egress, policy=policy,
                                 job_bytes=settings.resolve_max_bytes,
                                 probe_timeout=settings.open_timeout,
                                 index_bytes=settings.index_memory)
        default_loudness = (Loudness(target=settings.loudness_target)
                            if settings.loudness_target is not None else None)
        self.sessions: SessionDirectory[WorkerProcess] = SessionDirectory(default_loudness)
        count = workers or usable_cores()
        self.pool = WorkerPool(count, worker_command, self, self._configure, env=worker_env)
        #: Admission, cost per unit, measured load and the libopus complexity.
        self.governor = LoadGovernor(settings, self.sessions, self.pool, self.metrics,
                                     cost_prior=cost_prior)
        #: The API operations on a placed session, forwarded to its worker.
        self.calls = SessionCalls(self.sessions)
        #: Guild ids claimed by Lavalink players, and their voice connections.
        self.voices = VoiceClaims(self.sessions, self.pool, self._place)
        self._stopping = asyncio.Event()
        #: Restarting a dead or stuck worker and moving its sessions.
        self.failover = Failover(self.sessions, self.pool, self.voices, self.metrics,
                                 self._place, self._stopping)
        self._plays = itertools.count(1)
        self._go_style = True
        #: ``/health``, ``/stats``, ``/metrics`` and the sessions' views, from every worker.
        self.overview = Overview(settings, self.metrics, self.hub, self.pool,
                                 self.resolve_pool, self.governor, self.timing,
                                 within=CALL_TIMEOUT)
        self._run_done = asyncio.Event()
        self._running = False
        self._stopped = False
        self.metrics.watch(self.overview.snapshot)

    def _configure(self, index: int, generation: int) -> tuple[Any, ...]:
        """A worker's ``configure`` arguments (``audiogate.engine_worker``)."""
        codec_threads = max(1, round(usable_cores() / len(self.pool)))
        # The first worker times the bare codec pipeline for the cost model's prior.
        calibrate = index == 0 and generation == 1 and self.governor.wants_calibration
        return (self.settings, index, self.governor.complexity, self._go_style,
                codec_threads, calibrate)

    @property
    def worker_count(self) -> int:
        """Worker processes the engine runs (alive or being restarted)."""
        return len(self.pool)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, listener: socket.socket, path: Path, *,
                    tcp: socket.socket | None = None, tls: ssl.SSLContext | None = None
                    ) -> None:
        """Start the workers (waiting until every one ticks), the egress proxy, and
        accept socket consumers on *listener* (and *tcp*).

        Raises:
            RuntimeError: a worker did not start (its log says why).
        """
        await self.egress.start()
        await self.pool.start(_START_TIMEOUT)
        await self.hub.start(listener, path)
        if tcp is not None:
            token = self.settings.consumer_token
            if token is None:
                raise ValueError("a TCP socket needs ENGINE_NODE_TOKEN or ENGINE_API_TOKEN")
            await self.hub.start_tcp(tcp, token=token,
                                     hello_timeout=self.settings.hello_timeout, tls=tls)

    async def run(self) -> None:
        """Sample the load and settle the complexity until ``stop``. Cancelling is
        safe."""
        self._running = True
        try:
            async with asyncio.TaskGroup() as tasks:
                sampler = tasks.create_task(self._sample(), name=SAMPLER.name)
                await self._stopping.wait()
                sampler.cancel()
        finally:
            self._run_done.set()

    def readiness(self) -> list[str]:
        """Why the engine cannot take work now (empty: ready)."""
        reasons = []
        if self._stopping.is_set():
            reasons.append("shutting down")
        if not self.hub.listening:
            reasons.append("the audio socket is not listening")
        workers = self.pool.live()
        if not workers:
            reasons.append("no engine worker is running")
        elif not any(ticking(w) for w in workers):
            silent = min(silent_for(w) for w in workers)
            reasons.append("the clock has not started" if silent == math.inf
                           else f"the clock has not ticked for {silent:.1f} s")
        return reasons

    async def stop(self) -> None:
        """Kill the resolution workers, end every session (the workers' ``finished``
        events go out), stop the workers, close the consumers. Idempotent;
        cancelling leaves the rest to ``close_now``."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        await self.resolve_pool.close()
        await self.pool.stop(self.settings.shutdown_timeout)
        if self._running:
            await self._run_done.wait()
        await self.close_now()

    async def close_now(self) -> None:
        """What ``stop`` did not get to: kill the resolution workers and the engine
        workers, close the egress proxy, flush and close the consumers (the socket
        file is removed). Idempotent."""
        self._stopping.set()
        await self.resolve_pool.close()
        self.pool.stopping = True
        await self.failover.close()
        await self.egress.close()
        await self.hub.close()
        await self.pool.close()


    # -- what the workers send (workers.FrontSide) ------------------------------------------

    def worker_batch(self, worker: WorkerProcess, batch: Batch) -> None:
        hub = self.hub
        for session_id, packet in batch.headers:
            hub.remember_headers(session_id, packet)
        hub.broadcast(batch.data, batch.events, batch.audio_packets)
        if batch.announced:
            worker.cast("ready_written", batch.announced, time.monotonic())

    def worker_events(self, worker: WorkerProcess, lines: bytes) -> None:
        self.hub.send_event(lines)

    def worker_voice_event(self, worker: WorkerProcess, fields: dict[str, Any]) -> None:
        self.voices.worker_event(worker, fields)

    def worker_voice_closed(self, worker: WorkerProcess, session_id: str, code: int,
                            reason: str, by_remote: bool) -> None:
        self.voices.worker_closed(worker, session_id, code, reason, by_remote)

    def worker_forgot(self, worker: WorkerProcess, session_id: str) -> None:
        record = self.sessions.get(session_id)
        if record is None or record.worker is worker:
            self.hub.forget(session_id)

    def worker_report(self, worker: WorkerProcess, report: WorkerReport) -> None:
        self.pool.noticed(worker)
        if report.bare_micros is not None:
            self.governor.calibrate(report.bare_micros)
        self.sessions.apply(worker, report)

    async def run_job(self, job: dict[str, Any], caller: str) -> dict[str, Any]:
        """A worker's resolution job, on the front's pool."""
        try:
            return await self.resolve_pool.run(job, caller=caller)
        except JobTimedOut as exc:
            raise CallFailed(Failure("timeout", str(exc))) from exc
        except JobFailed as exc:
            raise CallFailed(Failure("failed", str(exc))) from exc

    def worker_lost(self, worker: WorkerProcess) -> None:
        self.failover.worker_lost(worker)

    # -- load --------------------------------------------------------------------------------

    def _place(self, workers: list[WorkerProcess]) -> WorkerProcess:
        return self.sessions.place(workers, self.governor.complexity, ticking,
                                   lambda w: w.index)

    async def _sample(self) -> None:
        """Every ``LOAD_INTERVAL``: kill a hung worker, then hand the governor the
        workers' load."""
        while True:
            await asyncio.sleep(LOAD_INTERVAL)
            self.failover.kill_hung()
            self.governor.sample(self.pool.sample())

    def _consumers_changed(self) -> None:
        go_style = self.hub.go_style_connected
        if go_style != self._go_style:
            self._go_style = go_style
            self.pool.cast("consumers", go_style)

    # -- sessions ----------------------------------------------------------------------------

    async def replied(self, reply: Reply) -> None:
        """The reply of a request was written: its events may follow. (A coroutine:
        Starlette runs a plain function given as a background task in a thread.)"""
        if reply.worker is not None:
            reply.worker.cast("replied", reply.gate)
        if reply.line:
            delay = self.timing.event_delay(self.hub.go_style_connected)
            asyncio.get_running_loop().call_later(delay, self.hub.send_event, reply.line)

    async def play(self, session_id: str, request: PlayRequest) -> PlayStarted | PlayRefused:
        """Start (or replace) *session_id*'s stream, or refuse it.

        A ``voice`` play (a Lavalink player's) goes to the worker that holds its
        guild's voice connection.

        Raises:
            WorkerUnavailable: no worker can take it now.
            SessionConflict: a Go play on a Lavalink player's id, or the reverse.
        """
        voice = self.voices.get(session_id)
        if (voice is not None) != (request.output is OutputFormat.VOICE):
            raise SessionConflict(conflict_message(session_id, lavalink=voice is not None))
        old = self.sessions.get(session_id)
        replacing = old is not None and old.live and not old.moving and old.worker.alive
        play_id = next(self._plays)
        projected = self.sessions.projected(request)
        if not replacing and self.sessions.live_count() >= self.settings.max_sessions:
            self.metrics.plays_refused.labels("count").inc()
            return self._refused(session_id, play_id, 429, 0,
                                 f"too many sessions: the limit of {self.settings.max_sessions} "
                                 "is reached", voice=voice is not None)
        if not replacing:
            decision = self.governor.admit(projected)
            if not decision.accept:
                self.metrics.plays_refused.labels("load").inc()
                return self._refused(session_id, play_id, 503, decision.retry_after,
                                     decision.message, voice=voice is not None)
        if voice is not None and voice.worker is not None:
            if not voice.worker.alive:
                raise WorkerUnavailable("the engine is moving this player to another worker; "
                                        "try again shortly")
            worker = voice.worker
        elif replacing:
            assert old is not None
            worker = old.worker
        else:
            workers = self.pool.live(started=True)
            if not workers:
                raise WorkerUnavailable("the engine is starting its workers; try again shortly")
            worker = self._place(workers)
        if voice is not None:
            voice.worker = worker
        record = SessionRecord.of(worker, request, play_id, projected)
        record.position_hint = (request.start_at, time.monotonic())
        self.sessions.put(session_id, record)
        try:
            gate = await worker.call("play", session_id, request, play_id,
                                     within=CALL_TIMEOUT)
        except CallFailed as exc:
            self.sessions.pop(session_id)
            if exc.kind == "too_many":
                self.metrics.plays_refused.labels("count").inc()
                return self._refused(session_id, play_id, 429, 0, str(exc),
                                     voice=voice is not None)
            raise
        except (PeerGone, CallTimedOut) as exc:
            if self.sessions.get(session_id) is record and not record.moving:
                self.sessions.pop(session_id)
            raise WorkerUnavailable("the engine worker did not take the play; try again "
                                    "shortly") from exc
        record.confirmed = True
        self.metrics.plays.labels(request.output.value).inc()
        return PlayStarted(play_id, Reply(worker, gate))

    def _refused(self, session_id: str, play_id: int, status: int, retry_after: int,
                 message: str, *, voice: bool = False) -> PlayRefused:
        """A refusal; its ``error`` event goes to the socket consumers after the reply,
        unless it is a voice play's (the Lavalink face reports it its own way)."""
        line = b"" if voice else encode_event_line(
            Event(EventType.ERROR, session_id, message, {"play": play_id, "reason": "refused"}))
        return PlayRefused(play_id, status, message, retry_after, Reply(line=line))

    async def stop_session(self, session_id: str) -> Reply:
        """Stop and forget *session_id* (unknown ids are fine)."""
        record = self.sessions.pop(session_id)
        if record is None or record.moving or not record.worker.alive:
            return Reply()
        try:
            gate = await record.worker.call("stop", session_id, within=CALL_TIMEOUT)
        except (PeerGone, CallTimedOut, CallFailed):
            return Reply()  # the worker died: the session is gone with it
        return Reply(record.worker, gate)

    async def set_next(self, session_id: str, request: PlayRequest, filters: Filters | None,
                       loudness_default: bool, *, now: bool = False) -> PlayStarted:
        """Set *session_id*'s next track, or with *now* the track that replaces the
        current one once it has audio; its play id, and what to do after the reply."""
        record = self.calls.record(session_id)
        play_id = next(self._plays)
        gate = int(await self.calls.call(record, "set_next", session_id, request, filters,
                                         loudness_default, play_id, now))
        return PlayStarted(play_id, Reply(worker=record.worker if gate else None, gate=gate))

    async def release_voice(self, session_id: str) -> Reply:
        """The Lavalink player of *session_id* is gone: stop its session, close its
        voice connection, give the id up (``VoiceClaims``). Unknown ids are fine."""
        voice = self.voices.get(session_id)
        if voice is None:
            return Reply()
        reply = await self.stop_session(session_id)
        await self.voices.release(session_id, voice)
        return reply
