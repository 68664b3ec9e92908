"""Every row of the HTTP contract (PROTOCOL.md section 1) against the real engine."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtest.media import encode_blocks
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess

from .support.waiting import poll_until

CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "Content-Type",
}


@pytest.fixture
def client(engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30.0) as client:
        yield client


def assert_cors(response: httpx.Response) -> None:
    for name, value in CORS.items():
        assert response.headers.get(name) == value, name


def test_play_answers_at_once_with_the_exact_body(client: httpx.Client,
                                                  media_server: MediaServer) -> None:
    response = client.post("/session/api-play/play",
                           json={"url": media_server.url("a.mp3"), "format": "opus"})
    assert response.status_code == 200
    assert response.content == b'{"status":"playing","session_id":"api-play"}'
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert_cors(response)
    client.post("/session/api-play/stop")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "invalid request: url is required"),
        ({"url": ""}, "invalid request: url is required"),
        ({"url": "   "}, "invalid request: url is required"),
        ({"url": 5}, "invalid request: url must be a string"),
        ({"url": "http://x/a.mp3", "start_at": "30"}, "invalid request: start_at must be a number"),
        ({"url": "http://x/a.mp3", "duration": True}, "invalid request: duration must be a number"),
        ({"url": "http://x/a.mp3", "format": 1}, "invalid request: format must be a string"),
        ([1, 2], "invalid request: body must be a JSON object"),
        ({"url": "ftp://host/a.mp3"}, "invalid request: unsupported URL scheme 'ftp': "
                                      "use an http(s) URL or a local file path"),
        ({"url": "http:///a.mp3"}, "invalid request: url has no host"),
        ({"url": "http://x/a.mp3", "volume": 7}, "invalid request: volume must be 0 to 2"),
    ],
)
def test_play_rejects_bad_bodies_with_400(client: httpx.Client, body: object,
                                          message: str) -> None:
    response = client.post("/session/api-bad/play", content=json.dumps(body))
    assert response.status_code == 400
    assert response.json() == {"status": "error", "session_id": "api-bad", "message": message}
    assert list(response.json()) == ["status", "session_id", "message"]
    assert_cors(response)


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b'{"url": NaN}'])
def test_play_rejects_invalid_json(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/session/api-json/play", content=raw)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["session_id"] == "api-json"
    assert body["message"].startswith("invalid request: body ")


def test_play_refuses_a_body_over_the_limit(client: httpx.Client) -> None:
    big = json.dumps({"url": "http://x/a.mp3", "pad": "x" * 20000})
    response = client.post("/session/api-big/play", content=big)
    assert response.status_code == 413
    assert response.json()["message"] == "invalid request: body is larger than 16384 bytes"


@pytest.mark.parametrize(
    ("session_id", "why"),
    [
        ("x" * 25, "session id must be at most 24 bytes (got 25)"),
        ("a%20b", "session id must not contain spaces (position 1)"),
        ("caf%C3%A9", "session id must be printable ASCII (found a non-ASCII character)"),
    ],
)
def test_invalid_session_ids_are_400_with_the_reason(client: httpx.Client, session_id: str,
                                                     why: str) -> None:
    for path in ("play", "stop", "pause", "resume"):
        response = client.post(f"/session/{session_id}/{path}", json={"url": "http://x/a.mp3"})
        assert response.status_code == 400, path
        assert response.json()["message"] == f"invalid session id: {why}"
    response = client.get(f"/session/{session_id}/status")
    assert response.status_code == 400
    assert response.json()["status"] == "error"


def test_stop_is_200_also_for_unknown_ids(client: httpx.Client) -> None:
    response = client.post("/session/never-seen/stop")
    assert response.status_code == 200
    assert response.content == b'{"status":"stopped","session_id":"never-seen"}'


def test_pause_and_resume_of_unknown_ids_are_404(client: httpx.Client) -> None:
    for action in ("pause", "resume"):
        response = client.post(f"/session/never-seen/{action}")
        assert response.status_code == 404
        assert response.content == (
            b'{"status":"error","session_id":"never-seen","message":"session not found"}'
        )
        assert_cors(response)


def test_pause_is_idempotent_and_resume_a_no_op_when_not_paused(
    client: httpx.Client, media_server: MediaServer
) -> None:
    client.post("/session/api-pr/play", json={"url": media_server.url("a.mp3")})
    poll_until(lambda: client.get("/session/api-pr/status").json()["status"] == "streaming")
    for _ in range(2):
        response = client.post("/session/api-pr/pause")
        assert response.status_code == 200
        assert response.content == b'{"status":"paused","session_id":"api-pr"}'
    # Go's status endpoint keeps saying "streaming" while paused; ours says "paused".
    status = client.get("/session/api-pr/status")
    assert status.content.startswith(b'{"session_id":"api-pr","status":"streaming",')
    assert client.get("/sessions/api-pr").json()["status"] == "paused"
    for _ in range(2):
        response = client.post("/session/api-pr/resume")
        assert response.content == b'{"status":"playing","session_id":"api-pr"}'
    client.post("/session/api-pr/stop")


def test_status_of_unknown_and_known_sessions(client: httpx.Client,
                                              media_server: MediaServer) -> None:
    response = client.get("/session/never-seen/status")
    assert response.status_code == 404
    assert response.content == b'{"session_id":"never-seen","status":"not_found","bytes_sent":0}'
    url = media_server.url("a.mp3")
    client.post("/session/api-st/play", json={"url": url, "format": "opus"})
    body = client.get("/session/api-st/status").json()
    assert list(body) == ["session_id", "status", "bytes_sent", "url"]
    assert body["session_id"] == "api-st" and body["url"] == url
    assert body["status"] in {"extracting", "streaming"}
    client.post("/session/api-st/stop")
    assert client.get("/session/api-st/status").status_code == 404


def test_failed_sessions_stay_queryable_until_stopped(client: httpx.Client) -> None:
    client.post("/session/api-fail/play", json={"url": "http://127.0.0.1:1/none.mp3"})
    poll_until(lambda: client.get("/session/api-fail/status").json()["status"] == "error")
    client.post("/session/api-fail/stop")
    assert client.get("/session/api-fail/status").status_code == 404


def test_status_url_is_escaped_like_go(client: httpx.Client, media_server: MediaServer) -> None:
    url = media_server.url("a.mp3", x="1") + "&y=<2>"
    client.post("/session/api-esc/play", json={"url": url})
    raw = client.get("/session/api-esc/status").content
    assert b"\\u0026y=\\u003c2\\u003e" in raw
    client.post("/session/api-esc/stop")


def test_options_on_any_path_is_204_with_cors_and_no_body(client: httpx.Client) -> None:
    for path in ("/session/x/play", "/health", "/no/such/path"):
        response = client.options(path)
        assert response.status_code == 204
        assert response.content == b""
        assert_cors(response)


GIN_404 = b"404 page not found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/no/such/path"),
        ("POST", "/nothing"),
        ("GET", "/session/x/play"),   # a known path with the wrong method
        ("POST", "/session/x/status"),
        ("POST", "/health"),
        ("DELETE", "/session/x/stop"),
        ("GET", "/session/x/volume"),
    ],
)
def test_unknown_routes_are_gins_plain_text_404(client: httpx.Client, method: str,
                                                path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 404
    assert response.content == GIN_404
    assert response.headers["content-type"] == "text/plain"
    assert "allow" not in response.headers
    assert_cors(response)


def test_go_endpoints_type_their_json_as_gin_does(client: httpx.Client) -> None:
    for response in (
        client.get("/health"),
        client.get("/session/never-seen/status"),
        client.post("/session/never-seen/pause"),
        client.post("/session/never-seen/stop"),
        client.post("/session/api-type/play", content=b"{"),
        client.get("/metadata"),
        client.get("/playlist"),
        client.get("/search"),
    ):
        assert response.headers["content-type"] == "application/json; charset=utf-8"


def test_health_has_go_fields_first(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert list(body)[:5] == [
        "status", "uptime_seconds", "ram_mb", "sessions_active", "sessions_playing"
    ]
    assert body["status"] == "ok"
    assert isinstance(body["uptime_seconds"], int)
    assert re.fullmatch(r"\d+\.\d\d", body["ram_mb"])
    assert isinstance(body["sessions_active"], int) and isinstance(body["sessions_playing"], int)
    assert body["features"] == ["play_id", "volume", "seek", "hello", "finish_reason", "filters",
                                "next_track", "crossfade", "play_now"]
    assert_cors(response)


def test_metadata_of_a_direct_media_url(client: httpx.Client, media_server: MediaServer) -> None:
    url = media_server.url("a.mp3")
    response = client.get("/metadata", params={"url": url})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["url", "title", "duration", "thumbnail", "is_playlist"]
    assert body["url"] == url and body["title"] == "a" and body["is_playlist"] is False
    assert 11.5 < body["duration"] < 12.5


def test_metadata_reads_the_title_tag_of_ogg_opus_files(
    client: httpx.Client, media_server: MediaServer, media_dir: Path
) -> None:
    # Ogg keeps its Vorbis comments on the stream, not the container.
    blocks = [np.zeros((2, 4800), dtype=np.float32)] * 10
    for name in ("tagged.ogg", "tagged.opus"):
        encode_blocks(media_dir / name, blocks, rate=48_000, layout="stereo",
                      container_format="ogg", codec="libopus", title="Ünïcode Sönata")
        for url in (media_server.url(name), str(media_dir / name)):
            body = client.get("/metadata", params={"url": url}).json()
            assert body["title"] == "Ünïcode Sönata", (url, body)


def test_metadata_errors(client: httpx.Client) -> None:
    missing = client.get("/metadata")
    assert missing.status_code == 400
    assert missing.json() == {"url": "", "title": "", "duration": 0, "thumbnail": "",
                              "is_playlist": False, "error": "url is required"}
    # A URL the engine cannot handle is a 400, as the Go engine answers it.
    offline = client.get("/metadata", params={"url": "https://www.youtube.com/watch?v=stubstubstu"})
    assert offline.status_code == 400
    body = offline.json()
    assert list(body) == ["url", "title", "duration", "thumbnail", "is_playlist", "error"]
    assert body["error"].startswith("extraction failed: ")


def test_unplayable_direct_links_are_400_for_metadata_and_playlist(
    client: httpx.Client, media_server: MediaServer
) -> None:
    for url in (media_server.url("missing.mp3"), media_server.url("corrupt.mp3")):
        metadata = client.get("/metadata", params={"url": url})
        assert metadata.status_code == 400, url
        assert metadata.json()["error"]
        playlist = client.get("/playlist", params={"url": url})
        assert playlist.status_code == 400, url
        assert playlist.json()["entries"] is None


def test_playlist_of_a_direct_url_and_errors(client: httpx.Client,
                                             media_server: MediaServer) -> None:
    url = media_server.url("b.mp3")
    body = client.get("/playlist", params={"url": url}).json()
    assert list(body) == ["url", "count", "entries"]
    assert body["count"] == 1
    assert list(body["entries"][0]) == ["url", "title", "duration", "thumbnail"]
    missing = client.get("/playlist")
    assert missing.status_code == 400
    assert missing.json() == {"url": "", "count": 0, "entries": None, "error": "url is required"}
    offline = client.get("/playlist", params={"url": "https://www.youtube.com/playlist?list=PLx"})
    assert offline.status_code == 400
    assert offline.json()["entries"] is None


def test_search_errors_offline(client: httpx.Client) -> None:
    missing = client.get("/search")
    assert missing.status_code == 400
    assert missing.json() == {"query": "", "count": 0, "results": None, "error": "q is required"}
    offline = client.get("/search", params={"q": "lofi beats"})
    assert offline.status_code == 500
    body = offline.json()
    assert list(body) == ["query", "count", "results", "error"]
    assert body["query"] == "lofi beats" and body["results"] is None
    assert body["error"].startswith("extraction failed: ")


def test_operator_endpoints(client: httpx.Client, media_server: MediaServer) -> None:
    client.post("/session/api-op/play", json={"url": media_server.url("long_a.mp3"),
                                              "format": "opus"})
    listed = client.get("/sessions").json()["sessions"]
    mine = next(s for s in listed if s["session_id"] == "api-op")
    assert mine["format"] == "opus" and mine["url"].endswith("long_a.mp3")
    assert client.post("/session/api-op/volume", json={"volume": 0.5}).json() == {
        "status": "ok", "session_id": "api-op", "volume": 0.5}
    assert client.post("/session/api-op/volume", json={"volume": 3}).status_code == 400
    assert client.post("/session/nope/volume", json={"volume": 1}).status_code == 404
    seek = client.post("/session/api-op/seek", json={"position": 10})
    assert seek.status_code == 200 and seek.json()["position"] == 10
    assert client.post("/session/api-op/seek", json={"position": -1}).status_code == 400
    assert client.get("/sessions/api-op").json()["volume"] == 0.5
    client.post("/session/api-op/stop")
    assert client.get("/sessions/api-op").status_code == 404
    assert "audiogate_engine_frames_sent_total" in client.get("/metrics").text
    assert client.get("/docs").status_code == 200
    assert "/session/{session_id}/play" in client.get("/openapi.json").json()["paths"]


def test_session_limit_is_a_429(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer,
) -> None:
    with engine_factory(ENGINE_MAX_SESSIONS="2") as small, httpx.Client(base_url=small.url) as c:
        url = media_server.url("long_a.mp3")
        assert c.post("/session/one/play", json={"url": url}).status_code == 200
        assert c.post("/session/two/play", json={"url": url}).status_code == 200
        refused = c.post("/session/three/play", json={"url": url})
        assert refused.status_code == 429
        assert refused.json() == {"status": "error", "session_id": "three",
                                  "message": "too many sessions: the limit of 2 is reached"}
        # Replacing an existing id is not a new session.
        assert c.post("/session/two/play", json={"url": url}).status_code == 200
        c.post("/session/one/stop")
        assert c.post("/session/three/play", json={"url": url}).status_code == 200
