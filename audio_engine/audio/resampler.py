"""Decoded audio to the engine's sample grid: 48 kHz stereo s16 in 960-sample frames.

PyAV's ``AudioResampler`` runs FFmpeg's ``aformat`` in a filter graph that starts one
thread per core, for nothing: audio filters do not run in slices. With a transcoding
session per resampler that was two idle OS threads per session on two cores (92 for
40 sessions), each a stack and a scheduling entry. This one builds the same graph
(``abuffer`` → ``aformat``, which has FFmpeg insert its ``aresample`` → ``abuffersink``)
with ``threads = 1``: the engine's codec pool is the parallelism.
"""

from __future__ import annotations

from errno import EAGAIN

import av
import av.filter

from protocol import SAMPLE_RATE, SAMPLES_PER_FRAME

__all__ = ["Resampler"]


class Resampler:
    """Converts one source's decoded frames; ``resample(None)`` flushes. Its input is
    fixed by the first frame: a frame of another shape raises ``ValueError`` (the
    caller drains this one and makes a new one). Not thread-safe."""

    def __init__(self) -> None:
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[str, str, int] | None = None

    def _build(self, frame: av.AudioFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        graph.threads = 1
        extra = {"time_base": str(frame.time_base)} if frame.time_base is not None else {}
        source = graph.add("abuffer", sample_rate=str(frame.sample_rate),
                           sample_fmt=frame.format.name, channel_layout=frame.layout.name,
                           **extra)
        convert = graph.add("aformat", sample_rates=str(SAMPLE_RATE), sample_fmts="s16",
                            channel_layouts="stereo")
        sink = graph.add("abuffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        graph.set_audio_frame_size(SAMPLES_PER_FRAME)
        return graph

    def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        """The frames *frame* completes (none to several), or with None the rest.

        Raises:
            ValueError: *frame* has another format, layout or rate than the first.
        """
        if frame is None:
            if self._graph is None:
                return []
        else:
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
            if self._graph is None:
                self._graph = self._build(frame)
                self._shape = shape
            elif shape != self._shape:
                raise ValueError(f"frame of {shape} given to a resampler of {self._shape}")
        graph = self._graph
        assert graph is not None
        graph.push(frame)
        out: list[av.AudioFrame] = []
        while True:
            try:
                pulled = graph.pull()
            except EOFError:
                break
            except av.error.FFmpegError as exc:
                if exc.errno != EAGAIN:
                    raise
                break
            assert isinstance(pulled, av.AudioFrame)
            out.append(pulled)
        return out
