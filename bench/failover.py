"""Failover time of a gateway's node pool (printed tables, never asserted).

Three engine processes on loopback TCP (token in the hello), a gateway runtime in
this process with sessions spread over them, each playing its own tone. Then,
``--kills`` times: SIGKILL the node with the most sessions, measure for every
session it had

* failover: from the kill to the first audio frame of the session's new stream
  on another node (what the gateway's pool adds up: noticing, placing, the new
  engine's open and first frames);
* gap: from the last frame heard from the dead node to that first new frame
  (what a listener hears as silence);

then start the engine again on the same ports and wait until the pool has it
back, before the next kill. Sessions stay where they moved to; each kill picks
the fullest node.

Run: .venv/bin/python bench/failover.py [--kills 20] [--sessions 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.player import Enqueue, PlayerStatus, Track
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from gateway.sinks import OpusSink
from loadtest.processes import EngineProcess
from loadtest.stats import format_table, summarize
from protocol import OggOpusWriter, OpusStreamStart

TOKEN = "bench-failover"
TRACK_SECONDS = 600.0


class _Sink(OpusSink):
    def __init__(self) -> None:
        super().__init__(capacity=100_000)
        self.count = 0
        self.last_at = 0.0
        #: Arrival time of the first frame of each new Ogg stream (a play).
        self.stream_first: list[float] = []
        self._new_stream = False

    def frame_ready(self, frame: bytes) -> None:
        now = time.monotonic()
        if self._new_stream:
            self._new_stream = False
            self.stream_first.append(now)
        self.count += 1
        self.last_at = now

    def stream_started(self, start: OpusStreamStart) -> None:
        self._new_stream = True


def _tone(path: Path, frequency: float, seconds: float, serial: int) -> Path:
    """A 48 kHz Ogg Opus tone (passthrough for the engines: the bench measures
    failover, not transcoding)."""
    from audio_engine.audio.codec import OpuslibEncoder
    from protocol import PCM_FRAME_BYTES, SAMPLES_PER_FRAME

    if path.exists():
        return path
    encoder = OpuslibEncoder(64_000, 0)
    writer = OggOpusWriter(serial)
    frames = int(seconds * 48_000) // SAMPLES_PER_FRAME
    period = np.arange(SAMPLES_PER_FRAME * 50)  # one second, repeated
    wave = (0.5 * 32767 * np.sin(2 * np.pi * frequency * period / 48_000)).astype("<i2")
    second = np.repeat(wave, 2).tobytes()
    pages = [writer.header_pages]
    for frame in range(frames):
        offset = (frame % 50) * PCM_FRAME_BYTES
        pages.append(writer.audio_page(encoder.encode(second[offset:offset + PCM_FRAME_BYTES]),
                                       eos=frame == frames - 1))
    path.write_bytes(b"".join(pages))
    return path


async def _wait(predicate: object, seconds: float) -> None:
    assert callable(predicate)
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.01)


async def run(kills: int, sessions: int, media: Path) -> tuple[list[float], list[float],
                                                                list[int]]:
    tones = [_tone(media / f"failover{i}.ogg", 300.0 + 40 * i, TRACK_SECONDS, i + 1)
             for i in range(sessions)]
    engines = [EngineProcess(media_dir=media, node_token=TOKEN, log_level="WARNING").start()
               for _ in range(3)]
    failover: list[float] = []
    gaps: list[float] = []
    moved_per_kill: list[int] = []
    try:
        nodes = json.dumps([{"name": name, "api": e.url, "socket":
                             f"tcp://127.0.0.1:{e.tcp_port}", "token": TOKEN}
                            for name, e in zip("abc", engines, strict=True)])
        gateway = Gateway(GatewaySettings(nodes=nodes, queue_db=":memory:", port=0,  # type: ignore[call-arg]
                                          engine_check_interval=0.5))
        await gateway.start()
        pool = gateway.pool
        assert pool is not None
        try:
            await _wait(lambda: all(n.up for n in pool.nodes), 30)
            sinks: dict[str, _Sink] = {}
            for index, path in enumerate(tones):
                key = f"fo-{index}"
                sinks[key] = _Sink()
                gateway.router.register_sink(key, sinks[key])
                player = gateway.players.get(key)
                await player.apply(Enqueue(Track(str(path), title=path.name,
                                                 duration=TRACK_SECONDS)))
            await _wait(lambda: all(gateway.players.get(k).view().status
                                    is PlayerStatus.PLAYING and s.count > 50
                                    for k, s in sinks.items()), 60)
            for kill in range(kills):
                victim = max(pool.nodes, key=lambda n: len(pool.sessions_on(n)))
                index = pool.nodes.index(victim)
                keys = pool.sessions_on(victim)
                streams = {k: len(sinks[k].stream_first) for k in keys}
                await asyncio.sleep(1.0)
                last_heard = {k: sinks[k].last_at for k in keys}
                killed_at = time.monotonic()
                engines[index].kill()
                await _wait(lambda ks=keys, st=streams: all(  # type: ignore[misc]
                    len(sinks[k].stream_first) > st[k] for k in ks), 30)
                for key in keys:
                    first = sinks[key].stream_first[streams[key]]
                    failover.append(first - killed_at)
                    gaps.append(first - last_heard[key])
                moved_per_kill.append(len(keys))
                print(f"\r  kill {kill + 1}/{kills}: {len(keys)} sessions moved, worst "
                      f"{max(failover[-len(keys):]) * 1000:.0f} ms", end="", file=sys.stderr,
                      flush=True)
                old = engines[index]
                engines[index] = await asyncio.to_thread(EngineProcess(
                    port=old.port, socket_path=old.socket_path, media_dir=media,
                    node_token=TOKEN, tcp_port=old.tcp_port, log_level="WARNING").start)
                await _wait(lambda v=victim: v.up, 30)
            print(file=sys.stderr)
        finally:
            await gateway.stop()
    finally:
        for engine in engines:
            engine.terminate()
    return failover, gaps, moved_per_kill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=15)
    parser.add_argument("--media-dir",
                        default=str(Path(tempfile.gettempdir()) / "audiogate-bench"))
    args = parser.parse_args()
    media = Path(args.media_dir)
    media.mkdir(parents=True, exist_ok=True)
    failover, gaps, moved = asyncio.run(run(args.kills, args.sessions, media))
    rows = []
    for label, values in (("kill -> first audio on the new node", failover),
                          ("last audio heard -> first new audio (the gap)", gaps)):
        s = summarize(values).scaled(1000)
        rows.append((label, s.count, f"{s.median:.0f}", f"{s.p95:.0f}", f"{s.p99:.0f}",
                     f"{s.max:.0f}"))
    print(f"\n{len(moved)} kills (SIGKILL), {sum(moved)} sessions moved "
          f"({min(moved)}-{max(moved)} per kill), {args.sessions} sessions on 3 engines\n")
    print(format_table(["ms", "sessions", "p50", "p95", "p99", "max"], rows))


if __name__ == "__main__":
    main()
