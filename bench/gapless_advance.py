"""What a listener hears between two queued tracks through the gateway's player:
gapless joins (our engine's next track) against plain plays (what a Go engine gets).

Starts our engine, embeds the gateway, and plays queues of two tones (2 s each, 48 kHz
Ogg Opus, as local files and over HTTP from a loopback media server) on one key per
round, recording at the sink when each 20 ms frame arrives. Per round: frames received
(200 is every frame of both tracks), the longest silence between two frames around the
boundary (wall clock at the sink), the new Ogg streams the sink saw after the first
frame and the play requests the gateway sent. Printed, never asserted.

Run: .venv/bin/python bench/gapless_advance.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.engine_client import EngineCapabilities, Feature
from gateway.player import Enqueue, PlayerStatus, Stop, Track
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from gateway.sinks import OpusSink
from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from loadtest.stats import format_table
from protocol import OpusStreamStart


class _Timed(OpusSink):
    def __init__(self) -> None:
        super().__init__(capacity=100_000)
        self.times: list[float] = []
        #: Ogg streams that began after the first frame (a new stream mid-queue).
        self.new_streams = 0

    def frame_ready(self, frame: bytes) -> None:
        self.times.append(time.monotonic())

    def stream_started(self, start: OpusStreamStart) -> None:
        if self.times:
            self.new_streams += 1


async def _round(gateway: Gateway, key: str, tones: tuple[str, str]) -> dict[str, Any]:
    sink = _Timed()
    gateway.router.register_sink(key, sink)
    plays: list[str] = []
    original = gateway.engine.play

    async def counted(session_id: str, url: str, **kwargs: Any) -> Any:
        if session_id == key:
            plays.append(url)
        return await original(session_id, url, **kwargs)

    gateway.engine.play = counted  # type: ignore[method-assign]
    player = gateway.players.get(key)
    tracks = [Track(url, title=f"t{index}", duration=2.0) for index, url in enumerate(tones)]

    await player.apply(Enqueue(tracks[0], tuple(tracks[1:])))
    async with asyncio.timeout(30):
        while not (player.view().history and player.view().status is PlayerStatus.IDLE):
            await asyncio.sleep(0.05)
    gateway.engine.play = original  # type: ignore[method-assign]
    times = sink.times
    # The boundary: 2 s of frames in (the first track's length), +- 0.5 s.
    middle = [b - a for a, b in itertools.pairwise(times[75:126])]
    return {"frames": len(times), "gap_ms": max(middle, default=0.0) * 1000,
            "streams": sink.new_streams, "plays": len(plays)}


async def _case(engine: EngineProcess, tones: tuple[str, str], rounds: int,
                gapless: bool) -> list[dict[str, Any]]:
    settings = GatewaySettings(go_api_port=engine.port, socket_path=engine.socket_path,
                               queue_db=":memory:", port=0)  # type: ignore[call-arg]
    gateway = Gateway(settings)
    await gateway.start()
    try:
        async with asyncio.timeout(20):
            await gateway.socket.connected.wait()
            while not gateway.link.discovered:
                await asyncio.sleep(0.02)
        if not gapless:
            features = gateway.link.capabilities.features - {Feature.NEXT_TRACK.value}
            gateway.link.capabilities = EngineCapabilities(frozenset(features))
        results = []
        for n in range(rounds):
            results.append(await _round(gateway, f"bench-{int(gapless)}-{n}", tones))
        return results
    finally:
        await gateway.apply(Stop(), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    media = Path(tempfile.mkdtemp(prefix="ag-bench-gap-"))
    write_tone(media / "a.ogg", 440.0, 2.0)
    write_tone(media / "b.ogg", 660.0, 2.0)
    rows = []
    with EngineProcess(media_dir=media, allow_private=True, log_level="WARNING") as engine, \
            MediaServer(media) as server:
        for source, tones in (("file", (str(media / "a.ogg"), str(media / "b.ogg"))),
                              ("http", (server.url("a.ogg"), server.url("b.ogg")))):
            for gapless in (True, False):
                results = asyncio.run(_case(engine, tones, args.rounds, gapless))
                gaps = [r["gap_ms"] for r in results]
                rows.append((
                    source,
                    "gapless join (next_track)" if gapless else "plain play (no next_track)",
                    f"{statistics.median(r['frames'] for r in results):.0f}",
                    f"{statistics.median(gaps):.0f}", f"{max(gaps):.0f}",
                    f"{statistics.median(r['streams'] for r in results):.0f}",
                    f"{statistics.median(r['plays'] for r in results):.0f}",
                ))
    print(f"Two 2 s tones queued, {args.rounds} rounds per case (medians; max gap over rounds)")
    print(format_table(["source", "advance", "frames (of 200)", "gap ms", "max gap ms",
                        "new streams", "play requests"], rows))


if __name__ == "__main__":
    main()
