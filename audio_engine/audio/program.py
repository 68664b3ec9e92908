"""A session's output: one continuous stream made of its tracks.

The ``Program`` turns what its tracks deliver into the session's numbered 20 ms frames
(complete socket packets): one Ogg logical stream for the whole session (one serial,
granules +960 per page, one OpusHead), or PCM; or, for a voice session (``VOICE``),
the bare Opus packets a Discord voice connection sends. Whether the audio is Opus and
whether it is wrapped in Ogg pages are two separate questions of the output format
(``is_opus``, ``is_ogg``). It decides, frame by frame:

- **passthrough** while a single track plays whose packets may go out as they are (no
  filter, volume 1): no decode, no encode;
- **transcoding** otherwise: the tracks' filtered PCM, mixed (two tracks while one fades
  into the next), encoded by the session's encoder.

Where the tracks sit on the timeline and how they sound together there (which tracks
sound at a sample, their fades, where a next track starts) is ``timeline``'s (pure);
the program decides when tracks join, retire and redo frames.

Every change of course continues the same stream without an edge: the session's
``OutputStream`` (``output``) numbers and pages the frames and owns the encoder and its
splices; leaving passthrough primes a fresh encoder on the audio just heard; returning
to it waits until the filters are gone and the frame grid lines up with the source's
packets again.

Live changes redo frames: the manager drops the frames queued after a point (``restart``)
and the tracks' filter chains produce them again with the new settings, crossfaded from
the old at the same track position, so a change is heard within a few frames.

Gapless queues: the producer opens the next track ahead of time (``pending``); the
program places it right after the current one's last sample (``join``), or, with a
crossfade, so that it fades in over the current track's last seconds (planned from the
track's declared duration). A track that follows another never brings its own pre-skip:
the boundary frames are transcoded, and the next track is placed up to 19.98 ms earlier
(a short equal-power overlap) so that its own packets line up with the stream's frames
again and it can return to passthrough once the boundary has played.

"Play now": a pending track that ``replaces`` the current one is read at once; when it
has audio the producer drops what is queued after a short lead (``replace_from``) and
the program joins it there with a ``REPLACE_FADE`` fade, in the same stream. Until
then the current track plays on, so a "play now" that fails takes nothing away.

Synchronous and not thread-safe: the producer calls it from one worker job at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import av

from audio_engine.audio.codec import OpusFrameEncoder
from audio_engine.audio.filters import Filters
from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.output import OutputStream
from audio_engine.audio.timeline import (
    Window,
    alignment,
    contributors,
    join_soon,
    join_span,
    mix,
    owner,
    planned_end,
    raw_offset,
    unread,
    without_audio,
)
from audio_engine.audio.track import FRAME, Mode, Track
from audio_engine.sources.media import OpusInput
from audio_engine.wire.ring import Frame

__all__ = ["HOLD_FRAMES", "REPLACE_FADE", "Program"]

log = logging.getLogger(__name__)

#: Passthrough frames held back at the end of a track that another one follows: they are
#: transcoded to join the next track (which may start up to a frame before the end).
HOLD_FRAMES: Final = 2
#: Samples over which a "play now" track fades in and the track it replaces fades out
#: (40 ms: heard as a cut, without the click of one).
REPLACE_FADE: Final = 2 * 960


class Program:
    """One session's continuous output.

    Args:
        session_id: the session's id (packets carry it).
        output: the session's output format.
        serial: the Ogg stream's serial (Ogg formats).
        encoder_factory: makes a fresh Opus encoder (Opus formats; None for PCM).
    """

    def __init__(self, session_id: str, output: OutputFormat, serial: int,
                 encoder_factory: Callable[[], OpusFrameEncoder] | None) -> None:
        self.session_id = session_id
        self.output = output
        #: The frames made so far, their pages and the encoder.
        self.stream = OutputStream(session_id, output, serial, encoder_factory)
        #: Samples of look-ahead of the session's encoder (the listener hears the encoder
        #: input this much later); 0 for PCM.
        self.lookahead = self.stream.lookahead
        #: Tracks placed on the timeline, oldest first (two while one fades into the next).
        self.tracks: list[Track] = []
        #: The next track, opened, not yet placed.
        self.pending: Track | None = None
        #: Joins whose outgoing track has not been retired yet (until the listener was
        #: sent its last frame), oldest first.
        self._windows: list[Window] = []
        #: Frame index -> the play that begins with that frame.
        self._starts: dict[int, Any] = {}
        #: Set by the producer: a next track is coming (hold the end of the current one).
        self.expect_next = False
        #: Set by the producer: crossfade length between tracks, in samples.
        self.crossfade = 0
        #: Set by the producer: the last frame the listener has been sent.
        self.emitted = -1
        #: Tracks that no longer play; the producer closes their sources.
        self.retired: list[Track] = []
        #: The pending next track was dropped with a seek: the producer opens it again.
        self.next_discarded = False
        #: Frame at which a pending track that ``replaces`` the current one joins.
        self._cut_at: int | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """The stream has ended (its last frame carried the EOS flag)."""
        return self.stream.finished

    @property
    def current(self) -> Track:
        """The newest track placed."""
        return self.tracks[-1]

    @property
    def passthrough(self) -> bool:
        """Packets go out as the source sent them."""
        return (len(self.tracks) == 1 and not self._windows
                and self.tracks[0].mode is Mode.PASSTHROUGH)

    @property
    def pending_is_empty(self) -> bool:
        """The next track's source ended without a single audio frame (a text page
        under an audio name): it is never joined; the producer drops it and the
        session ends after the current track with that play's error."""
        return without_audio(self.pending)

    @property
    def replacing(self) -> bool:
        """A pending track replaces the current one and has not joined yet."""
        return self.pending is not None and self.pending.replaces

    @property
    def replace_due(self) -> bool:
        """The pending track that replaces the current one has audio: the producer
        drops the frames queued after a short lead and calls ``replace_from``."""
        return (self.replacing and self._cut_at is None and not unread(self.pending)
                and not without_audio(self.pending))

    def wants(self) -> list[Track]:
        """Tracks whose source should be read for the next frames."""
        wanted = [t for t in contributors(self.tracks, self._windows,
                                          self.stream.next_index * FRAME)
                  if not t.source_ended]
        pending = self.pending
        if pending is not None and not pending.source_ended and pending.early.seconds < 1.0:
            if pending.replaces or join_soon(self.tracks, self.crossfade,
                                             self.stream.next_index, self.lookahead):
                wanted.append(pending)
        return wanted

    def is_passthrough_track(self, track: Track) -> bool:
        return self.passthrough and track is self.tracks[0]

    # -- starting --------------------------------------------------------------------------

    def start(self, track: Track) -> None:
        """Start the stream with its first track (passthrough when it can)."""
        passthrough = track.opus and track.filters.neutral and self.output.is_opus
        self.stream.start(track.source.opus_head if track.opus else None,
                          passthrough=passthrough)
        track.place(0, passthrough=passthrough)
        track.first_frame = 0
        self.tracks = [track]

    # -- producing -------------------------------------------------------------------------

    def produce(self, inputs: Sequence[tuple[Track, list[av.Packet[av.AudioStream]], bool]]
                ) -> list[Frame]:
        """Feed what was read (per track: packets, and whether its source ended) and
        return every frame that can be made now.

        Raises:
            SourceFailed: a track's audio is corrupt.
        """
        for track, packets, at_end in inputs:
            if track.opus:
                track.feed_packets(track.source.opus_packets(packets))
            else:
                track.feed_pcm(track.source.decode(packets, at_end))
            if at_end:
                track.source_end()
        stream = self.stream
        stream.follow_dial()
        frames = self._steady_passthrough() if self._steady else []
        while (frame := self._step()) is not None:
            frames.append(frame)
        stream.trim(self.emitted)
        if self._starts and min(self._starts) <= self.emitted:
            self._starts = {k: v for k, v in self._starts.items() if k > self.emitted}
        return frames

    @property
    def _steady(self) -> bool:
        """One track passing its packets through, nothing joining, fading, returning
        or ending: most frames of most passthrough sessions."""
        return (self.passthrough and not self.expect_next and self.pending is None
                and not self._starts and self.stream.steady)

    def _steady_passthrough(self) -> list[Frame]:
        """The frames ``_step`` would make in the steady state, without asking for
        every frame what the steady state rules out (a thousand sessions' worth of
        frames go through here every second)."""
        track = self.tracks[0]
        run = track.packets.whole_frames(track.source_ended)
        return self.stream.pass_through(run) if run else []

    def _step(self) -> Frame | None:
        stream = self.stream
        if stream.finished or not self.tracks:
            return None
        n = stream.next_index
        self._retire(n)
        if self._cut_at is not None and n >= self._cut_at and not self._replace(n):
            return None
        self._plan_crossfade(n)
        if self.passthrough:
            return self._pass_step(self.tracks[0], n)
        return self._mix_step(n)

    def _pass_step(self, track: Track, n: int) -> Frame | None:
        packet = track.packets.first()
        if packet is None:
            if not track.source_ended:
                return None
            track.passthrough_end(n)
            return self._at_end(n)
        following = self.expect_next or self.pending is not None
        if following and not track.source_ended and track.packets.size <= HOLD_FRAMES:
            return None  # these may be the track's last packets: they join the next one
        if packet.samples != FRAME or (
                following and track.source_ended and track.packets.size <= HOLD_FRAMES):
            # A packet of another length, or the end of a track that another follows:
            # transcode from here.
            self.stream.to_transcoding(track, n)
            return self._mix_step(n)
        track.packets.pop()
        last = track.source_ended and not track.packets.size and not following
        return self.stream.emit(packet.data, packet.position, last=last,
                                samples=packet.keep if last else FRAME,
                                start=self._starts.get(n))

    def _mix_step(self, n: int) -> Frame | None:
        start, stop = n * FRAME, (n + 1) * FRAME
        current = self.tracks[-1]
        following = self.expect_next or self.pending is not None
        if current.end is not None:
            if self.pending is not None and not without_audio(self.pending):
                if unread(self.pending):
                    return None
                self._join(current, self.pending, None)
                return self._mix_step(n)
            if following and stop > current.end - FRAME:
                return None  # wait for the next track: it may start in this frame
            if not following and current.end <= start:
                return self._end_page()
        sounding = contributors(self.tracks, self._windows, start)
        for track in sounding:
            if not track.covers(stop):
                return None
        if current.end is None and following and not current.covers(stop + FRAME):
            return None  # the track may end within a frame from here: the next one joins
        pcm = mix(sounding, self._windows, start)
        position = owner(self.tracks, n).position_at(start)
        last = not following and current.end is not None and current.end <= stop
        stream = self.stream
        data = stream.encode(pcm, n) if stream.encodes else pcm.tobytes()
        frame = stream.emit(data, position, last=last, start=self._starts.get(n))
        if not last:
            # The single track returns to passthrough when it can.
            track = self.tracks[0]
            stream.towards_passthrough(track, alone=(
                not self._windows and len(self.tracks) == 1
                and track.first_frame <= self.emitted))
        return frame

    def _at_end(self, n: int) -> Frame | None:
        """The current track's audio is all out (passthrough): join, wait, or end."""
        current = self.tracks[-1]
        if self.pending is not None and not without_audio(self.pending):
            if unread(self.pending):
                return None
            self._join(current, self.pending, None)
            return self._step()
        if self.expect_next:
            return None
        return self._end_page()

    def _end_page(self) -> Frame | None:
        """End the stream after the last frame sent (it did not carry the EOS flag)."""
        return self.stream.end_page(self.tracks[-1].source.position if self.tracks else 0.0)

    # -- joining tracks ------------------------------------------------------------------------

    def _plan_crossfade(self, n: int) -> None:
        """Start a crossfade into the pending track when the current one is that close
        to its declared end (and the next track has audio ready)."""
        pending = self.pending
        if self.crossfade <= 0 or pending is None:
            return
        if self._windows and self._windows[-1].stop > n * FRAME:
            return  # the current track is still fading in
        if not (pending.early.seconds > 0 or pending.source_ended or pending.chain):
            return
        if without_audio(pending):
            return
        current = self.tracks[-1]
        planned = planned_end(current, n, self.lookahead)
        if planned is None:
            return
        remaining = planned - n * FRAME
        if remaining > self.crossfade or remaining < 2 * FRAME:
            return
        if current.mode is Mode.PASSTHROUGH:
            if current.packets.first() is None:
                return
            self.stream.to_transcoding(current, n)
        start = n * FRAME + alignment(pending, n * FRAME, self.lookahead)
        self._join(current, pending, (start, max(0, planned - start)))

    def _replace(self, n: int) -> bool:
        """Join the pending track that replaces the current one at frame *n*, with a
        short fade (``REPLACE_FADE``). False: wait for input first."""
        pending = self.pending
        current = self.tracks[-1]
        if (pending is None or not pending.replaces or without_audio(pending)
                or (current.end is not None and current.end <= n * FRAME)):
            self._cut_at = None  # gone, or the current track is over: it joins at the end
            return True
        if unread(pending):
            return False
        if self.passthrough:
            if current.packets.first() is None:
                if current.source_ended:
                    self._cut_at = None
                    return True
                return False
            self.stream.to_transcoding(current, n)
        start = n * FRAME + alignment(pending, n * FRAME, self.lookahead)
        length = REPLACE_FADE
        if current.end is not None:
            length = min(length, max(0, current.end - start))
        self._cut_at = None
        self._join(current, pending, (start, length))
        return True

    def replace_from(self, index: int) -> None:
        """The pending track replaces the current one from frame *index* (frames from
        there were dropped, unless none were made yet)."""
        if index < self.stream.next_index:
            self.restart(index)
        self._cut_at = self.stream.next_index

    def _join(self, current: Track, nxt: Track, span: tuple[int, int] | None) -> None:
        """Place *nxt* after *current*: over *span* (start, length) for a crossfade, or
        right at *current*'s end (up to a frame earlier, to align its packets)."""
        start, length = span if span is not None else join_span(current, nxt, self.lookahead)
        offset = raw_offset(nxt, start, self.lookahead)
        if nxt.chain is not None and not nxt.placed:
            nxt.rejoin(start, offset)
        else:
            nxt.place(start, raw_offset=offset)
        nxt.first_frame = start // FRAME
        self._starts[nxt.first_frame] = nxt.play
        self.tracks.append(nxt)
        self.pending = None
        self._windows.append(Window(start, length, current, nxt))
        self.stream.need_encoder()
        log.debug("%s: next track joins at sample %d (overlap %d)", self.session_id, start,
                  length)

    def _retire(self, n: int) -> None:
        """Drop the outgoing track of a finished join once its last frame was sent
        (until then a change may still redo frames it is in)."""
        while self._windows:
            window = self._windows[0]
            if self.emitted < window.stop_frame or n < window.stop_frame:
                return
            self._windows.pop(0)
            if window.outgoing in self.tracks:
                self.tracks.remove(window.outgoing)
                window.outgoing.close()
                self.retired.append(window.outgoing)

    # -- live changes ----------------------------------------------------------------------

    def set_filters(self, filters: Filters, *, pending_too: bool = True) -> None:
        """The filters every track plays with from now on (applied by ``restart``)."""
        for track in self.tracks:
            track.filters = filters
        if pending_too and self.pending is not None:
            self.pending.filters = filters

    def restart(self, index: int) -> None:
        """Frames from *index* on were dropped: make them again, with each track's
        current filters (crossfaded from the old output at the same track position).
        *index* must not be before a frame the listener was sent."""
        index = min(max(index, self.emitted + 1), self.stream.next_index)
        redo = self.stream.rewind(index)
        self._take_back_joins(index)
        for track in self.tracks:
            if track.mode is Mode.TRANSCODING and track.codec_frame > index:
                # It left passthrough after the cut: it passes its packets again up to
                # there (and leaves again where it must).
                before = redo[: track.codec_frame - index]
                if not track.back_to_passthrough(
                        [OpusInput(f.data, FRAME, f.position) for f in before]):
                    track.rewind_to(index * FRAME)
            elif track.mode is Mode.PASSTHROUGH:
                track.requeue([OpusInput(f.data, FRAME, f.position) for f in redo])
            else:
                track.rewind_to(index * FRAME)
        for track in list(self.tracks):
            if track.mode is Mode.PASSTHROUGH:
                if not track.filters.neutral and track.packets.first() is not None:
                    self.stream.to_transcoding(track, index)
            else:
                track.configure(track.filters)
                track.recollect()

    def _take_back_joins(self, index: int) -> None:
        """A track placed after frame *index* goes back to pending (the frames before
        its start are redone, and may end elsewhere)."""
        while self._windows and self._windows[-1].incoming.first_frame > index:
            window = self._windows[-1]
            incoming = window.incoming
            if not incoming.unplace():
                log.info("%s: the next track could not be taken back; it keeps its place",
                         self.session_id)
                return
            self._windows.pop()
            self.tracks.remove(incoming)
            self._starts.pop(incoming.first_frame, None)
            if self.pending is not None:  # a later one, opened meanwhile: it waits again
                self.pending.close()
                self.retired.append(self.pending)
                self.next_discarded = True
            self.pending = incoming

    def seek(self, index: int, track: Track) -> None:
        """*track*'s source was moved (seek): continue with it alone from frame *index*
        (everything from there was dropped)."""
        self.stream.rewind(index)
        for other in self.tracks:
            if other is not track:
                other.close()
                self.retired.append(other)
                if other.first_frame > track.first_frame:
                    self.next_discarded = True
        self._starts = {k: v for k, v in self._starts.items() if k < index}
        self.tracks = [track]
        self._windows = []
        passthrough = track.opus and track.filters.neutral and self.output.is_opus
        track.restart(index * FRAME, passthrough=passthrough)
        if not passthrough:
            self.stream.encoder_from(index)

    def close(self) -> None:
        """Release every track's chain (sources are the producer's). Idempotent."""
        for track in [*self.tracks, *([self.pending] if self.pending else [])]:
            track.close()
