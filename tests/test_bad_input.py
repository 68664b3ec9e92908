"""Hostile and malformed input: a clear 4xx or an error event for that session,
and every other session unaffected."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess
from protocol import EventType

from .support.consumer import SocketConsumer
from .support.starvation import HostCanary, assert_no_gap_of_its_own

pytestmark = pytest.mark.timeout(300)

#: The catalogue endpoints answer yt-dlp failures (always, offline) with the Go
#: engine's documented 500 bodies; everything else must stay below 500.
CATALOGUE = {"/metadata": "error", "/playlist": "error", "/search": "error"}


def test_the_api_survives_schema_fuzzing_and_other_sessions_keep_playing(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    with httpx.Client(base_url=engine.url, timeout=30) as api:
        api.post("/session/fuzz-victim/play", json={"url": media_server.url("long_b.mp3"),
                                                    "format": "opus"})
        schema = schemathesis.openapi.from_dict(api.get("/openapi.json").json())
        seen: dict[str, set[int]] = {}
        for result in schema.get_all_operations():
            _fuzz(result.ok(), engine.url, seen)()
        assert seen["/session/{session_id}/play"] & {400, 413}
        # The victim played on: still streaming, or (on a slow machine, where the
        # fuzzing outlasts its 40 s) ended at its end, never with an error.
        victim = api.get("/sessions/fuzz-victim").json()
        assert victim["status"] in ("streaming", "stopped"), victim
        assert "error" not in victim and victim["position"] > 5.0, victim
        assert api.get("/health").status_code == 200
        api.post("/session/fuzz-victim/stop")


#: Examples per operation: 10 in the suite (every operation's shapes are tried; a run
#: takes seconds), AG_TEST_FUZZ_EXAMPLES=30 or more for a longer search.
EXAMPLES = int(os.environ.get("AG_TEST_FUZZ_EXAMPLES", "10"))


def _fuzz(operation: schemathesis.APIOperation, base_url: str,
          seen: dict[str, set[int]]):  # type: ignore[no-untyped-def]
    """A hypothesis test of one operation: every answer below 500 (but the
    catalogue's documented 500s), JSON, with the CORS header."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def exercise(case: schemathesis.Case) -> None:
        if case.path_parameters and case.path_parameters.get("session_id") == "fuzz-victim":
            return
        response = case.call(base_url=base_url)
        seen.setdefault(operation.path, set()).add(response.status_code)
        assert response.headers.get("access-control-allow-origin") == ["*"]
        if response.status_code >= 500:
            assert operation.path in CATALOGUE, (operation.path, response.text[:200])
            assert CATALOGUE[operation.path] in response.json()
        if operation.path != "/metrics":
            response.json()  # every answer is JSON

    return exercise


def _mp3_with_huge_tags(source: Path, target: Path, size: int) -> None:
    """Prepend an ID3v2.4 tag holding one *size*-byte comment frame."""
    frame_body = b"\x03eng\x00" + b"x" * size
    frame = b"COMM" + _synchsafe(len(frame_body)) + b"\x00\x00" + frame_body
    header = b"ID3\x04\x00\x00" + _synchsafe(len(frame))
    target.write_bytes(header + frame + source.read_bytes())


def _synchsafe(value: int) -> bytes:
    return bytes(((value >> shift) & 0x7F) for shift in (21, 14, 7, 0))


@pytest.mark.realtime
def test_malformed_media_fails_alone(engine: EngineProcess, media_server: MediaServer,
                                     media_dir: Path,
                                     canary: HostCanary) -> None:
    (media_dir / "text.mp3").write_text("this is not audio\n" * 1000)
    webm = media_dir / "d.webm"
    (media_dir / "webm_named.mp3").write_bytes(webm.read_bytes())
    _mp3_with_huge_tags(media_dir / "a.mp3", media_dir / "huge_tags.mp3", 8 * 1024 * 1024)
    (media_dir / "header_only.mp3").write_bytes((media_dir / "a.mp3").read_bytes()[:300])
    expectations = {
        "bad-text": ("text.mp3", "error"),
        "bad-header": ("header_only.mp3", "error"),
        "odd-ext": ("webm_named.mp3", "ready"),
        "huge-tags": ("huge_tags.mp3", "ready"),
    }

    async def run() -> None:
        async with httpx.AsyncClient(base_url=engine.url, timeout=30) as api, \
                SocketConsumer(engine.socket_path) as consumer:
            await api.post("/session/mm-ok/play", json={"url": media_server.url("long_a.mp3"),
                                                        "format": "opus"})
            await consumer.wait_packets("mm-ok", 20)
            started = time.monotonic()
            for sid, (name, _) in expectations.items():
                await api.post(f"/session/{sid}/play", json={"url": media_server.url(name),
                                                             "format": "opus"})
            for sid, (_, outcome) in expectations.items():
                await consumer.wait_for(lambda sid=sid: bool(consumer.events(sid)), 30)
                first = consumer.events(sid)[0]
                assert first.type == EventType(outcome), (sid, first)
                if outcome == "error":
                    assert first.message, sid
            times = [t for t in consumer.audio_page_times("mm-ok") if t > started]
            assert_no_gap_of_its_own(times, canary)
            for sid in [*expectations, "mm-ok"]:
                await api.post(f"/session/{sid}/stop")

    asyncio.run(run())


def test_overlong_ids_urls_and_bodies_are_4xx(engine: EngineProcess) -> None:
    with httpx.Client(base_url=engine.url) as api:
        assert api.post("/session/" + "9" * 200 + "/play", json={"url": "http://x/a.mp3"}
                        ).status_code == 400
        long_url = "http://example.com/" + "a" * 5000 + ".mp3"
        response = api.post("/session/ok-id/play", json={"url": long_url})
        assert response.status_code == 400
        assert response.json()["message"] == "invalid request: url is longer than 4096 characters"
        assert api.post("/session/ok-id/play", content=b"{" + b" " * 100_000 + b"}"
                        ).status_code == 413
        assert api.get("/metadata", params={"url": long_url}).status_code == 400
        assert api.get("/search", params={"q": "q" * 600}).status_code == 400


# -- the WebSocket protocol --------------------------------------------------------


@pytest.fixture(scope="module")
def playground(engine: EngineProcess) -> Iterator[GatewayProcess]:
    # Each example below starts from a fresh identity (a room of its own); this one
    # test address may mint them (hypothesis replays examples too) beyond the default ration.
    with GatewayProcess(engine, {"GATEWAY_PLAYGROUND_NEW_IDENTITIES": "10000"}) as gateway:
        yield gateway


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=10,
)
messages = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(
        ["play", "add", "seek", "volume", "remove", "jump", "search", "stop", "skip", "x"])},
        optional={"url": st.text(max_size=50), "seconds": json_values,
                  "volume": json_values, "position": json_values, "query": json_values,
                  "extra": json_values}).map(json.dumps),
    st.binary(max_size=100),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(batch=st.lists(messages, min_size=1, max_size=8))
def test_any_websocket_messages_get_answers_and_keep_the_connection(
    playground: GatewayProcess, batch: list[str | bytes]
) -> None:
    with httpx.Client(base_url=playground.url) as web:
        cookie = web.get("/").cookies["ag_user"]
    url = playground.url.replace("http", "ws") + "/ws"
    with connect(url, additional_headers={"Cookie": f"ag_user={cookie}"},
                 open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        for message in batch:
            ws.send(message)
        ws.send('{"type": "stop"}')
        ws.send('{"type": "state"}')
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            raw = ws.recv(timeout=15)
            if isinstance(raw, bytes):
                continue
            reply = json.loads(raw)
            assert reply["type"] in {"error", "state", "queued", "event", "progress",
                                     "stream", "search_results", "ping", "engine", "output"}
            if reply["type"] == "state" and reply["state"]["status"] == "idle":
                break
        else:
            pytest.fail("no final state")
    assert httpx.get(playground.url + "/health").json()["status"] == "ok"
