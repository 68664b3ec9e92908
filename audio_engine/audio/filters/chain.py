"""``FilterChain``: a session's filters between decoding and encoding.

The codec job hands the chain s16 48 kHz stereo PCM as it decodes it and gets back
``FilteredFrame``s: exactly 960 samples (20 ms) each, numbered, with the *track* time of
their first sample. Everything the engine needs around filters lives here:

- **Passthrough**: with a neutral filter set (``Filters()``) the chain is an identity
  and says so (``passthrough``), so the source may keep Opus packets as they are.
- **Position arithmetic**: under timescale, output time and track time differ; every
  frame carries its track position (``positions`` maps any output sample), so position
  reports, seeks and the end of the track stay in track time.
- **Live changes without a gap or a click**: ``configure()`` builds the new graph and
  starts it a little *before* the first frame not yet handed out (on up to ``history``
  seconds of input the chain keeps), so its filter state is warm; the output then
  crossfades over ``crossfade`` seconds from the old graph to the new one at the same
  track position. The audio stays continuous: no samples are skipped or repeated, and
  the new settings are heard from the first frame produced after the call.
- **Rewind**: the engine keeps up to a second of frames queued ahead of the listener. To
  make a change audible at once it drops them and calls ``rewind(index)``: the chain
  produces those frames again (re-filtered, after a ``configure()``), from the copy of
  its output and input it keeps.
- **End of stream**: ``flush()`` drains every FFmpeg filter (atempo and the limiter
  hold samples back), so no tail is lost; the last frame is padded with silence.

Latency: none for most filters (output leaves with the input that made it); atempo and
the limiter hold a few ms; with loudness on, the first ~0.4 s of a track are held until
FFmpeg's meter has a reading (at most 0.5 s), so the very first frame is already at the
right level. A caller must keep pushing until frames come out.

Memory: ``history`` seconds of input and of output as s16 (about 190 KB each per second),
plus the graphs. Work: everything runs in the caller's thread. ``configure()`` builds the
new graph (and, switching loudness on, meters the kept input): a few ms of CPU; warming
and crossfading happen in the next ``push()``/``flush()``. Call all of them from the
session's codec job, never from the event loop. Not thread-safe.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from audio_engine.audio.filters.graph import GraphPlan, plan
from audio_engine.audio.filters.lane import Lane, SampleQueue, Samples
from audio_engine.audio.filters.loudness import LoudnessControl
from audio_engine.audio.filters.positions import PositionMap
from protocol import SAMPLE_RATE, SAMPLES_PER_FRAME
from protocol.filters import Filters

__all__ = ["FilterChain", "FilteredFrame", "RewindError"]

Pcm = npt.NDArray[np.int16]

_SCALE: Final = 32768.0


class RewindError(LookupError):
    """``rewind()`` asked for frames the chain no longer keeps (or never produced)."""


@dataclass(frozen=True, slots=True)
class FilteredFrame:
    """One 20 ms frame out of the chain."""

    #: 960 samples of s16le stereo (3840 bytes).
    pcm: bytes
    #: Track seconds at the frame's first sample.
    position: float
    #: Frame number: 0, 1, 2, ... from the chain's creation, across seeks; ``rewind()``
    #: takes it.
    index: int


@dataclass(slots=True)
class _Entry:
    """A block of input as received, and the loudness gain ramp over it once known."""

    start: int
    pcm: Pcm
    gains: tuple[float, float] | None = None


@dataclass(slots=True)
class _Feed:
    """A lane and the input sample it reads next."""

    lane: Lane
    cursor: int


@dataclass(slots=True)
class _Handover:
    """A crossfade from the current lane to ``incoming``, at output sample ``at``.

    ``old`` queues the current lane's output from ``at`` on; ``pre`` of those samples play
    before the crossfade starts at track time ``align`` (more than 0 only when the kept
    input did not reach back far enough); ``skip`` samples of the incoming lane's output
    come before ``align`` (its warm-up) and are dropped.
    """

    incoming: _Feed
    at: int
    align: float
    pre: int
    skip: int
    old: SampleQueue = field(default_factory=SampleQueue)


def _fade(length: int) -> Samples:
    """Raised-cosine weights 0 → 1 of the incoming signal (they sum to 1 with the
    outgoing weights, so equal signals pass at equal level)."""
    n = np.arange(length, dtype=np.float64)
    weights = 0.5 - 0.5 * np.cos(np.pi * (n + 0.5) / length)
    return weights.astype(np.float32).reshape(-1, 1)


def _to_pcm(block: Samples) -> Pcm:
    # A filter that ever produced NaN or infinity must not turn into a full-scale click.
    finite = np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0)
    scaled: Samples = np.rint(finite * _SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


class FilterChain:
    """A session's filters: s16 48 kHz stereo in, numbered 20 ms frames in track time out.

    Args:
        filters: the filter set to start with (default: none, the chain is an identity).
        position: track seconds of the first input sample.
        crossfade: seconds over which a filter change fades from old to new output.
        history: seconds of input and output kept for warm starts and ``rewind()``.
            Bounded: past it, a change still starts on time but its new graph starts
            cold, a little later (the old output plays until then).
        preroll: seconds of input a new graph runs on before its first audible sample,
            to warm up its filter state.

    Raises:
        av.FFmpegError: FFmpeg refused the graph (a bug: filters are validated).
    """

    def __init__(
        self,
        filters: Filters | None = None,
        *,
        position: float = 0.0,
        crossfade: float = 0.020,
        history: float = 1.0,
        preroll: float = 0.030,
    ) -> None:
        self._filters = filters if filters is not None else Filters()
        self._fade_len = max(1, round(crossfade * SAMPLE_RATE))
        self._history = max(0, round(history * SAMPLE_RATE))
        self._preroll = preroll
        first = plan(self._filters)
        self._origin = position
        self._log: deque[_Entry] = deque()
        self._head = 0
        self._current = _Feed(Lane(first, position), 0)
        self._handover: _Handover | None = None
        self._pending = SampleQueue()
        self._returned = 0
        self._sent: deque[tuple[int, Pcm]] = deque(
            maxlen=max(1, self._history // SAMPLES_PER_FRAME)
        )
        self._map = PositionMap(position, first.tempo)
        self._loudness = LoudnessControl(self._filters.loudness)
        self._finished = False
        self._closed = False
        #: Samples of silence that padded the last frame of the last ``flush()`` that
        #: returned frames: the track's real end is that far before the end of the
        #: frames returned.
        self.padding = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def filters(self) -> Filters:
        """The filter set being applied (or being faded in)."""
        return self._filters

    @property
    def passthrough(self) -> bool:
        """True when the chain changes nothing: no filter active and no change under way.
        A source may then send its audio without decoding it."""
        return self._handover is None and self._current.lane.plan.identity

    @property
    def tempo(self) -> float:
        """Track seconds per output second now (1 without timescale)."""
        return self._map.tempo_at(self._returned)

    @property
    def position(self) -> float:
        """Track seconds of the next frame ``push()`` or ``flush()`` will return."""
        return self._map.track_time(self._returned)

    @property
    def positions(self) -> PositionMap:
        """Output sample → track time, for any sample produced so far (read only)."""
        return self._map

    @property
    def next_index(self) -> int:
        """Index of the next frame to be returned."""
        return self._returned // SAMPLES_PER_FRAME

    # -- the stream ----------------------------------------------------------------------

    def push(self, pcm: bytes | bytearray | memoryview = b"") -> list[FilteredFrame]:
        """Filter ``pcm`` (s16le stereo 48 kHz, any whole number of samples) and return
        the frames now complete. May return none (filters holding samples back, a change
        waiting for its new graph); an empty ``pcm`` just collects what is ready.

        Raises:
            ValueError: ``pcm`` is not whole stereo s16 samples.
            RuntimeError: the chain was flushed (``seek()`` restarts it).
        """
        if self._closed:
            raise RuntimeError("the chain is closed")
        if self._finished:
            raise RuntimeError("the chain was flushed; seek() before pushing more")
        if len(pcm) % 4:
            raise ValueError(f"PCM must be whole s16 stereo samples, got {len(pcm)} bytes")
        if len(pcm):
            # The chain keeps the input (history): a caller's mutable buffer is copied.
            data = pcm if isinstance(pcm, bytes) else bytes(pcm)
            block = np.frombuffer(data, dtype=np.int16).reshape(-1, 2)
            self._log.append(_Entry(self._head, block))
            self._head += len(block)
            if self._loudness.meter is not None:
                self._loudness.measure(block.astype(np.float32) / _SCALE)
        self._assign_gains(final=False)
        self._run()
        return self._frames(final=False)

    def flush(self) -> list[FilteredFrame]:
        """End of the track: drain every filter and return the remaining frames, the last
        one padded with silence to 960 samples. The chain then refuses ``push()`` until
        ``seek()``; ``rewind()`` and ``configure()`` still work, and the next ``flush()``
        returns the frames they redo (a change made while the last frames wait to play).

        Raises:
            RuntimeError: the chain is closed.
        """
        if self._closed:
            raise RuntimeError("the chain is closed")
        self._assign_gains(final=True)
        self._feed_lanes()
        handover = self._handover
        if handover is not None:
            handover.incoming.lane.finish()
            self._current.lane.finish()
            handover.old.append(self._current.lane.output.take_all())
            self._drop_warmup(handover)
            old_left = len(handover.old) - handover.pre
            new_left = len(handover.incoming.lane.output)
            if handover.skip == 0 and old_left >= 0 and new_left > 0:
                self._complete(min(self._fade_len, max(old_left, 1), new_left))
            else:
                self._pending.append(handover.old.take_all())
                self._end_handover()
        else:
            self._current.lane.finish()
            self._pending.append(self._current.lane.output.take_all())
        self._finished = True
        return self._frames(final=True)

    def configure(self, filters: Filters) -> None:
        """Apply ``filters`` from the first frame not yet returned on, crossfading from
        the current ones. A no-op when they process audio the same way.

        Raises:
            av.FFmpegError: FFmpeg refused the graph (a bug: filters are validated); the
                chain is unchanged.
        """
        saved = self._filters, self._loudness.snapshot()
        try:
            self._configure(filters)
        except BaseException:
            self._filters = saved[0]
            self._loudness.restore(saved[1])
            raise

    def _configure(self, filters: Filters) -> None:
        target = plan(filters)
        # The kept input is only converted (lazily) if loudness is being switched on.
        kept = (entry.pcm.astype(np.float32) / _SCALE for entry in self._log)
        self._loudness.retune(filters.loudness, kept)
        self._filters = filters
        handover = self._handover
        if handover is None and self._head == 0:
            # No audio since the start (or the last seek): nothing to fade from.
            if target != self._current.lane.plan:
                fresh = Lane(target, self._origin)
                self._current.lane.close()
                self._current = _Feed(fresh, 0)
                self._map.add(self._returned, self._origin, target.tempo)
                self._loudness.settle(filters.loudness)
            return
        if handover is not None:
            if target == self._current.lane.plan:
                self._pending.append(handover.old.take_all())
                self._end_handover()
            elif target != handover.incoming.lane.plan:
                self._handover = self._start(target, handover.at, handover.old)
        elif target != self._current.lane.plan:
            self._handover = self._start(target, self._returned, None)

    def rewind(self, index: int) -> None:
        """The consumer discarded every frame from number ``index`` on: they will be
        returned again (by the next ``push()``, or ``flush()`` once the track has ended),
        filtered with the filters configured by then.

        Raises:
            RewindError: ``index`` is past the frames returned, or older than the kept
                ``history``.
        """
        start = index * SAMPLES_PER_FRAME
        if start > self._returned:
            raise RewindError(f"frame {index} has not been returned yet")
        if start == self._returned:
            return
        if not self._sent or self._sent[0][0] > index:
            raise RewindError(f"frame {index} is older than the kept history")
        blocks: list[Pcm] = []
        while self._sent and self._sent[-1][0] >= index:
            blocks.append(self._sent.pop()[1])
        replay = np.concatenate(blocks[::-1]).astype(np.float32) / _SCALE
        self._returned = start
        handover = self._handover
        if handover is None:
            self._pending.prepend(replay)
        else:
            handover.old.prepend(replay)
            self._handover = self._start(handover.incoming.lane.plan, start, handover.old)

    def seek(self, position: float) -> None:
        """The input jumps to track time ``position``: drop everything buffered (the
        history too) and start the current filters afresh. Frame numbers go on.

        Raises:
            RuntimeError: the chain is closed.
        """
        if self._closed:
            raise RuntimeError("the chain is closed")
        self._close_lanes()
        target = plan(self._filters)
        self._log.clear()
        self._head = 0
        self._origin = position
        self._current = _Feed(Lane(target, position), 0)
        self._pending.clear()
        self._sent.clear()
        self._map.add(self._returned, position, target.tempo)
        self._finished = False

    def close(self) -> None:
        """Release the FFmpeg graphs; the chain refuses further use. Idempotent."""
        self._close_lanes()
        self._loudness = LoudnessControl()
        self._finished = True
        self._closed = True

    # -- internals -----------------------------------------------------------------------

    def _close_lanes(self) -> None:
        if self._handover is not None:
            self._handover.incoming.lane.close()
            self._handover = None
        self._current.lane.close()

    def _time_of(self, sample: int) -> float:
        return self._origin + sample / SAMPLE_RATE

    def _start(self, target: GraphPlan, at: int, old: SampleQueue | None) -> _Handover:
        """Build the incoming lane for a crossfade at output sample ``at``."""
        align = self._map.track_time(at)
        oldest = self._log[0].start if self._log else self._head
        wanted = math.floor((align - self._preroll - self._origin) * SAMPLE_RATE)
        first = min(max(wanted, oldest), self._head)
        lane = Lane(target, self._time_of(first))
        align = max(align, lane.start + self._preroll)
        pre = max(
            0, round((align - self._map.track_time(at)) * SAMPLE_RATE / self._map.tempo_at(at))
        )
        skip = max(0, round((align - lane.start) * SAMPLE_RATE / target.tempo))
        if self._handover is not None:
            self._handover.incoming.lane.close()
        queue = old if old is not None else SampleQueue()
        if old is None:
            queue.append(self._pending.take_all())
        if target.loudness is not None and target.loudness != self._current.lane.plan.loudness:
            # Loudness newly on (or retuned) for the incoming lane: the kept input it
            # replays gets today's gain, or waits for a measurement.
            gains = self._loudness.replay_gains()
            for entry in self._log:
                if entry.start + len(entry.pcm) > first:
                    entry.gains = gains
        return _Handover(_Feed(lane, first), at, align, pre, skip, queue)

    def _end_handover(self) -> None:
        if self._handover is not None:
            self._handover.incoming.lane.close()
            self._handover = None
        self._loudness.settle(self._filters.loudness)

    def _assign_gains(self, *, final: bool) -> None:
        """Give each new input block its loudness gain ramp (or hold them back)."""
        unassigned = [entry for entry in self._log if entry.gains is None]
        if not unassigned:
            return
        gains = self._loudness.assign([len(entry.pcm) for entry in unassigned], final=final)
        if gains is not None:
            for entry, ramp in zip(unassigned, gains, strict=True):
                entry.gains = ramp

    def _feed(self, feed: _Feed) -> None:
        """Give ``feed``'s lane every input sample it has not seen and may have."""
        loud = feed.lane.plan.loudness is not None
        blocks: list[Samples] = []
        for entry in self._log:
            end = entry.start + len(entry.pcm)
            if end <= feed.cursor:
                continue
            if loud and entry.gains is None:
                break
            offset = feed.cursor - entry.start
            block = entry.pcm[offset:].astype(np.float32) / _SCALE
            if loud and entry.gains is not None:
                g0, g1 = entry.gains
                if g0 == g1:
                    block *= np.float32(g0)
                else:
                    ramp = np.linspace(g0, g1, len(entry.pcm) + 1, dtype=np.float32)
                    block *= ramp[offset:-1].reshape(-1, 1)
            blocks.append(block)
            feed.cursor = end
        if blocks:
            feed.lane.feed(blocks[0] if len(blocks) == 1 else np.concatenate(blocks))

    def _feed_lanes(self) -> None:
        self._feed(self._current)
        if self._handover is not None:
            self._feed(self._handover.incoming)
        self._trim_log()

    def _trim_log(self) -> None:
        keep_from = self._head - self._history
        cursors = [self._current.cursor]
        if self._handover is not None:
            cursors.append(self._handover.incoming.cursor)
        keep_from = min(keep_from, *cursors)
        while self._log and self._log[0].start + len(self._log[0].pcm) <= keep_from:
            self._log.popleft()

    def _run(self) -> None:
        self._feed_lanes()
        handover = self._handover
        if handover is None:
            self._pending.append(self._current.lane.output.take_all())
            return
        handover.old.append(self._current.lane.output.take_all())
        self._drop_warmup(handover)
        ready_old = len(handover.old) >= handover.pre + self._fade_len
        ready_new = len(handover.incoming.lane.output) >= self._fade_len
        if handover.skip == 0 and ready_old and ready_new:
            self._complete(self._fade_len)

    @staticmethod
    def _drop_warmup(handover: _Handover) -> None:
        output = handover.incoming.lane.output
        dropped = len(output.take(handover.skip))
        handover.skip -= dropped

    def _complete(self, length: int) -> None:
        """Play the old output up to the crossfade, crossfade ``length`` samples, and make
        the incoming lane the current one."""
        handover = self._handover
        assert handover is not None
        incoming = handover.incoming
        self._pending.append(handover.old.take(handover.pre))
        fade_at = self._returned + len(self._pending)
        old = handover.old.take(length)
        new = incoming.lane.output.take(length)
        length = min(len(old), len(new))
        weights = _fade(length) if length else np.zeros((0, 1), dtype=np.float32)
        mixed = old[:length] * (1.0 - weights) + new[:length] * weights
        self._map.add(fade_at, handover.align, incoming.lane.tempo)
        self._pending.append(mixed.astype(np.float32))
        self._pending.append(incoming.lane.output.take_all())
        self._current.lane.close()
        self._current = incoming
        self._handover = None
        self._loudness.settle(self._filters.loudness)

    def _frames(self, *, final: bool) -> list[FilteredFrame]:
        count = len(self._pending) // SAMPLES_PER_FRAME
        if final and len(self._pending) % SAMPLES_PER_FRAME:
            count += 1
        if count == 0:
            return []
        if final:
            self.padding = count * SAMPLES_PER_FRAME - len(self._pending)
        block = self._pending.take(count * SAMPLES_PER_FRAME)
        pcm = _to_pcm(block)
        if len(pcm) < count * SAMPLES_PER_FRAME:
            pcm = np.concatenate(
                [pcm, np.zeros((count * SAMPLES_PER_FRAME - len(pcm), 2), dtype=np.int16)]
            )
        frames: list[FilteredFrame] = []
        for n in range(count):
            piece = pcm[n * SAMPLES_PER_FRAME : (n + 1) * SAMPLES_PER_FRAME]
            index = self._returned // SAMPLES_PER_FRAME
            frames.append(
                FilteredFrame(piece.tobytes(), self._map.track_time(self._returned), index)
            )
            self._sent.append((index, piece))
            self._returned += SAMPLES_PER_FRAME
        return frames
