"""The engine's timing contract (docs/protocol.md, "Timing") seen from plain socket
readers: Go-style consumers get wall-clock margins (between a reply and the
``error`` or ``finished`` it causes, between ``ready`` and the first audio; a
``ready`` waits only for its reply), consumers that said ``"order":"any"`` get none,
and one Go-style consumer governs every write.

The engine here runs with 300 ms margins, so that what is measured (arrival
times at a reader on a loaded machine) stays far from what is asserted: a
margin must show as at least 200 ms, its absence as under 150 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from audio_engine.wire.ordering import HeldLines, ReplyGate, TimingPolicy
from audio_engine.wire.pressure import CpuPressure
from gateway.socket_client import HELLO
from loadtest.processes import EngineProcess
from protocol import ConsumerOrder, EventType, Hello, parse_hello

from .support.consumer import SocketConsumer
from .support.waiting import poll_until_async

pytestmark = [pytest.mark.timeout(120), pytest.mark.realtime]

MARGIN = 0.300
SHOWS_MARGIN = 0.200
NO_MARGIN = 0.150
GATEWAY_HELLO = Hello("test-gateway", ConsumerOrder.ANY)


@pytest.fixture(scope="module")
def slow_engine(media_dir: Path) -> Iterator[EngineProcess]:
    settings = {"ENGINE_FIRST_AUDIO_MARGIN_MS": "300", "ENGINE_EVENT_MARGIN_MS": "300"}
    with EngineProcess(settings, media_dir=media_dir, allow_private=True,
                       log_level="INFO") as process:
        yield process


@pytest.fixture
async def api(slow_engine: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=slow_engine.url, timeout=30.0) as client:
        yield client


async def _consumers(api: httpx.AsyncClient) -> tuple[int, int]:
    health = (await api.get("/health")).json()
    return health["consumers"], health["consumers_any_order"]


async def _settled(api: httpx.AsyncClient, total: int, any_order: int) -> None:
    async def seen() -> bool:
        return await _consumers(api) == (total, any_order)

    await poll_until_async(seen, timeout=10)


async def _play(api: httpx.AsyncClient, session_id: str, path: Path) -> float:
    response = await api.post(f"/session/{session_id}/play",
                              json={"url": str(path), "format": "opus"})
    assert response.status_code == 200
    return time.monotonic()


def _ready_to_audio(consumer: SocketConsumer, session_id: str) -> float:
    ready = consumer.event_arrival(session_id, EventType.READY)
    audio = consumer.first_audio_arrival(session_id)
    # The header pages come first, in the first audio packet.
    assert audio.message.payload.startswith(b"OggS")  # type: ignore[union-attr]
    return audio.at - ready.at


async def test_a_go_style_consumer_gets_both_margins(api: httpx.AsyncClient,
                                                     slow_engine: EngineProcess,
                                                     media_dir: Path) -> None:
    async with SocketConsumer(slow_engine.socket_path) as go:
        await _settled(api, 1, 0)
        replied = await _play(api, "tc-go", media_dir / "e.ogg")
        await go.wait_packets("tc-go", 5)
        # ready waits for the reply only (the Node front subscribes to a session's
        # events before it plays; what it must not get early is the audio).
        assert go.event_arrival("tc-go", EventType.READY).at - replied < NO_MARGIN
        assert _ready_to_audio(go, "tc-go") >= SHOWS_MARGIN
        response = await api.post("/session/tc-go/stop")
        stopped = time.monotonic()
        assert response.status_code == 200
        finished = await go.wait_event("tc-go", EventType.FINISHED)
        assert finished.extra["reason"] == "stopped"
        assert go.event_arrival("tc-go", EventType.FINISHED).at - stopped >= SHOWS_MARGIN


async def test_a_consumer_that_takes_any_order_gets_no_margin(api: httpx.AsyncClient,
                                                              slow_engine: EngineProcess,
                                                              media_dir: Path) -> None:
    async with SocketConsumer(slow_engine.socket_path, hello=GATEWAY_HELLO) as ours:
        await _settled(api, 1, 1)
        assert "audiogate_engine_consumers_any_order 1.0" in (await api.get("/metrics")).text
        await _play(api, "tc-any", media_dir / "e.ogg")
        await ours.wait_packets("tc-any", 5)
        # The first audio shares ready's write.
        assert _ready_to_audio(ours, "tc-any") < NO_MARGIN
        # Still never before the reply: the events wait for it to be written.
        await api.post("/session/tc-any/stop")
        stopped = time.monotonic()
        await ours.wait_event("tc-any", EventType.FINISHED)
        assert ours.event_arrival("tc-any", EventType.FINISHED).at - stopped < NO_MARGIN


async def test_one_go_style_consumer_governs_every_write(api: httpx.AsyncClient,
                                                         slow_engine: EngineProcess,
                                                         media_dir: Path) -> None:
    async with SocketConsumer(slow_engine.socket_path, hello=GATEWAY_HELLO) as ours, \
            SocketConsumer(slow_engine.socket_path) as go:
        await _settled(api, 2, 1)
        await _play(api, "tc-both", media_dir / "e.ogg")
        await ours.wait_packets("tc-both", 5)
        await go.wait_packets("tc-both", 5)
        assert _ready_to_audio(ours, "tc-both") >= SHOWS_MARGIN
        assert _ready_to_audio(go, "tc-both") >= SHOWS_MARGIN
        await api.post("/session/tc-both/stop")
    # Once the Go-style consumer has gone, the margins go with it.
    async with SocketConsumer(slow_engine.socket_path, hello=GATEWAY_HELLO) as ours:
        await _settled(api, 1, 1)
        await _play(api, "tc-after", media_dir / "e.ogg")
        await ours.wait_packets("tc-after", 5)
        assert _ready_to_audio(ours, "tc-after") < NO_MARGIN
        await api.post("/session/tc-after/stop")


async def test_an_invalid_hello_leaves_the_consumer_go_style(api: httpx.AsyncClient,
                                                             slow_engine: EngineProcess,
                                                             media_dir: Path) -> None:
    _, writer = await asyncio.open_unix_connection(str(slow_engine.socket_path))
    try:
        writer.write(b'{"type":"hello","client":"","order":"any"}\n')
        await writer.drain()
        async with SocketConsumer(slow_engine.socket_path, hello=GATEWAY_HELLO) as ours:
            await _settled(api, 2, 1)
            await _play(api, "tc-bad", media_dir / "e.ogg")
            await ours.wait_packets("tc-bad", 5)
            assert _ready_to_audio(ours, "tc-bad") >= SHOWS_MARGIN
            await api.post("/session/tc-bad/stop")
    finally:
        writer.close()


def test_the_gateway_says_it_takes_any_order() -> None:
    assert parse_hello(HELLO).any_order


# -- the pure rules (audio_engine/wire/ordering.py) ---------------------------------------


def test_a_gate_opens_at_release_plus_margin_or_at_its_timeout() -> None:
    gate = ReplyGate(now=10.0, timeout=2.0)
    assert not gate.is_open(11.9)
    gate.release(10.5 + 0.06)
    assert gate.released and not gate.is_open(10.55) and gate.is_open(10.56)
    gate.release(99.0)  # a second release never delays it
    assert gate.is_open(10.56) and not gate.expired(10.56)
    forgotten = ReplyGate(now=10.0, timeout=2.0)
    assert forgotten.is_open(12.0) and forgotten.expired(12.0)


def test_held_lines_keep_each_ids_order_and_never_block_other_ids() -> None:
    held = HeldLines()
    stop_gate = ReplyGate(now=0.0)
    held.add("a", b"finished-a\n", stop_gate)
    held.add("a", b"ready-a\n", None)
    held.add("b", b"finished-b\n", None)
    assert held.holds("a") and held.holds("b") and len(held) == 3
    assert held.due(1.0) == ([b"finished-b\n"], 0)
    assert held.holds("a") and not held.holds("b")
    stop_gate.release(1.5)
    assert held.due(1.4) == ([], 0)
    assert held.due(1.5) == ([b"finished-a\n", b"ready-a\n"], 0)
    assert len(held) == 0
    held.add("c", b"error-c\n", ReplyGate(now=0.0, timeout=2.0))
    assert held.due(2.0) == ([b"error-c\n"], 1)
    held.add("d", b"x\n", ReplyGate(now=0.0))
    assert held.drain() == [b"x\n"] and len(held) == 0


def test_the_policy_applies_margins_only_to_go_style_consumers() -> None:
    policy = TimingPolicy(event_margin=0.06, first_audio_margin=0.08)
    assert policy.event_delay(go_style=True) == 0.06
    assert policy.event_delay(go_style=False) == 0.0
    assert policy.audio_delay(go_style=True) == 0.08
    assert policy.audio_delay(go_style=False) is None


def test_the_margins_stretch_with_the_hosts_cpu_pressure() -> None:
    shares = iter([0.0, 0.5])
    policy = TimingPolicy(event_margin=0.06, first_audio_margin=0.08,
                          pressure=lambda: next(shares))
    assert policy.audio_delay(go_style=True) == pytest.approx(0.08)
    assert policy.event_delay(go_style=True) == pytest.approx(0.06 * 3)
    # An any-order consumer needs no margin, however busy the host.
    assert TimingPolicy(first_audio_margin=0.08, pressure=lambda: 1.0).audio_delay(
        go_style=False) is None


def test_cpu_pressure_is_the_largest_share_of_its_window(tmp_path: Path) -> None:
    psi = tmp_path / "cpu"
    now = [0.0]

    def write(total_us: int) -> None:
        psi.write_text(f"some avg10=0.00 avg60=0.00 avg300=0.00 total={total_us}\n"
                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")

    pressure = CpuPressure(psi, interval=0.1, window=0.3, clock=lambda: now[0])
    write(1_000_000)
    assert pressure.share() == 0.0  # a first reading has nothing to compare with
    now[0], _ = 0.1, write(1_050_000)  # 50 ms of waiting in 100 ms
    assert pressure.share() == pytest.approx(0.5)
    now[0] = 0.15  # not due: the last answer stands, the file is not read
    write(1_060_000)
    assert pressure.share() == pytest.approx(0.5)
    now[0] = 0.2
    assert pressure.share() == pytest.approx(0.5)  # 0.1 now, 0.5 still in the window
    for step in (0.35, 0.5, 0.65):
        now[0] = step
        pressure.share()
    assert pressure.share() == 0.0  # the burst has left the window
    psi.unlink()
    now[0] = 0.6
    assert pressure.share() == 0.0  # no PSI on this host: configured margins


def test_cpu_pressure_without_psi_is_zero(tmp_path: Path) -> None:
    assert CpuPressure(tmp_path / "absent").share() == 0.0
