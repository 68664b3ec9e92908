"""What the Go engine's capture must decode to (tests/vectors/README.md)."""

from __future__ import annotations

from pathlib import Path

from protocol import EventType

CAPTURE_PATH = Path(__file__).parent / "vectors" / "go-engine-capture-1.bin"

EXPECTED_EVENTS = [
    (EventType.READY, "111111111111111111"),
    (EventType.READY, "222222222222222222"),
    (EventType.ERROR, "user-333"),
    (EventType.FINISHED, "111111111111111111"),
    (EventType.FINISHED, "222222222222222222"),
    (EventType.READY, "222222222222222222"),
    (EventType.READY, "444"),
]
EXPECTED_ERROR_MESSAGE = (
    'extraction failed: yt-dlp failed: exit status 1: ERROR: [youtube] stub: "quoted" '
    "{brace}\nsecond line"
)
EXPECTED_PACKETS = {
    "111111111111111111": 93,
    "222222222222222222": 234,
    "444": 88,
}
EXPECTED_PAYLOAD_BYTES = {
    "111111111111111111": 32865,
    "222222222222222222": 120266,
    "444": 471596,
}
OGG_SESSIONS = ("111111111111111111", "222222222222222222")


def capture_bytes() -> bytes:
    return CAPTURE_PATH.read_bytes()
