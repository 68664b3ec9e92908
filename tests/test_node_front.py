"""The Node front's view of the engine: a consumer that behaves like it
(tests/support/node_consumer.py) against the real engine process.

Each test runs twice: on a quiet engine with an idle consumer, and on an engine
whose loop stalls (50 ms after every 10th tick, so late ticks are caught up back
to back) with a consumer whose own loop is busy half of the time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess

from .support.hooks import hook_env
from .support.media import decode_opus_packets, dominant_frequency, write_opus_tone
from .support.node_consumer import LoopLoad, NodeConsumer, PlayFailed, SessionRecord

pytestmark = [pytest.mark.timeout(240), pytest.mark.realtime]

#: 100 distinct tones 20 Hz apart: a spectrum tells every track from its neighbours.
TRACKS = 100
TRACK_SECONDS = 3.0
LONG_SECONDS = 20.0


def tone_of(index: int) -> float:
    return 300.0 + 20.0 * index


@pytest.fixture(scope="module")
def tracks(media_dir: Path) -> list[Path]:
    """Short passthrough tracks (48 kHz Ogg Opus), one tone each, and one long one."""
    folder = media_dir / "node-tones"
    folder.mkdir(exist_ok=True)
    paths = [write_opus_tone(folder / f"t{i}.ogg", tone_of(i), TRACK_SECONDS, serial=i + 1)
             for i in range(TRACKS)]
    write_opus_tone(folder / "long.ogg", 500.0, LONG_SECONDS, serial=999)
    return paths


@pytest.fixture(scope="module")
def stalling_engine(media_dir: Path) -> Iterator[EngineProcess]:
    """An engine whose event loop is kept busy 50 ms after every 10th tick."""
    settings = hook_env(loop_stall_ms=50, loop_stall_every=10)
    with EngineProcess(settings, media_dir=media_dir, allow_private=True,
                       log_level="INFO") as process:
        yield process


@pytest.fixture(params=["quiet", "loaded"])
async def node(request: pytest.FixtureRequest, engine: EngineProcess
               ) -> AsyncIterator[NodeConsumer]:
    if request.param == "quiet":
        target, load = engine, LoopLoad()
    else:
        target = request.getfixturevalue("stalling_engine")
        load = LoopLoad(busy_ms=10.0, idle_ms=10.0, seed=7)
    async with NodeConsumer(target.socket_path, target.url, load=load) as consumer:
        yield consumer


def _tones(records: list[SessionRecord]) -> list[float]:
    """Dominant frequency of the last second of each stream (off the loop)."""
    out = []
    for record in records:
        assert record.stream is not None
        out.append(dominant_frequency(decode_opus_packets(record.stream.packets[-50:])[0]))
    return out


async def test_a_hundred_plays_at_once_are_all_audible(node: NodeConsumer,
                                                       tracks: list[Path]) -> None:
    plays = [(f"hundred-{i}", str(path)) for i, path in enumerate(tracks)]
    results = await node.play_many(plays)
    failed = [r for r in results if not isinstance(r, SessionRecord)]
    assert not failed, (len(failed), failed[:3])
    ids = [sid for sid, _ in plays]
    await node.wait_ended(ids, within=90)
    assert node.violations == []
    records = [node.records[sid] for sid in ids]
    silent = [r.session_id for r in records if not r.audible]
    assert silent == [], f"{len(silent)} silent tracks, e.g. {silent[:5]}"
    assert [r.finished_reason for r in records] == ["end"] * TRACKS
    for record in records:
        assert record.stream is not None
        # Every 20 ms page of the track reached the stream: nothing was dropped.
        assert record.dropped_packets == 0, record.session_id
        assert len(record.stream.packets) == int(TRACK_SECONDS * 50), record.session_id
    heard = await asyncio.to_thread(_tones, records)
    wrong = [(i, round(f)) for i, f in enumerate(heard) if abs(f - tone_of(i)) > 4]
    assert wrong == []


async def test_an_error_never_precedes_the_play_reply(node: NodeConsumer, tracks: list[Path],
                                                      media_dir: Path,
                                                      media_server: MediaServer) -> None:
    long = tracks[0].parent / "long.ogg"
    playing = [(f"err-ok-{i}", str(long)) for i in range(10)]
    ok = await node.play_many(playing)
    assert all(isinstance(r, SessionRecord) for r in ok)
    for round_ in range(3):
        failing = [(f"err-file-{round_}-{i}", str(media_dir / f"absent-{i}.ogg"))
                   for i in range(10)]
        failing += [(f"err-404-{round_}-{i}", media_server.url(f"absent-{i}.ogg"))
                    for i in range(10)]
        results = await node.play_many(failing)
        assert all(isinstance(r, PlayFailed) for r in results), results
        assert node.violations == []
        for sid, _ in failing:
            record = node.records[sid]
            assert record.reply_status == 200
            assert record.error and record.error_at is not None
            assert record.reply_at is not None and record.error_at >= record.reply_at
            assert record.stream is None
    await node.stop_many([sid for sid, _ in playing])
    await node.wait_ended([sid for sid, _ in playing], within=20)
    assert node.violations == []
    assert {node.records[sid].finished_reason for sid, _ in playing} == {"stopped"}


async def test_a_stop_never_finishes_before_its_reply(node: NodeConsumer,
                                                      tracks: list[Path]) -> None:
    long = tracks[0].parent / "long.ogg"
    for round_ in range(2):
        plays = [(f"stop-{round_}-{i}", str(long)) for i in range(25)]
        results = await node.play_many(plays)
        assert all(isinstance(r, SessionRecord) for r in results)
        ids = [sid for sid, _ in plays]
        await node.stop_many(ids)
        await node.wait_ended(ids, within=20)
        assert node.violations == []
        for sid in ids:
            record = node.records[sid]
            assert record.finished_reason == "stopped"
            assert record.finished_at is not None and record.stop_reply_at is not None
            assert record.finished_at >= record.stop_reply_at
            assert record.error is None


def test_the_strict_demuxer_gives_nothing_without_the_header_pages(tmp_path: Path) -> None:
    from .support.node_consumer import StrictOggDemuxer

    data = write_opus_tone(tmp_path / "x.ogg", 440.0, 0.5).read_bytes()
    pages = data.split(b"OggS")[1:]
    whole = StrictOggDemuxer()
    for page in pages:
        whole.feed(b"OggS" + page)
    assert whole.audible and len(whole.packets) == 25
    late = StrictOggDemuxer()
    for page in pages[2:]:  # joined after the OpusHead and OpusTags pages
        late.feed(b"OggS" + page)
    assert late.dead and not late.audible and late.packets == []
    assert np.isfinite(dominant_frequency(decode_opus_packets(whole.packets)[0]))
