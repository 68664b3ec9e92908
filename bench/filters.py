"""What filters cost: µs per 20 ms frame for each Lavalink filter, and the whole codec
job (decode, resample, filter, Opus encode) with a typical preset against none.

Part 1 runs the demo music (20 s, 48 kHz stereo) through a ``FilterChain`` per filter
set, pushed in 0.5 s blocks as a transcoding refill would, and reports the best of a few
rounds per *output* frame (what the engine pays per 20 ms tick), and the cost over an
identity chain. Two rows measure FFmpeg filters we decided *not* to use (aeval for the
distortion, loudnorm for loudness), for the record.

Part 2 times the whole per-session codec job on the demo mp3 (44.1 kHz): PyAV decode,
resample to 48 kHz s16 in 20 ms frames, the chain, and libopus (opuslib, 128 kb/s,
complexity 10, the engine's defaults), per 20 ms frame, and turns it into sessions per
core. Part 3 times a live change (configure + rewind of 0.5 s, replayed). Part 4 times
the engine's own path, a session ``Program`` (``audio_engine/audio/program.py``) fed by a real
``MediaSource``, per 20 ms frame (mp3 transcoded with and without the preset), and the
one-off CPU of its splices: a live change that takes a passthrough (Opus) session to
transcoding (the redo of 1.3 s of queued frames included) and a gapless join of two Opus
tracks.

Times are the CPU time of the benchmark's thread (``time.thread_time``; every graph
runs single-threaded in the caller), best of a few rounds, so other load on a shared
machine inflates them less than wall-clock time would.

Prints tables, never asserts. Run: .venv/bin/python bench/filters.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from audio_engine.audio.codec import OpuslibEncoder, create_encoder
from audio_engine.audio.filters import FilterChain, Filters, parse_filters, preset
from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.program import Program
from audio_engine.audio.track import Track
from audio_engine.sources.media import MediaSource, SourceOptions
from audio_engine.sources.resolver import MediaTarget
from audiogate.demo import ensure_demo_tracks, render_demo
from loadtest.stats import format_table
from protocol import PCM_FRAME_BYTES, SAMPLE_RATE, SAMPLES_PER_FRAME

BLOCK = SAMPLE_RATE // 2  # samples per push: a 0.5 s transcoding refill

CASES: list[tuple[str, dict[str, object]]] = [
    ("none (identity chain)", {}),
    ("volume 0.8", {"volume": 0.8}),
    ("equalizer, 1 band", {"equalizer": [{"band": 3, "gain": 0.2}]}),
    ("equalizer, 5 bands (bassboost)", preset("bassboost").to_lavalink()),
    ("equalizer, 15 bands", {"equalizer": [{"band": b, "gain": 0.1} for b in range(15)]}),
    ("karaoke", {"karaoke": {}}),
    ("timescale speed 1.25", {"timescale": {"speed": 1.25}}),
    ("timescale pitch 1.25", {"timescale": {"pitch": 1.25}}),
    ("timescale nightcore (1.25, 1.25)", preset("nightcore").to_lavalink()),
    ("tremolo", {"tremolo": {}}),
    ("vibrato", {"vibrato": {}}),
    ("rotation 0.2 Hz", {"rotation": {"rotationHz": 0.2}}),
    ("distortion", {"distortion": {"sinScale": 2.0, "scale": 0.8}}),
    ("channelMix", {"channelMix": {"leftToRight": 0.5, "rightToLeft": 0.5}}),
    ("lowPass", {"lowPass": {}}),
    ("loudness", {"loudness": {}}),
    ("bassboost + loudness", {**preset("bassboost").to_lavalink(), "loudness": {}}),
]


def write_opus_tone(path: Path, frequency: float, seconds: float) -> Path:
    """A 48 kHz stereo Ogg Opus tone (a passthrough source), one frame per page."""
    from protocol import OggOpusWriter

    encoder = OpuslibEncoder(128_000, 10)
    writer = OggOpusWriter(1)
    frames = int(seconds * 50)
    index = np.arange(frames * SAMPLES_PER_FRAME)
    wave = (0.3 * 32767 * np.sin(2 * np.pi * frequency * index / SAMPLE_RATE)).astype("<i2")
    pcm = np.repeat(wave, 2).tobytes()
    pages = [writer.header_pages]
    for frame in range(frames):
        chunk = pcm[frame * PCM_FRAME_BYTES : (frame + 1) * PCM_FRAME_BYTES]
        pages.append(writer.audio_page(encoder.encode(chunk), eos=frame == frames - 1))
    path.write_bytes(b"".join(pages))
    return path


def _pcm(seconds: float) -> bytes:
    samples = render_demo(seconds)
    pcm: bytes = (np.clip(samples, -1, 1) * 32767).astype("<i2").T.reshape(-1).tobytes()
    return pcm


def _chain_cost(filters: Filters, pcm: bytes, rounds: int) -> float:
    """Best µs per output frame over ``rounds`` runs of the whole signal."""
    best = float("inf")
    step = BLOCK * 4
    for _ in range(rounds):
        chain = FilterChain(filters)
        frames = 0
        started = time.thread_time()
        for offset in range(0, len(pcm), step):
            frames += len(chain.push(pcm[offset : offset + step]))
        frames += len(chain.flush())
        best = min(best, (time.thread_time() - started) / frames)
        chain.close()
    return best * 1e6


def _graph_cost(
    build: Callable[[av.filter.Graph, av.filter.FilterContext], av.filter.FilterContext],
    pcm: bytes,
    rounds: int,
) -> float:
    """Best µs per 20 ms of input through a bare FFmpeg graph (float stereo in, out)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32).reshape(-1, 2) / 32768
    best = float("inf")
    for _ in range(rounds):
        graph = av.filter.Graph()
        graph.threads = 1
        source = graph.add_abuffer(
            sample_rate=SAMPLE_RATE,
            format="flt",
            layout="stereo",
            time_base=Fraction(1, SAMPLE_RATE),
        )
        tail = build(graph, source)
        out = graph.add("aformat", "sample_fmts=flt:channel_layouts=stereo:sample_rates=48000")
        tail.link_to(out)
        sink = graph.add("abuffersink")
        out.link_to(sink)
        graph.configure()
        started = time.thread_time()
        for offset in range(0, len(samples), BLOCK):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[offset : offset + BLOCK]).reshape(1, -1),
                format="flt",
                layout="stereo",
            )
            frame.sample_rate = SAMPLE_RATE
            frame.pts = offset
            frame.time_base = Fraction(1, SAMPLE_RATE)
            graph.push(frame)
            while True:
                try:
                    graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    break
        best = min(best, (time.thread_time() - started) / (len(samples) / SAMPLES_PER_FRAME))
    return best * 1e6


def _aeval(graph: av.filter.Graph, source: av.filter.FilterContext) -> av.filter.FilterContext:
    expr = "clip(0.8*sin(val({c})*2)*cos(val({c}))*tan(val({c})),-1,1)"
    node = graph.add("aeval", exprs=f"{expr.format(c=0)}|{expr.format(c=1)}", channel_layout="same")
    source.link_to(node)
    return node


def _loudnorm(graph: av.filter.Graph, source: av.filter.FilterContext) -> av.filter.FilterContext:
    node = graph.add("loudnorm", I="-14", TP="-1", LRA="11")
    back = graph.add("aresample", "48000")
    source.link_to(node)
    node.link_to(back)
    return back


def _codec_job(path: Path, filters: Filters | None, rounds: int) -> float:
    """Best µs per 20 ms frame: decode, resample, filter (if any), encode."""
    best = float("inf")
    for _ in range(rounds):
        job = _CodecJob(filters)
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            started = time.thread_time()
            for audio in container.decode(stream):
                job.decoded(audio)
            job.end()
            best = min(best, (time.thread_time() - started) / job.frames)
    return best * 1e6


class _CodecJob:
    """What a transcoding source does per batch: resample to 20 ms s16 frames, filter
    the batch (0.5 s), encode each frame."""

    def __init__(self, filters: Filters | None) -> None:
        self.encoder = create_encoder("opuslib", 128_000, 10)
        self.chain = FilterChain(filters) if filters is not None else None
        self.resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=SAMPLE_RATE, frame_size=SAMPLES_PER_FRAME
        )
        self.batch: list[bytes] = []
        self.frames = 0

    def decoded(self, audio: av.AudioFrame) -> None:
        for chunk in self.resampler.resample(audio):
            self.batch.append(bytes(chunk.planes[0])[: chunk.samples * 4])
        if len(self.batch) >= BLOCK // SAMPLES_PER_FRAME:
            self._filter_and_encode()

    def end(self) -> None:
        self._filter_and_encode()
        if self.chain is not None:
            self._encode([frame.pcm for frame in self.chain.flush()])

    def _filter_and_encode(self) -> None:
        data = b"".join(self.batch)
        self.batch.clear()
        if self.chain is None:
            self._encode(
                [data[i : i + PCM_FRAME_BYTES] for i in range(0, len(data), PCM_FRAME_BYTES)]
            )
        else:
            self._encode([frame.pcm for frame in self.chain.push(data)])

    def _encode(self, frames: list[bytes]) -> None:
        for pcm in frames:
            self.encoder.encode(pcm.ljust(PCM_FRAME_BYTES, b"\0"))
        self.frames += len(frames)


def _live_change(pcm: bytes, rounds: int) -> tuple[float, float]:
    """ms of CPU for configure + rewind 25 frames + the push that replays them."""
    best_change = best_switch_back = float("inf")
    step = BLOCK * 4
    for _ in range(rounds):
        chain = FilterChain()
        returned = []
        for offset in range(0, 4 * step, step):
            returned += chain.push(pcm[offset : offset + step])
        started = time.thread_time()
        chain.rewind(returned[-25].index)
        chain.configure(parse_filters({**preset("bassboost").to_lavalink(), "loudness": {}}))
        redone = chain.push(pcm[4 * step : 5 * step])
        best_change = min(best_change, time.thread_time() - started)
        started = time.thread_time()
        chain.rewind(redone[-25].index)
        chain.configure(Filters())
        chain.push(pcm[5 * step : 6 * step])
        best_switch_back = min(best_switch_back, time.thread_time() - started)
    return best_change * 1e3, best_switch_back * 1e3


def _open(path: Path, output: OutputFormat) -> MediaSource:
    source = MediaSource(MediaTarget(str(path), title=path.name, is_local=True),
                         SourceOptions(output))
    source.open()
    return source


def _program(output: OutputFormat = OutputFormat.OPUS) -> Program:
    return Program("bench", output, 1, lambda: create_encoder("opuslib", 128_000, 10))


def _program_job(path: Path, filters: Filters, rounds: int) -> float:
    """Best µs per 20 ms frame of a session's program transcoding *path*."""
    best = float("inf")
    for _ in range(rounds):
        source = _open(path, OutputFormat.OPUS)
        program = _program()
        track = Track(None, source, filters, lookahead=program.lookahead, passthrough_ok=True)
        program.start(track)
        frames = 0
        started = time.thread_time()
        while not program.finished:
            packets, at_end = source.read(0.5)
            frames += len(program.produce([(track, packets, at_end)]))
            program.emitted = frames - 1
        best = min(best, (time.thread_time() - started) / frames)
        source.close()
    return best * 1e6


def _splices(opus: Path, rounds: int) -> tuple[float, float]:
    """ms of CPU: a live change of a passthrough session (redo of the ~70 queued frames),
    and a gapless join of two Opus tracks (the boundary job)."""
    typical = parse_filters({**preset("bassboost").to_lavalink(), "loudness": {}})
    best_change = best_join = float("inf")
    for _ in range(rounds):
        source = _open(opus, OutputFormat.OPUS)
        program = _program()
        track = Track(None, source, Filters(), lookahead=program.lookahead,
                      passthrough_ok=True)
        program.start(track)
        made = program.produce([(track, *source.read(2.0))])
        program.emitted = 20
        started = time.thread_time()
        program.set_filters(typical)
        program.restart(28)
        program.produce([])
        best_change = min(best_change, time.thread_time() - started)
        source.close()
        del made
        first, second = _open(opus, OutputFormat.OPUS), _open(opus, OutputFormat.OPUS)
        program = _program()
        a = Track(None, first, Filters(), lookahead=program.lookahead, passthrough_ok=True)
        b = Track("next", second, Filters(), lookahead=program.lookahead, passthrough_ok=True)
        program.start(a)
        program.expect_next = True
        while not a.source_ended:
            program.produce([(a, *first.read(1.0))])
        program.pending = b
        started = time.thread_time()
        program.produce([(b, *second.read(0.5))])
        best_join = min(best_join, time.thread_time() - started)
        first.close()
        second.close()
    return best_change * 1e3, best_join * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pcm = _pcm(args.seconds)

    # Rounds are the outer loop, so a burst of load elsewhere on the machine hits one
    # round of every case rather than every round of one case; the best round counts.
    costs = {name: float("inf") for name, _ in CASES}
    for _ in range(args.rounds):
        for name, data in CASES:
            costs[name] = min(costs[name], _chain_cost(parse_filters(data), pcm, 1))
    identity = costs[CASES[0][0]]
    rows = [
        (name, f"{cost:.0f}", f"{cost - identity:+.0f}", f"{cost / 200:.2f}")
        for name, cost in costs.items()
    ]
    rows.append(
        ("(not used) distortion as FFmpeg aeval", f"{_graph_cost(_aeval, pcm, 1):.0f}", "", "")
    )
    rows.append(("(not used) FFmpeg loudnorm", f"{_graph_cost(_loudnorm, pcm, 1):.0f}", "", ""))
    print(
        f"FilterChain on {args.seconds:g} s of the demo music, pushed in 0.5 s blocks, "
        f"best of {args.rounds}, CPU time of one thread"
    )
    print(format_table(["filters", "us/frame", "vs none", "% of a core"], rows))

    typical = parse_filters({**preset("bassboost").to_lavalink(), "loudness": {}})
    jobs: list[tuple[str, Filters | None]] = [
        ("today's job (no chain)", None),
        ("identity chain", Filters()),
        ("bassboost + loudness", typical),
        ("nightcore", preset("nightcore")),
    ]
    job_costs = {name: float("inf") for name, _ in jobs}
    with tempfile.TemporaryDirectory() as directory:
        mp3 = ensure_demo_tracks(Path(directory))["mp3"]
        for _ in range(args.rounds):
            for name, filters in jobs:
                job_costs[name] = min(job_costs[name], _codec_job(mp3, filters, 1))
    base = job_costs[jobs[0][0]]
    job_rows = [
        (name, f"{cost:.0f}", f"{cost / base:.2f}x", f"{20_000 / cost:.0f}")
        for name, cost in job_costs.items()
    ]
    print()
    print("Codec job per 20 ms frame: mp3 44.1 kHz decode, resample, chain, opuslib 128 kb/s c10")
    print(format_table(["job", "us/frame", "vs today", "sessions per core"], job_rows))

    change, back = _live_change(pcm, args.rounds)
    print()
    print(
        format_table(
            ["live change (rewind 0.5 s + configure + replay)", "ms of CPU"],
            [("none -> bassboost + loudness", f"{change:.1f}"), ("back to none", f"{back:.1f}")],
        )
    )

    with tempfile.TemporaryDirectory() as directory:
        tracks = ensure_demo_tracks(Path(directory))
        mp3 = tracks["mp3"]
        opus = write_opus_tone(Path(directory) / "tone.ogg", 440.0, 8.0)
        program_costs = {"none": float("inf"), "bassboost + loudness": float("inf")}
        for _ in range(args.rounds):
            program_costs["none"] = min(program_costs["none"], _program_job(mp3, Filters(), 1))
            program_costs["bassboost + loudness"] = min(
                program_costs["bassboost + loudness"], _program_job(mp3, typical, 1))
        change_ms, join_ms = _splices(opus, args.rounds)
    print()
    print("The engine's path: a session Program on the demo mp3 (decode, resample, chain, "
          "mix, opuslib 128 kb/s c10, Ogg pages)")
    print(format_table(["program", "us/frame", "sessions per core"], [
        (name, f"{cost:.0f}", f"{20_000 / cost:.0f}") for name, cost in program_costs.items()]))
    print()
    print(format_table(["splice (one-off)", "ms of CPU"], [
        ("live change, passthrough -> bassboost + loudness (1.4 s of frames redone)",
         f"{change_ms:.1f}"),
        ("gapless join of two Opus tracks (boundary batch)", f"{join_ms:.1f}"),
    ]))


if __name__ == "__main__":
    main()
