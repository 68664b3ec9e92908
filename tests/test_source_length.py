"""A source's length is what it is, or unknown: never FFmpeg's guess from a bitrate (an
Ogg track from a server without byte ranges, see ``audio_engine.sources.length``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol import EventType

from .support.consumer import SocketConsumer
from .support.media import write_vorbis_tone

pytestmark = pytest.mark.timeout(120)


async def test_an_ogg_track_without_byte_ranges_has_no_guessed_length(
        engine: EngineProcess, media_server: MediaServer, media_dir: Path) -> None:
    # 30 s at a fraction of the declared 160 kb/s: estimated from that, about 6 s.
    write_vorbis_tone(media_dir / "vorbis30.ogg", 440.0, 30.0, nominal_bit_rate=160_000)
    ranged = media_server.url("vorbis30.ogg")
    plain = media_server.url("vorbis30.ogg", ranges=0)
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as api, \
            SocketConsumer(engine.socket_path) as consumer:
        lengths = [(await api.get("/metadata", params={"url": url})).json()["duration"]
                   for url in (ranged, plain, str(media_dir / "vorbis30.ogg"))]
        assert lengths == [pytest.approx(30.0, abs=0.1), 0, pytest.approx(30.0, abs=0.1)]

        for session, url in (("len-ranged", ranged), ("len-plain", plain)):
            await api.post(f"/session/{session}/play", json={"url": url, "format": "opus"})
        ready = {session: await consumer.wait_event(session, EventType.READY, timeout=20)
                 for session in ("len-ranged", "len-plain")}
        assert ready["len-ranged"].extra["duration"] == pytest.approx(30.0, abs=0.1)
        assert "duration" not in ready["len-plain"].extra  # unknown: not announced
        views = {session: (await api.get(f"/sessions/{session}")).json()
                 for session in ready}
        assert views["len-plain"]["duration"] == 0 and views["len-plain"]["retries"] == 0
        assert views["len-ranged"]["duration"] == pytest.approx(30.0, abs=0.1)
        for session in ready:
            await api.post(f"/session/{session}/stop")
