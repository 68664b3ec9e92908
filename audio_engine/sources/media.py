"""One track's media: PyAV demux, and decoding to 48 kHz stereo s16 PCM.

A ``MediaSource`` is synchronous and confined to one worker thread at a time (the
session's producer runs one job after another; a lock makes that a guarantee, so
``close()`` from anywhere waits for a running job). Its work is split by what it
waits on, so a stalled network source can never hold a codec thread:

* ``open``, ``read``, ``reopen``, ``seek``, ``close`` wait on I/O: they run on the
  engine's I/O pools, bounded by FFmpeg's open/read timeouts;
* ``opus_packets`` and ``decode`` are CPU only: they run on the codec pool.

What happens to the audio next (filters, encoding, passthrough, joining tracks) is the
session's ``Program``. A source whose packets could go out as they are (48 kHz stereo
Opus, channel mapping 0, for an Ogg output) says so with ``opus_head``; the program then
takes its packets (``opus_packets``) and decodes them itself when it must. Any other
source is decoded here (``decode``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import NamedTuple

import av
import av.error

from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.resampler import Resampler
from audio_engine.sessions.session import MAX_POSITION
from audio_engine.sources.length import length_is_a_guess
from audio_engine.sources.options import media_options
from audio_engine.sources.resolver import MediaTarget, user_text
from protocol import (
    SAMPLE_RATE,
    OpusHead,
    RemoteProtocolError,
    opus_packet_samples,
)

__all__ = [
    "MAX_CONSECUTIVE_DECODE_ERRORS",
    "MAX_POSITION",
    "MediaSource",
    "OpusInput",
    "PcmChunk",
    "SourceBroken",
    "SourceError",
    "SourceFailed",
    "SourceOptions",
]

log = logging.getLogger(__name__)

#: Consecutive undecodable packets tolerated before the source counts as corrupt.
MAX_CONSECUTIVE_DECODE_ERRORS = 50
#: Default ``indexmem``: FFmpeg keeps one 24-byte seek-index entry per packet
#: read (about 1.2 KB/s per session, 1 MB by its own default cap); 32 KB is
#: about 1 300 entries, thinned evenly over the whole track, enough for seeking.
DEFAULT_INDEX_BYTES = 32 * 1024


class SourceError(Exception):
    """The source cannot deliver audio; ``str()`` says why, for the user."""


class SourceBroken(SourceError):
    """A transient failure mid-track (connection dropped, read timed out): worth
    reopening at the position reached."""


class SourceFailed(SourceError):
    """A permanent failure (missing, not media, corrupt): the session ends."""


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """How to open one source."""

    #: The session's output: only an Ogg output can take a source's packets as they are.
    output: OutputFormat
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    #: FFmpeg's ``indexmem``: bytes of seek index kept per stream.
    index_bytes: int = DEFAULT_INDEX_BYTES


class OpusInput(NamedTuple):
    """One Opus packet of a source that can pass through: its bytes, its length in
    48 kHz samples, the track time (seconds) it starts at, and how many of its samples
    are audio (fewer in a stream's last packet: Ogg Opus end trimming, RFC 7845)."""

    data: bytes
    samples: int
    position: float
    keep: int = 960


class PcmChunk(NamedTuple):
    """Decoded audio: s16le stereo 48 kHz (any whole number of samples) and the track
    time (seconds) of its first sample."""

    pcm: bytes
    position: float


def _describe(exc: BaseException) -> str:
    """What went wrong, without the file name or URL FFmpeg and the OS attach."""
    if isinstance(exc, av.error.FFmpegError | OSError) and exc.strerror:
        text = str(exc.strerror)
        return text[0].lower() + text[1:]
    return user_text(str(exc)) or type(exc).__name__


def _open_failure(exc: BaseException, name: str) -> SourceError:
    match exc:
        case av.error.ExitError() | TimeoutError():
            return SourceFailed("timed out opening the source")
        case av.error.HTTPError() | av.error.HTTPClientError() | av.error.HTTPServerError():
            return SourceFailed(f"the media server refused the request ({_describe(exc)})")
        case av.error.InvalidDataError():
            return SourceFailed("not a playable media file (invalid data)")
        case av.error.FileNotFoundError() | FileNotFoundError():
            return SourceFailed(f"file not found: {name}")
        case ConnectionError() | av.error.OSError() | OSError():
            return SourceFailed(f"could not reach the source ({_describe(exc)})")
        case _:
            return SourceFailed(f"could not open the source ({_describe(exc)})")


class MediaSource:
    """Demuxes one media target and decodes it into 48 kHz stereo s16 PCM.

    Args:
        target: what to open.
        options: output format (an Ogg output may take Opus packets as they are), timeouts.
        start_at: media position (seconds) of the first sample wanted.
        proxy: the egress proxy URL (with this source's credential) that every
            network connection of the source goes through.
    """

    def __init__(
        self, target: MediaTarget, options: SourceOptions, *, start_at: float = 0.0,
        proxy: str | None = None,
    ) -> None:
        self.target = target
        self.options = options
        self.proxy = proxy
        self.start_at = start_at
        self._lock = threading.Lock()
        self._container: av.container.InputContainer | None = None
        self._stream: av.AudioStream | None = None
        self._demux: object = None
        self._decoder: av.AudioCodecContext | None = None
        self._resampler: Resampler | None = None
        #: (sample format, layout, rate) the resampler was built for.
        self._resampler_input: tuple[str, str, int] | None = None
        self._skip_until = start_at
        self._position = start_at
        self._decode_errors = 0
        self._time_base = 0.0
        self._closed = False
        #: Media duration in seconds, if the container knows it.
        self.duration: float | None = None
        #: Audio frames decoded (or valid Opus packets taken) so far, those before
        #: the start position included: 0 at the end means the source held no
        #: audio at all (a text page named .mp3), not that it was sought past.
        self.audio_frames = 0
        #: The source's own OpusHead when its packets can go out as they are (48 kHz
        #: stereo Opus, mapping family 0, and an Ogg output); None otherwise.
        self.opus_head: OpusHead | None = None

    # -- state visible to the producer -----------------------------------------

    @property
    def position(self) -> float:
        """Media time (seconds) of the next sample the source will deliver."""
        return self._position

    # -- I/O pool --------------------------------------------------------------

    def open(self) -> None:
        """Open the target and seek to the start position.

        Raises:
            SourceFailed: missing, unreachable, not media, no audio stream, timeout.
        """
        with self._lock:
            self._open_container(self._skip_until)
            assert self._stream is not None
            if self.options.output.is_opus:
                self.opus_head = self._passthrough_head(self._stream.codec_context)
            if self.opus_head is None:
                self._start_decoding()

    def read(self, seconds: float) -> tuple[list[av.Packet[av.AudioStream]], bool]:
        """Demux about *seconds* of compressed audio; returns (packets, at_end).

        Raises:
            SourceBroken: the read failed or timed out (worth a reopen).
        """
        with self._lock:
            if self._container is None or self._demux is None:
                raise SourceBroken("source is not open")
            packets: list[av.Packet[av.AudioStream]] = []
            gathered = 0.0
            demux = self._demux
            while gathered < seconds:
                try:
                    packet = next(demux)  # type: ignore[call-overload]
                except StopIteration:
                    return packets, True
                except av.error.EOFError:
                    return packets, True
                except (av.error.ExitError, TimeoutError) as exc:
                    raise SourceBroken(
                        f"no data from the source for {self.options.read_timeout:g} s"
                    ) from exc
                except (av.error.FFmpegError, OSError) as exc:
                    raise SourceBroken(f"source read failed ({_describe(exc)})") from exc
                if packet.size == 0:
                    continue
                packets.append(packet)
                duration = packet.duration
                # float time base: Fraction arithmetic here cost a fifth of the
                # read thread at a thousand sessions.
                gathered += duration * self._time_base if duration else 0.02
            return packets, False

    def reopen(self, position: float) -> None:
        """Open the target again and continue from *position* (after a break).

        Raises:
            SourceFailed: as ``open``.
        """
        with self._lock:
            self._close_container()
            self._skip_until = position
            self._position = position
            self._open_container(position)
            if self.opus_head is None:
                self._start_decoding()

    def seek(self, position: float) -> None:
        """Jump to *position* (seconds) within the open source.

        Raises:
            SourceBroken: if the container cannot seek there.
        """
        with self._lock:
            if self._container is None:
                raise SourceBroken("source is not open")
            if position > MAX_POSITION:
                raise SourceBroken(f"cannot seek to {position:g} s: beyond any track")
            try:
                self._container.seek(int(max(0.0, position) * 1_000_000))
            except (av.error.FFmpegError, OSError, OverflowError) as exc:
                raise SourceBroken(f"seek failed ({_describe(exc)})") from exc
            assert self._stream is not None
            self._demux = self._container.demux(self._stream)
            self._skip_until = position
            self._position = position
            if self.opus_head is None:
                self._stream.codec_context.flush_buffers()
                self._start_decoding()

    def close(self) -> None:
        """Release FFmpeg resources; waits for a running job. Idempotent."""
        with self._lock:
            self._closed = True
            self._close_container()

    # -- codec pool ------------------------------------------------------------

    def opus_packets(self, packets: list[av.Packet[av.AudioStream]]) -> list[OpusInput]:
        """The Opus packets of a source with ``opus_head``, with their track times;
        packets that end before the start position and packets that are not valid
        Opus are left out."""
        with self._lock:
            out: list[OpusInput] = []
            for packet in packets:
                data = bytes(packet)
                try:
                    samples = opus_packet_samples(data)
                except RemoteProtocolError:
                    continue
                self.audio_frames += 1
                if self._skip_until > 0 and packet.pts is not None:
                    end = packet.pts * self._time_base + samples / SAMPLE_RATE
                    if end <= self._skip_until:
                        continue
                keep = samples
                if packet.duration:
                    keep = min(samples, round(packet.duration * self._time_base * SAMPLE_RATE))
                out.append(OpusInput(data, samples, self._position, max(keep, 0)))
                self._position += samples / SAMPLE_RATE
            return out

    def decode(self, packets: list[av.Packet[av.AudioStream]], at_end: bool) -> list[PcmChunk]:
        """Decode and resample *packets* (a source without ``opus_head``); at the end,
        flush the decoder and the resampler. Chunks hold exactly the samples decoded
        (no padding), audio before the start position left out.

        Raises:
            SourceFailed: if too many packets in a row cannot be decoded.
        """
        with self._lock:
            if self._closed or self._decoder is None:
                return []
            chunks: list[PcmChunk] = []
            for packet in packets:
                self._transcode(packet, chunks)
            if at_end:
                self._flush(chunks)
            return chunks

    # -- internals -------------------------------------------------------------

    def _open_container(self, position: float) -> None:
        if not 0 <= position <= MAX_POSITION:
            raise SourceFailed(f"cannot start at {position:g} s: beyond any track")
        options = media_options(
            is_local=self.target.is_local, proxy=self.proxy,
            headers=self.target.http_headers, open_timeout=self.options.open_timeout,
            read_timeout=self.options.read_timeout, index_bytes=self.options.index_bytes,
        )
        container = self._open_av(options)
        duration = container.duration / 1_000_000 if container.duration else None
        if position == 0 and length_is_a_guess(container, is_local=self.target.is_local):
            # The failed seek broke that container: read from a new one.
            container.close()
            container = self._open_av(options)
            duration = None
        if not container.streams.audio:
            container.close()
            raise SourceFailed("the source has no audio stream")
        self._container = container
        self._stream = container.streams.audio[0]
        self._time_base = float(self._stream.time_base or 0)
        if duration:
            self.duration = duration
        if position > 0:
            try:
                container.seek(int(position * 1_000_000))
            except (av.error.FFmpegError, OSError, OverflowError) as exc:
                container.close()
                self._container = None
                raise SourceFailed(f"cannot seek to {position:g} s ({_describe(exc)})") from exc
        self._demux = container.demux(self._stream)

    def _open_av(self, options: dict[str, str]) -> av.container.InputContainer:
        try:
            return av.open(self.target.location, mode="r", options=options)
        except Exception as exc:
            raise _open_failure(exc, self.target.title or "the source") from exc

    @property
    def index_entries(self) -> int:
        """Entries in the open stream's seek index (bounded by ``indexmem``)."""
        with self._lock:
            return len(self._stream.index_entries) if self._stream is not None else 0

    def _close_container(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError):
                log.debug("closing %s failed", self.target.title, exc_info=True)
        self._container = None
        self._stream = None
        self._demux = None
        self._decoder = None
        self._resampler = None
        self._resampler_input = None

    def _passthrough_head(self, codec: av.AudioCodecContext) -> OpusHead | None:
        if codec.name != "opus" or codec.sample_rate != SAMPLE_RATE:
            return None
        if codec.channels != 2 or not codec.extradata:
            return None
        try:
            source_head = OpusHead.parse(bytes(codec.extradata))
        except RemoteProtocolError:
            return None
        if source_head.mapping_family != 0:
            return None
        return OpusHead(
            channels=2,
            pre_skip=source_head.pre_skip,
            input_sample_rate=source_head.input_sample_rate,
            output_gain=source_head.output_gain,
        )

    def _start_decoding(self) -> None:
        assert self._stream is not None
        self._decoder = self._stream.codec_context
        self._resampler = _new_resampler()
        self._resampler_input = None

    def _transcode(self, packet: av.Packet[av.AudioStream], chunks: list[PcmChunk]) -> None:
        assert self._decoder is not None and self._resampler is not None
        try:
            decoded = self._decoder.decode(packet)
            self._decode_errors = 0
        except (av.error.InvalidDataError, av.error.FFmpegError, ValueError) as exc:
            self._decode_errors += 1
            if self._decode_errors >= MAX_CONSECUTIVE_DECODE_ERRORS:
                raise SourceFailed(
                    f"the audio is corrupt ({self._decode_errors} undecodable packets in a row)"
                ) from exc
            return
        self.audio_frames += len(decoded)
        for audio in decoded:
            if self._skip_until > 0 and audio.pts is not None and audio.time_base is not None:
                end = audio.pts * float(audio.time_base) + audio.samples / audio.sample_rate
                if end <= self._skip_until:
                    continue
            self._resample(audio, chunks)

    def _resample(self, audio: av.AudioFrame, chunks: list[PcmChunk]) -> None:
        """Resample *audio* to 48 kHz stereo s16. A source whose sample rate, layout
        or sample format changes mid-file (concatenated files, a radio stream
        switching programmes) gets a new resampler: the old one is drained first,
        so no audio is lost at the change."""
        assert self._resampler is not None
        shape = (audio.format.name, audio.layout.name, audio.sample_rate)
        if self._resampler_input is not None and shape != self._resampler_input:
            log.info("%s: audio format changed mid-stream (%s %s %d Hz -> %s %s %d Hz)",
                     self.target.title or "source", *self._resampler_input, *shape)
            for chunk in self._resampler.resample(None):
                if chunk.samples:
                    chunks.append(self._chunk(chunk))
            self._resampler = _new_resampler()
        self._resampler_input = shape
        try:
            resampled = self._resampler.resample(audio)
        except ValueError as exc:
            raise SourceFailed(
                f"the audio changed format mid-file in a way that cannot be followed ({exc})"
            ) from exc
        for chunk in resampled:
            chunks.append(self._chunk(chunk))

    def _flush(self, chunks: list[PcmChunk]) -> None:
        if self._decoder is None or self._resampler is None:
            return
        try:
            tail = list(self._decoder.decode(None))
        except (av.error.FFmpegError, ValueError):
            tail = []
        self.audio_frames += len(tail)
        for audio in tail:
            self._resample(audio, chunks)
        for chunk in self._resampler.resample(None):
            if chunk.samples:
                chunks.append(self._chunk(chunk))

    def _chunk(self, chunk: av.AudioFrame) -> PcmChunk:
        pcm = bytes(chunk.planes[0])[: chunk.samples * 4]
        position = self._position
        self._position += chunk.samples / SAMPLE_RATE
        return PcmChunk(pcm, position)


def _new_resampler() -> Resampler:
    return Resampler()
