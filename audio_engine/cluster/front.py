"""The engine's front: one endpoint (the HTTP API, the Unix and TCP sockets) over
worker processes that each own a share of the sessions.

One Python process is bound by its GIL to about one core of Python work, so the
engine runs its sessions in ``ENGINE_WORKERS`` processes (default: the cores it may
use), each with its own clock, pools and egress proxy (``audio_engine.engine``). The
front:

- **places** a new session on the worker with the least load and keeps it there for
  the session's life (a replacing play stays on the same worker, so a replaced
  stream's ``finished`` still precedes the new ``ready``);
- **admits** a play by its projected cost before anything starts
  (``audio_engine.cluster.cost``): 503 with ``Retry-After`` and, after the reply, an
  ``error`` event for the session (the Node front ignores HTTP statuses), or 429 at
  the session limit; under load it first steps the libopus complexity down;
- **writes** every worker's batches to every socket consumer (``ConsumerHub``), tells
  the workers when a Go-style consumer is connected, and when it wrote a ``ready``
  (the first audio is timed from that write);
- **answers** the catalogue calls itself (its own yt-dlp pool, which the workers'
  play resolutions use too);
- **recovers** a dead worker's sessions: they are played again on a live worker from
  the position their listeners reached, continuing the same Ogg stream (serial,
  granules, page numbers) without a new ``ready``; the worker is restarted. The other
  sessions never notice;
- **keeps** the Lavalink players' voice connections on the worker that plays their
  guild (``connect_voice``): a guild's session id is claimed by its Lavalink player
  (``claim_voice``), whose plays are ``voice`` sessions on that worker; their events
  come back as notices for the Lavalink face (``voice_listener``), and on a worker's
  death the connection is made again on the worker the session moves to.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Final, NamedTuple, Protocol

import psutil

from audio_engine.audio.formats import OutputFormat
from audio_engine.cluster.channel import Batch, Failure
from audio_engine.cluster.cost import Admission, CostModel, Load, play_units
from audio_engine.cluster.peer import CallFailed, CallTimedOut, PeerGone
from audio_engine.cluster.reports import (
    CLOCK_STALL_SECONDS,
    FEATURES,
    VERSION,
    VoiceServer,
    WorkerReport,
    open_fds,
    rss_megabytes,
)
from audio_engine.cluster.workers import WorkerProcess
from audio_engine.metrics import EngineMetrics, merged_exposition
from audio_engine.sessions.admission import (
    DEGRADED_MIN_LOAD,
    LOAD_INTERVAL,
    Headroom,
    LoadModel,
    LoadSample,
)
from audio_engine.sessions.session import PlayRequest, Resume, effective_filters
from audio_engine.settings import EngineSettings
from audio_engine.sources.egress import EgressProxy
from audio_engine.sources.resolve_pool import JobFailed, JobTimedOut, ResolvePool, WorkerLimits
from audio_engine.sources.resolver import MEDIA_EXTENSIONS, Resolver
from audio_engine.sources.url_policy import UrlPolicy
from audio_engine.wire.consumers import ConsumerHub
from audio_engine.wire.ordering import TimingPolicy
from protocol import FRAME_DURATION, SAMPLES_PER_FRAME, Event, EventType, encode_event_line
from protocol.filters import Filters, Loudness

__all__ = [
    "Front",
    "PlayRefused",
    "PlayStarted",
    "PlayerState",
    "Reply",
    "SessionConflict",
    "SessionNotFound",
    "VoiceListener",
    "WorkerUnavailable",
]

log = logging.getLogger(__name__)

#: Seconds before a dead worker is started again; doubles per death in a row, up to
#: ``_RESTART_MAX`` (a worker that dies at start-up must not spin).
_RESTART_DELAY: Final = 0.5
_RESTART_MAX: Final = 10.0
#: A worker that ran this long before dying restarts after the first delay again.
_STABLE_AFTER: Final = 60.0
#: Seconds a worker has to start (first report with a ticking clock).
_START_TIMEOUT: Final = 30.0
#: Seconds a moved session waits for a live worker before it is given up.
_MOVE_WAIT: Final = 15.0
#: Seconds the front waits for a worker's answer to an API call.
_CALL_TIMEOUT: Final = 5.0
#: File extensions whose media is usually 48 kHz Opus: charged as passthrough until
#: the worker says what they are (within half a second). A page URL (no media
#: extension, resolved by yt-dlp) is too: the best audio of the sites people play
#: from is Opus in WebM.
_OPUS_SUFFIXES: Final = frozenset({".opus", ".webm", ".weba", ".ogg", ".oga", ".mka"})
#: Seconds the front waits for a worker to connect a voice connection (the worker
#: waits 10 s for the handshake, ``worker.VOICE_CONNECT_WAIT``).
_VOICE_CALL_TIMEOUT: Final = 12.0
#: Longest a player's position is carried forward from the last report (reports come
#: every 0.5 s; a worker that stopped reporting is not playing on).
_EXTRAPOLATE_MAX: Final = 2.0


class SessionNotFound(Exception):
    """No session has this id."""


class WorkerUnavailable(Exception):
    """The worker holding the session is restarting (its sessions are being moved)."""


class SessionConflict(Exception):
    """A guild is either a Lavalink player or a Go session, never both: the id is
    taken by the other kind (``str()`` says which)."""


class VoiceListener(Protocol):
    """What receives the events of voice sessions (the Lavalink face)."""

    def voice_event(self, session_id: str, fields: dict[str, Any]) -> None:
        """An event line of a voice session, as a dict (``type``, ``play``,
        ``reason``, ``message``...)."""

    def voice_closed(self, session_id: str, code: int, reason: str, by_remote: bool) -> None:
        """The session's voice connection closed for good (Discord's close code)."""


class PlayerState(NamedTuple):
    """A voice session's state for Lavalink's ``playerUpdate``: the track position
    (seconds, None when nothing plays), and its voice connection."""

    position: float | None
    connected: bool
    ping_ms: int


@dataclass(slots=True)
class _Voice:
    """A guild claimed by a Lavalink player: the worker that holds its voice
    connection (None until placed) and the credentials it connects with."""

    worker: WorkerProcess | None = None
    server: VoiceServer | None = None
    #: What the worker said of its connection outside its reports (the answer to
    #: ``voice``, a ``voice_closed`` notice), and when: newer than its latest report,
    #: it is the connection's state (reports come every 0.5 s).
    connected: bool = False
    said_at: float = -math.inf


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


@dataclass(slots=True)
class _Record:
    """The front's knowledge of one session (live or ended, until it is removed)."""

    worker: WorkerProcess
    request: PlayRequest
    play_id: int
    #: Projected units until the worker reports what it is, then the reported ones.
    load: Load
    live: bool = True
    #: From the worker's latest report (None before the first that has it).
    snapshot: Any = None
    snapshot_at: float = 0.0
    #: The worker answered the play: its reports from now on know the session (a
    #: report sampled before the play arrives on the channel before the answer).
    confirmed: bool = False
    #: Set while the session is being moved from a dead worker.
    moving: bool = False
    paused: bool = False
    volume: float = 1.0
    filters: Filters = field(default_factory=Filters)
    loudness_default: bool = True
    crossfade: float = 0.0
    #: A position set by a play or a seek, and when (newer than the snapshot until
    #: the next report).
    position_hint: tuple[float, float] | None = None


@dataclass(slots=True)
class _Slot:
    """One worker number: its current process, and how often it died in a row."""

    index: int
    worker: WorkerProcess | None = None
    generation: int = 0
    deaths_in_a_row: int = 0
    started_at: float = 0.0
    #: CPU seconds of this slot's earlier processes (its counters restart with each).
    cpu_before: float = 0.0
    nulled_before: int = 0
    slipped_before: int = 0
    ticks_before: int = 0


class Front:
    """See the module docstring.

    Args:
        settings: the engine's settings.
        worker_command: the command line of one worker process (the composition
            root's ``python -m ...``).
        workers: how many worker processes; 0: the cores the process may run on.
        cost_prior: cores one unit (a plain transcoding session) costs before
            anything was measured; None: timed now (``audio.calibrate``).
    """

    version = VERSION

    def __init__(self, settings: EngineSettings, *, worker_command: Sequence[str],
                 workers: int = 0, cost_prior: float | None = None,
                 worker_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.metrics = EngineMetrics()
        self.metrics.sessions_gauge.set(settings.max_sessions)
        self.timing = TimingPolicy(event_margin=settings.event_margin_ms / 1000,
                                   first_audio_margin=settings.first_audio_margin_ms / 1000)
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
        self.default_loudness = (Loudness(target=settings.loudness_target)
                                 if settings.loudness_target is not None else None)
        self._command = list(worker_command)
        self._worker_env = worker_env
        count = workers or _usable_cores()
        self._slots = [_Slot(i) for i in range(count)]
        self.budget = settings.cpu_budget or float(_usable_cores())
        self.admission = Admission(budget=self.budget, max_load=settings.max_load,
                                   top=settings.opus_complexity)
        self._cost_prior = cost_prior
        #: Until the first worker has timed the bare pipeline: 0.02 cores (a session
        #: of about 350 µs per frame, this development machine's).
        self.cost = CostModel(cost_prior or 0.02)
        self._calibrated = cost_prior is not None
        self.load = LoadModel(budget=self.budget)
        self._records: dict[str, _Record] = {}
        #: Session ids claimed by Lavalink players.
        self._voices: dict[str, _Voice] = {}
        #: Where the events of voice sessions go (the Lavalink face, when enabled).
        self.voice_listener: VoiceListener | None = None
        self._plays = itertools.count(1)
        self._go_style = True
        #: Set whenever a worker starts ticking (sessions waiting to move wake up).
        self._workers_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._process = psutil.Process()
        self.started_at = time.monotonic()
        self._stopping = asyncio.Event()
        self._run_done = asyncio.Event()
        self._running = False
        self._stopped = False
        self.metrics.watch(self._snapshot)
        self.metrics.opus_complexity.set(self.admission.complexity)

    @property
    def worker_count(self) -> int:
        """Worker processes the engine runs (alive or being restarted)."""
        return len(self._slots)

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
        await asyncio.gather(*(self._spawn(slot) for slot in self._slots))
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                for slot in self._slots:
                    assert slot.worker is not None
                    await _started(slot.worker)
        except TimeoutError as exc:
            raise RuntimeError("an engine worker did not start in time") from exc
        await self.hub.start(listener, path)
        if tcp is not None:
            token = self.settings.consumer_token
            if token is None:
                raise ValueError("a TCP socket needs ENGINE_NODE_TOKEN or ENGINE_API_TOKEN")
            await self.hub.start_tcp(tcp, token=token,
                                     hello_timeout=self.settings.hello_timeout, tls=tls)

    async def _spawn(self, slot: _Slot) -> None:
        worker = WorkerProcess(slot.index, slot.generation, self)
        slot.generation += 1
        slot.worker = worker
        slot.started_at = time.monotonic()
        codec_threads = max(1, round(_usable_cores() / len(self._slots)))
        # The first worker times the bare codec pipeline for the cost model's prior.
        calibrate = slot.index == 0 and slot.generation == 1 and self._cost_prior is None
        await worker.spawn(self._command, (self.settings, slot.index, self.admission.complexity,
                                           self._go_style, codec_threads, calibrate),
                           env=self._worker_env)
        log.info("engine worker %d started (pid %s)", slot.index, worker.pid)

    async def run(self) -> None:
        """Sample the load, settle the complexity and restart dead workers until
        ``stop``. Cancelling is safe."""
        self._running = True
        try:
            async with asyncio.TaskGroup() as tasks:
                sampler = tasks.create_task(self._sample(), name="engine-load")
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
        workers = self._live_workers()
        if not workers:
            reasons.append("no engine worker is running")
        elif not any(_ticking(w) for w in workers):
            silent = min(_silent_for(w) for w in workers)
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
        workers = [s.worker for s in self._slots if s.worker is not None]
        for worker in workers:
            worker.retiring = True
        await asyncio.gather(*(self._stop_worker(w) for w in workers))
        if self._running:
            await self._run_done.wait()
        await self.close_now()

    async def _stop_worker(self, worker: WorkerProcess) -> None:
        try:
            await worker.call("shutdown", within=self.settings.shutdown_timeout)
        except (PeerGone, CallTimedOut, CallFailed) as exc:
            log.warning("engine worker %d did not stop cleanly: %s", worker.index, exc)
        await worker.aclose()
        await worker.wait(within=2.0)

    async def close_now(self) -> None:
        """What ``stop`` did not get to: kill the resolution workers and the engine
        workers, close the egress proxy, flush and close the consumers (the socket
        file is removed). Idempotent."""
        self._stopping.set()
        await self.resolve_pool.close()
        for slot in self._slots:
            if slot.worker is not None:
                slot.worker.retiring = True
                slot.worker.kill()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.egress.close()
        await self.hub.close()
        for slot in self._slots:
            if slot.worker is not None:
                await slot.worker.aclose()
                await slot.worker.wait(within=2.0)

    def _spawn_task(self, coroutine: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    # -- what the workers send ----------------------------------------------------------------

    def worker_batch(self, worker: WorkerProcess, batch: Batch) -> None:
        hub = self.hub
        for session_id, packet in batch.headers:
            hub.remember_headers(session_id, packet)
        hub.broadcast(batch.data, batch.events, batch.audio_packets)
        if batch.announced:
            worker.cast("ready_written", batch.announced, time.monotonic())

    def worker_events(self, worker: WorkerProcess, lines: bytes) -> None:
        self.hub.send_event(lines)

    def worker_forgot(self, worker: WorkerProcess, session_id: str) -> None:
        record = self._records.get(session_id)
        if record is None or record.worker is worker:
            self.hub.forget(session_id)

    def worker_report(self, worker: WorkerProcess, report: WorkerReport) -> None:
        if report.last_tick_at is not None and not self._workers_changed.is_set():
            self._workers_changed.set()
        if report.bare_micros is not None and not self._calibrated:
            self._calibrated = True
            self.cost = CostModel(_prior_from(report.bare_micros))
            log.info("bare codec pipeline: %.0f µs per frame; one transcoding session "
                     "costs about %.3f cores", report.bare_micros, self.cost.prior)
        for session_id, record in list(self._records.items()):
            if record.worker is not worker or record.moving or not record.confirmed:
                continue
            snapshot = report.sessions.get(session_id)
            if snapshot is not None:
                record.snapshot = snapshot
                record.snapshot_at = report.at
                record.play_id = snapshot.play_id  # a gapless join moves it on
                record.paused = snapshot.paused
                record.live = True
                encoding, fixed = play_units(transcoding=not snapshot.passthrough,
                                             filters=snapshot.filters)
                record.load = Load(encoding, fixed)
            elif session_id in report.ended:
                record.live = False
                record.load = Load()
            else:
                del self._records[session_id]  # stopped or reaped

    async def run_job(self, job: dict[str, Any], caller: str) -> dict[str, Any]:
        """A worker's resolution job, on the front's pool."""
        try:
            return await self.resolve_pool.run(job, caller=caller)
        except JobTimedOut as exc:
            raise CallFailed(Failure("timeout", str(exc))) from exc
        except JobFailed as exc:
            raise CallFailed(Failure("failed", str(exc))) from exc

    def worker_lost(self, worker: WorkerProcess) -> None:
        slot = self._slots[worker.index]
        if slot.worker is not worker:
            return
        if worker.report is not None:
            slot.cpu_before += worker.report.cpu_seconds
            slot.nulled_before += worker.report.nulled
            slot.slipped_before += worker.report.slipped
            slot.ticks_before += worker.report.ticks
        worker.report = None
        if worker.retiring or self._stopping.is_set():
            return
        self.metrics.worker_restarts.inc()
        lived = time.monotonic() - slot.started_at
        slot.deaths_in_a_row = 1 if lived > _STABLE_AFTER else slot.deaths_in_a_row + 1
        moved = [sid for sid, r in self._records.items() if r.worker is worker]
        log.error("engine worker %d died (%s); moving its %d sessions", worker.index,
                  worker.lost_reason or "channel closed", len(moved))
        for session_id in moved:
            record = self._records[session_id]
            if record.live:
                record.moving = True
            else:
                del self._records[session_id]
        self._spawn_task(self._restart(slot, worker), f"engine-worker-{worker.index}-restart")
        if any(self._records[sid].moving for sid in moved if sid in self._records) or any(
                v.worker is worker for v in self._voices.values()):
            self._spawn_task(self._move(worker, time.monotonic()),
                             f"engine-worker-{worker.index}-move")

    async def _restart(self, slot: _Slot, dead: WorkerProcess) -> None:
        await dead.wait(within=2.0)
        delay = min(_RESTART_MAX, _RESTART_DELAY * 2 ** (slot.deaths_in_a_row - 1))
        await asyncio.sleep(delay)
        if self._stopping.is_set():
            return
        await self._spawn(slot)

    async def _move(self, dead: WorkerProcess, died_at: float) -> None:
        """Play the dead worker's live sessions again on live workers, from where
        their listeners were, in the same Ogg streams; connect its voice connections
        again where their sessions went."""
        voices = [(sid, v) for sid, v in self._voices.items() if v.worker is dead]
        try:
            async with asyncio.timeout(_MOVE_WAIT):
                while not self._live_workers(started=True):
                    self._workers_changed.clear()
                    await self._workers_changed.wait()
        except TimeoutError:
            log.error("no engine worker to move sessions to; they are lost")
        for session_id, record in list(self._records.items()):
            if record.worker is not dead or not record.moving:
                continue
            workers = self._live_workers(started=True)
            if not workers:
                del self._records[session_id]
                continue
            target = self._place(workers)
            voice = self._voices.get(session_id)
            if voice is not None:
                voice.worker = target  # its connection is made again there (_move_voices)
            request, resume = self._moved_play(record, died_at)
            record.worker = target
            record.moving = False
            record.confirmed = False
            try:
                await target.call("play", session_id, request, record.play_id, resume,
                                  within=_CALL_TIMEOUT)
                record.confirmed = True
                self.metrics.sessions_moved.inc()
                log.info("session %s moved to worker %d at %.2f s", session_id, target.index,
                         request.start_at)
            except (PeerGone, CallTimedOut, CallFailed) as exc:
                log.error("session %s could not be moved: %s", session_id, exc)
                self._records.pop(session_id, None)
        await self._move_voices(dead, voices)

    def _moved_play(self, record: _Record, died_at: float) -> tuple[PlayRequest, Resume | None]:
        """The play that continues *record*'s stream on another worker."""
        request = replace(record.request, volume=record.volume, filters=record.filters,
                          loudness_default=record.loudness_default,
                          crossfade=record.crossfade)
        snapshot = record.snapshot
        if snapshot is None:
            return request, None  # it had not started: play it as asked
        # Frames the listener may have been sent after the report: at most one per
        # tick since, and a couple more. The stream goes on after all of them (a
        # gap of a few frames, never numbers that go back).
        ahead = 0 if snapshot.paused or not snapshot.ready_sent else math.ceil(
            max(0.0, died_at - record.snapshot_at) / FRAME_DURATION) + 2
        position = snapshot.position + ahead * FRAME_DURATION
        resume = Resume(serial=snapshot.serial,
                        granule=snapshot.granule + ahead * SAMPLES_PER_FRAME,
                        sequence=snapshot.sequence + ahead,
                        ready_sent=snapshot.ready_sent, paused=snapshot.paused)
        return replace(request, start_at=position), resume

    # -- load --------------------------------------------------------------------------------

    def _live_workers(self, *, started: bool = False) -> list[WorkerProcess]:
        return [s.worker for s in self._slots if s.worker is not None and s.worker.alive
                and (not started or s.worker.started.is_set())]

    def _carried(self, worker: WorkerProcess | None = None) -> Load:
        total = Load()
        for record in self._records.values():
            if record.live and (worker is None or record.worker is worker):
                total = total + record.load
        return total

    def _place(self, workers: list[WorkerProcess]) -> WorkerProcess:
        """The worker a new session goes to: the least loaded of those whose clock
        ticks (a stalled one only if none does)."""
        level = self.admission.complexity
        ticking = [w for w in workers if _ticking(w)] or workers
        return min(ticking, key=lambda w: (self._carried(w).at(level), w.index))

    def _projected(self, request: PlayRequest) -> Load:
        filters = effective_filters(request.filters, volume=request.volume,
                                    loudness_default=request.loudness_default,
                                    default_loudness=self.default_loudness).active()
        suffix = PurePosixPath(urllib.parse.urlsplit(request.url).path).suffix.lower()
        page = suffix not in MEDIA_EXTENSIONS and not request.url.startswith("/")
        passthrough = request.output.is_opus and not filters and (
            suffix in _OPUS_SUFFIXES or page)
        encoding, fixed = play_units(transcoding=not passthrough, filters=filters)
        return Load(encoding, fixed)

    def _sample_now(self) -> LoadSample:
        cpu = time.process_time()
        ticks = slipped = nulled = playing = 0
        lateness = pool_lag = 0.0
        for slot in self._slots:
            cpu += slot.cpu_before
            ticks += slot.ticks_before
            slipped += slot.slipped_before
            nulled += slot.nulled_before
            report = slot.worker.report if slot.worker is not None else None
            if report is not None:
                cpu += report.cpu_seconds
                ticks += report.ticks
                slipped += report.slipped
                nulled += report.nulled
                playing += report.playing
                lateness = max(lateness, report.lateness)
                pool_lag = max(pool_lag, report.pool_lag)
        return LoadSample(at=time.monotonic(), cpu_seconds=cpu, playing=playing, ticks=ticks,
                          slipped=slipped, nulled=nulled, lateness=lateness,
                          pool_lag=pool_lag)

    async def _sample(self) -> None:
        level_before = self.admission.complexity
        while True:
            await asyncio.sleep(LOAD_INTERVAL)
            self.load.add(self._sample_now())
            room = self.load.headroom()
            carried = self._carried()
            if room.seconds > 0:
                self.cost.observe(room.load * self.budget, carried.at(level_before))
            degraded = self._degraded(room)
            level = self.admission.settle(self.cost, carried, time.monotonic(),
                                          degraded=degraded)
            self._set_complexity(level, level_before)
            level_before = level

    @staticmethod
    def _degraded(room: Headroom) -> bool:
        """The sessions are failing (frames missing, ticks late) while the engine is
        busy: below half its budget, the cause is another process on the host."""
        return room.degraded and room.load >= DEGRADED_MIN_LOAD

    def _set_complexity(self, level: int, before: int) -> None:
        if level == before:
            return
        log.info("libopus complexity %d -> %d (load %.0f%% of %.1f cores)", before, level,
                 100 * self.cost.cores(self._carried().at(level)) / self.budget, self.budget)
        self.metrics.opus_complexity.set(level)
        self.metrics.complexity_steps.labels("down" if level < before else "up").inc()
        for worker in self._live_workers():
            worker.cast("complexity", level)

    def _consumers_changed(self) -> None:
        go_style = self.hub.go_style_connected
        if go_style != self._go_style:
            self._go_style = go_style
            for worker in self._live_workers():
                worker.cast("consumers", go_style)

    # -- sessions ----------------------------------------------------------------------------

    def _record(self, session_id: str) -> _Record:
        record = self._records.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        if record.moving or not record.worker.alive:
            raise WorkerUnavailable(
                "the engine is moving this session to another worker; try again shortly")
        return record

    async def _call(self, record: _Record, method: str, *args: Any) -> Any:
        try:
            return await record.worker.call(method, *args, within=_CALL_TIMEOUT)
        except CallFailed as exc:
            if exc.kind == "not_found":
                raise SessionNotFound(str(exc)) from exc
            raise
        except (PeerGone, CallTimedOut) as exc:
            raise WorkerUnavailable("the engine worker of this session is not answering; "
                                    "try again shortly") from exc

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
        voice = self._voices.get(session_id)
        if (voice is not None) != (request.output is OutputFormat.VOICE):
            raise SessionConflict(_conflict_message(session_id, lavalink=voice is not None))
        old = self._records.get(session_id)
        replacing = old is not None and old.live and not old.moving and old.worker.alive
        play_id = next(self._plays)
        projected = self._projected(request)
        live = sum(1 for r in self._records.values() if r.live)
        if not replacing and live >= self.settings.max_sessions:
            self.metrics.plays_refused.labels("count").inc()
            return self._refused(session_id, play_id, 429, 0,
                                 f"too many sessions: the limit of {self.settings.max_sessions} "
                                 "is reached", voice=voice is not None)
        if not replacing:
            room = self.load.headroom()
            before = self.admission.complexity
            decision = self.admission.decide(self.cost, self._carried(), projected,
                                             degraded=self._degraded(room))
            self._set_complexity(decision.complexity, before)
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
            workers = self._live_workers(started=True)
            if not workers:
                raise WorkerUnavailable("the engine is starting its workers; try again shortly")
            worker = self._place(workers)
        if voice is not None:
            voice.worker = worker
        record = _Record(worker, request, play_id, projected,
                         volume=request.volume, filters=request.filters,
                         loudness_default=request.loudness_default,
                         crossfade=request.crossfade,
                         position_hint=(request.start_at, time.monotonic()))
        self._records[session_id] = record
        try:
            gate = await worker.call("play", session_id, request, play_id,
                                     within=_CALL_TIMEOUT)
        except CallFailed as exc:
            self._records.pop(session_id, None)
            if exc.kind == "too_many":
                self.metrics.plays_refused.labels("count").inc()
                return self._refused(session_id, play_id, 429, 0, str(exc),
                                     voice=voice is not None)
            raise
        except (PeerGone, CallTimedOut) as exc:
            if self._records.get(session_id) is record and not record.moving:
                self._records.pop(session_id, None)
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
        record = self._records.pop(session_id, None)
        if record is None or record.moving or not record.worker.alive:
            return Reply()
        try:
            gate = await record.worker.call("stop", session_id, within=_CALL_TIMEOUT)
        except (PeerGone, CallTimedOut, CallFailed):
            return Reply()  # the worker died: the session is gone with it
        return Reply(record.worker, gate)

    async def pause(self, session_id: str) -> None:
        """Pause (idempotent). Raises SessionNotFound."""
        record = self._record(session_id)
        if not await self._call(record, "pause", session_id):
            raise SessionNotFound(session_id)
        record.paused = True

    async def resume(self, session_id: str) -> None:
        """Resume (no-op unless paused). Raises SessionNotFound."""
        record = self._record(session_id)
        if not await self._call(record, "resume", session_id):
            raise SessionNotFound(session_id)
        record.paused = False

    async def status(self, session_id: str) -> dict[str, Any] | None:
        """The Go engine's ``/status`` fields, or None for an unknown id."""
        record = self._records.get(session_id)
        if record is None:
            return None
        if record.moving or not record.worker.alive:
            return {"state": "streaming" if record.live else "stopped", "bytes_sent": 0,
                    "url": record.request.url}
        try:
            return await self._call(record, "status", session_id)  # type: ignore[no-any-return]
        except SessionNotFound:
            return None

    async def view(self, session_id: str) -> dict[str, Any] | None:
        record = self._records.get(session_id)
        if record is None:
            return None
        if record.moving or not record.worker.alive:
            raise WorkerUnavailable("the engine is moving this session; try again shortly")
        return await self._call(record, "view", session_id)  # type: ignore[no-any-return]

    async def views(self) -> list[dict[str, Any]]:
        results = await asyncio.gather(
            *(w.call("views", within=_CALL_TIMEOUT) for w in self._live_workers()),
            return_exceptions=True)
        views: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, list):
                views.extend(result)
        return views

    async def set_volume(self, session_id: str, volume: float) -> float:
        record = self._record(session_id)
        value = float(await self._call(record, "volume", session_id, volume))
        record.volume = value
        return value

    async def seek(self, session_id: str, position: float) -> str:
        record = self._record(session_id)
        state = str(await self._call(record, "seek", session_id, position))
        record.position_hint = (position, time.monotonic())
        return state

    async def set_end(self, session_id: str, end_at: float | None) -> None:
        """The track position (seconds) at which the current play ends (None: its end)."""
        record = self._record(session_id)
        await self._call(record, "end_at", session_id, end_at)
        record.request = replace(record.request, end_at=end_at)  # a move keeps it

    async def filters(self, session_id: str) -> dict[str, Any]:
        record = self._record(session_id)
        return await self._call(record, "filters", session_id)  # type: ignore[no-any-return]

    async def set_filters(self, session_id: str, filters: Filters,
                          loudness_default: bool) -> dict[str, Any]:
        record = self._record(session_id)
        view = await self._call(record, "set_filters", session_id, filters, loudness_default)
        record.filters = filters
        record.loudness_default = loudness_default
        return view  # type: ignore[no-any-return]

    async def set_crossfade(self, session_id: str, seconds: float) -> float:
        record = self._record(session_id)
        value = float(await self._call(record, "crossfade", session_id, seconds))
        record.crossfade = value
        return value

    def output_of(self, session_id: str) -> OutputFormat:
        """The output format of *session_id*'s stream. Raises SessionNotFound."""
        record = self._records.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record.request.output

    async def set_next(self, session_id: str, request: PlayRequest, filters: Filters | None,
                       loudness_default: bool) -> int:
        record = self._record(session_id)
        play_id = next(self._plays)
        return int(await self._call(record, "set_next", session_id, request, filters,
                                    loudness_default, play_id))

    async def cancel_next(self, session_id: str) -> int | None:
        record = self._record(session_id)
        value = await self._call(record, "cancel_next", session_id)
        return int(value) if value is not None else None

    # -- Lavalink players: their guild's id and voice connection -------------------------------

    def is_voice(self, session_id: str) -> bool:
        """Whether *session_id* is claimed by a Lavalink player."""
        return session_id in self._voices

    def claim_voice(self, session_id: str) -> None:
        """Claim *session_id* for a Lavalink player (idempotent).

        Raises:
            SessionConflict: a Go session with this id is live.
        """
        if session_id in self._voices:
            return
        record = self._records.get(session_id)
        if record is not None and record.live:
            raise SessionConflict(_conflict_message(session_id, lavalink=False))
        self._records.pop(session_id, None)  # an ended Go session gives the id up
        self._voices[session_id] = _Voice()

    async def release_voice(self, session_id: str) -> Reply:
        """The Lavalink player of *session_id* is gone: stop its session, close its
        voice connection, give the id up. Unknown ids are fine."""
        voice = self._voices.get(session_id)
        if voice is None:
            return Reply()
        reply = await self.stop_session(session_id)
        self._voices.pop(session_id, None)
        if voice.worker is not None and voice.worker.alive:
            try:
                await voice.worker.call("voice_close", session_id, within=_CALL_TIMEOUT)
            except (PeerGone, CallTimedOut, CallFailed) as exc:
                log.warning("voice connection of %s not closed: %s", session_id, exc)
        return reply

    async def connect_voice(self, session_id: str, server: VoiceServer) -> dict[str, Any]:
        """Connect (or move) the voice connection of the Lavalink player *session_id*
        on the worker that plays it (placed now if it has none), and wait until it
        is usable or failed: ``{"connected", "code", "reason"}``.

        Raises:
            SessionNotFound: the id is not claimed (``claim_voice``).
            WorkerUnavailable: no worker can take it now.
        """
        voice = self._voices.get(session_id)
        if voice is None:
            raise SessionNotFound(session_id)
        if voice.worker is None or not voice.worker.alive:
            if voice.worker is not None:
                raise WorkerUnavailable("the engine is moving this player to another "
                                        "worker; try again shortly")
            workers = self._live_workers(started=True)
            if not workers:
                raise WorkerUnavailable("the engine is starting its workers; try again shortly")
            voice.worker = self._place(workers)
        voice.server = server
        try:
            answer = await voice.worker.call("voice", session_id, server,
                                             within=_VOICE_CALL_TIMEOUT)
        except (PeerGone, CallTimedOut) as exc:
            raise WorkerUnavailable("the engine worker of this player is not answering; "
                                    "try again shortly") from exc
        voice.connected, voice.said_at = bool(answer.get("connected")), time.monotonic()
        return dict(answer)

    def player_state(self, session_id: str, tempo: float = 1.0) -> PlayerState:
        """Where the voice session *session_id* is (from its worker's reports, carried
        forward at *tempo* track seconds per second while it plays), and its voice
        connection's state."""
        voice = self._voices.get(session_id)
        worker = voice.worker if voice is not None else None
        report = worker.report if worker is not None else None
        snapshot = report.voices.get(session_id) if report is not None else None
        connected = snapshot is not None and snapshot.connected
        ping = snapshot.ping_ms if snapshot is not None else -1
        if voice is not None and (report is None or voice.said_at > report.at):
            connected = voice.connected
            ping = ping if connected else -1
        record = self._records.get(session_id)
        if record is None or not record.live:
            return PlayerState(None, connected, ping)
        now = time.monotonic()
        session = record.snapshot
        position, at = (session.position, record.snapshot_at) if session is not None \
            else (record.request.start_at, now)
        if record.position_hint is not None and record.position_hint[1] > at:
            position, at = record.position_hint
        playing = connected and not record.paused and (session is None or session.ready_sent)
        if playing:
            position += min(_EXTRAPOLATE_MAX, max(0.0, now - at)) * tempo
        return PlayerState(position, connected, ping)

    def worker_voice_event(self, worker: WorkerProcess, fields: dict[str, Any]) -> None:
        session_id = str(fields.get("session_id", ""))
        voice = self._voices.get(session_id)
        if voice is None or voice.worker is not worker or self.voice_listener is None:
            return  # a released player, or a dead worker's late word
        self.voice_listener.voice_event(session_id, fields)

    def worker_voice_closed(self, worker: WorkerProcess, session_id: str, code: int,
                            reason: str, by_remote: bool) -> None:
        voice = self._voices.get(session_id)
        if voice is None or voice.worker is not worker:
            return
        voice.connected, voice.said_at = False, time.monotonic()
        if self.voice_listener is not None:
            self.voice_listener.voice_closed(session_id, code, reason, by_remote)

    async def _move_voices(self, dead: WorkerProcess, moving: list[tuple[str, _Voice]]
                           ) -> None:
        """Connect the voice connections the *dead* worker held (*moving*) again, each
        on the worker its guild's session moved to (or a placed one)."""
        if not moving:
            return
        workers = self._live_workers(started=True)
        calls = []
        for session_id, voice in moving:
            if self._voices.get(session_id) is not voice:
                continue  # released meanwhile
            if voice.worker is dead or voice.worker is None or not voice.worker.alive:
                if not workers:
                    voice.worker = None
                    continue
                voice.worker = self._place(workers)
            if voice.server is not None:
                calls.append(voice.worker.call("voice", session_id, voice.server,
                                               within=_VOICE_CALL_TIMEOUT))
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        log.info("%d voice connections moved (%d failed)", len(calls) - len(failed),
                 len(failed))

    # -- statistics ----------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, object]:
        return {
            "consumers": len(self.hub.consumers),
            "consumers_any_order": sum(1 for c in self.hub.consumers if c.any_order),
            "consumer_queues": {c.name: c.queued_bytes for c in self.hub.consumers},
            "workers": len(self._live_workers()),
        }

    async def _gather(self, method: str) -> list[Any]:
        results = await asyncio.gather(
            *(w.call(method, within=_CALL_TIMEOUT) for w in self._live_workers()),
            return_exceptions=True)
        return [r for r in results if not isinstance(r, BaseException)]

    async def metrics_text(self) -> bytes:
        """``/metrics``: the front's metrics and every worker's, added up."""
        return merged_exposition(self.metrics.registry, await self._gather("metrics"))

    async def health(self) -> dict[str, Any]:
        """``/health``: the Go engine's fields first, then ours."""
        parts = await self._gather("health")
        total = _sum_dicts(parts)
        rss = rss_megabytes() + sum(
            s.worker.report.rss_mb for s in self._slots
            if s.worker is not None and s.worker.report is not None)
        return {
            "status": "ok",
            "uptime_seconds": int(time.monotonic() - self.started_at),
            "ram_mb": f"{rss:.2f}",
            "sessions_active": total.get("sessions_active", 0),
            "sessions_playing": total.get("sessions_playing", 0),
            "engine": "audiogate",
            "version": self.version,
            "features": list(FEATURES),
            "workers": len(self._live_workers()),
            "worker_pids": [w.pid for w in self._live_workers()],
            "sessions_total": total.get("sessions_total", 0),
            "sessions_by_state": total.get("sessions_by_state", {}),
            "passthrough_sessions": total.get("passthrough_sessions", 0),
            "consumers": len(self.hub.consumers),
            "consumers_any_order": sum(1 for c in self.hub.consumers if c.any_order),
            "ticks": max((p.get("ticks", 0) for p in parts), default=0),
            "clock_slipped_ticks": total.get("clock_slipped_ticks", 0),
            "frames_sent": total.get("frames_sent", 0),
            "underruns": total.get("underruns", 0),
            "max_sessions": self.settings.max_sessions,
            "cpu_seconds": round(time.process_time() + total.get("cpu_seconds", 0.0), 3),
            "opus_complexity": self.admission.complexity,
            "frameStats": self._frame_stats(parts),
            "tasks": len(asyncio.all_tasks()) + total.get("tasks", 0),
            "threads": total.get("threads", 0),
            "open_fds": open_fds(),
            "resolution": {
                "workers": self.resolve_pool.workers,
                "running": self.resolve_pool.running,
                "waiting": self.resolve_pool.waiting,
                "workers_started": self.resolve_pool.started,
                "workers_killed": self.resolve_pool.killed,
            },
            "egress": total.get("egress", {"connections": 0, "grants": 0}),
            "pools": {
                name: {
                    "threads": pool["threads"],
                    "queued": pool["queued"],
                    "jobs": pool["jobs"],
                    "late_jobs": pool["late_jobs"],
                    "wait_ms_mean": round(1000 * pool["wait_seconds"] / max(1, pool["jobs"]), 3),
                    "run_ms_mean": round(1000 * pool["run_seconds"] / max(1, pool["jobs"]), 3),
                }
                for name, pool in total.get("pools", {}).items()
            },
        }

    @staticmethod
    def _frame_stats(parts: list[dict[str, Any]]) -> dict[str, int] | None:
        windows = [p["frame_stats"] for p in parts if p.get("frame_stats")]
        players = sum(w[3] for w in windows)
        if not players:
            return None
        return {key: round(sum(w[i] * w[3] for w in windows) / players)
                for i, key in enumerate(("sent", "nulled", "deficit"))}

    async def stats(self) -> dict[str, Any]:
        """``/stats`` in Lavalink's shape, for node balancers written for it."""
        parts = await self._gather("health")
        total = _sum_dicts(parts)
        memory = psutil.virtual_memory()
        rss = int((rss_megabytes() + sum(p.get("rss_mb", 0.0) for p in parts)) * 1024 * 1024)
        cores = psutil.cpu_count() or 1
        room = self.load.headroom()
        return {
            "players": total.get("sessions_active", 0),
            "playingPlayers": total.get("sessions_playing", 0),
            "uptime": int((time.monotonic() - self.started_at) * 1000),
            "memory": {"free": memory.available, "used": rss, "allocated": rss,
                       "reservable": memory.total},
            "cpu": {
                "cores": cores,
                "systemLoad": round(psutil.cpu_percent(interval=None) / 100, 4),
                "lavalinkLoad": round(room.load * self.budget / cores, 4),
            },
            "frameStats": self._frame_stats(parts),
            "headroom": self.headroom(),
        }

    def headroom(self) -> dict[str, Any]:
        """Ours, beside Lavalink's keys: the admission's inputs now."""
        room = self.load.headroom()
        level = self.admission.complexity
        carried = self._carried()
        projected = self.cost.cores(carried.at(self.admission.levels[-1]) + 1.0) / self.budget
        return {
            "load": round(room.load, 4),
            "projectedLoad": round(self.cost.cores(carried.at(level)) / self.budget, 4),
            "sessionCost": round(self.cost.per_unit / self.budget, 5),
            "maxLoad": self.admission.max_load,
            "cpuBudget": self.budget,
            "admitting": projected <= self.admission.max_load or self.admission.max_load >= 1,
            "opusComplexity": level,
            "workers": len(self._live_workers()),
            "tickLatenessMs": round(room.tick_lateness * 1000, 2),
            "poolLagMs": round(room.pool_lag * 1000, 2),
            "nulled": room.nulled,
            "deficit": room.deficit,
            "expectedFrames": room.expected_frames,
            "windowSeconds": round(room.seconds, 2),
        }


def _conflict_message(session_id: str, *, lavalink: bool) -> str:
    if lavalink:
        return (f"session {session_id} is a Lavalink player's guild: a guild is either a "
                "Lavalink player or a Go session, never both")
    return (f"guild {session_id} has a live Go session: a guild is either a Lavalink "
            "player or a Go session, never both")


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _silent_for(worker: WorkerProcess) -> float:
    """Seconds since *worker*'s clock last ticked, as far as the front knows (a
    worker whose loop stalls stops reporting too)."""
    report = worker.report
    if report is None or report.last_tick_at is None:
        return math.inf
    return time.monotonic() - report.last_tick_at


def _ticking(worker: WorkerProcess) -> bool:
    return _silent_for(worker) <= CLOCK_STALL_SECONDS + LOAD_INTERVAL


async def _started(worker: WorkerProcess) -> None:
    """Wait for *worker*'s first report with a ticking clock.

    Raises:
        RuntimeError: the worker died first.
    """
    started = asyncio.ensure_future(worker.started.wait())
    closed = asyncio.ensure_future(worker.closed.wait())
    try:
        await asyncio.wait({started, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
        closed.cancel()
    if not worker.started.is_set():
        raise RuntimeError(f"engine worker {worker.index} exited at start-up")


def _prior_from(bare_micros: float) -> float:
    """Cores one plain transcoding session costs, from the bare pipeline's µs per
    frame plus the engine's own work on top (Ogg pages, the program, the clock, the
    front): measured at about 15 % (docs/performance.md)."""
    return bare_micros * 1.15 / 1e6 / FRAME_DURATION


def _sum_dicts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the workers' ``health`` dicts (numbers summed, nested dicts too)."""
    total: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, bool) or value is None or isinstance(value, tuple):
                continue
            if isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                total[key] = _sum_dicts([total.get(key, {}), value])
    return total


#: Used by the HTTP face to build callbacks on the front's loop.
Callback = Callable[[], None]
