"""The Lavalink face's pure parts, without processes: a worker's routing of voice
sessions' event lines away from the socket batch, its voice players' bookkeeping, and
the track loader's mapping of what yt-dlp and the probes say to Lavalink tracks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from audio_engine.cluster.voice import VoicePlayers, VoiceRouting
from audio_engine.lavalink.loader import _direct_track, _page_track, play_url
from protocol import Event, EventType, encode_event_line, encode_packet
from protocol.lavalink import STREAM_LENGTH, DecodedTrack, probe_details


class Link:
    """What the routing passes on to (the worker's channel to the front), recorded."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[bytes], list[bytes], int, tuple[str, ...]]] = []
        self.lines: list[bytes] = []
        self.casts: list[tuple[str, tuple[Any, ...]]] = []

    @property
    def go_style_connected(self) -> bool:
        return True

    def broadcast(self, parts: list[bytes], events: list[bytes], audio_packets: int, *,
                  announced: Sequence[str] = (),
                  headers: Sequence[tuple[str, bytes]] = ()) -> float | None:
        self.batches.append((parts, events, audio_packets, tuple(announced)))
        return None

    def send_event(self, line: bytes) -> None:
        self.lines.append(line)

    def forget(self, session_id: str) -> None:
        pass

    def cast(self, method: str, *args: Any) -> None:
        self.casts.append((method, args))


def _line(kind: EventType, session_id: str, play: int) -> bytes:
    return encode_event_line(Event(kind, session_id, extra={"play": play}))


def test_a_voice_sessions_lines_go_to_the_front_and_never_into_the_socket_batch() -> None:
    link = Link()
    voices = VoicePlayers(link)
    routing = VoiceRouting(link, voices)
    voices.sink("111")  # a Lavalink player's guild
    go_ready, voice_ready = _line(EventType.READY, "222", 1), _line(EventType.READY, "111", 2)
    packet = encode_packet("222", b"\x00" * 10)
    parts = [go_ready, voice_ready, packet]
    routing.broadcast(parts, [go_ready, voice_ready], 1, announced=["222", "111"])
    assert link.batches == [([go_ready, packet], [go_ready], 1, ("222", "111"))]
    assert link.casts == [("voice_event", (json.loads(voice_ready),))]
    # A tick with nothing but a voice session's line sends no batch...
    link.batches.clear()
    assert routing.broadcast([voice_ready], [voice_ready], 0) is None
    assert link.batches == []
    # ...unless a ready in it waits for the front's word that it was written.
    routing.broadcast([voice_ready], [voice_ready], 0, announced=["111"])
    assert link.batches == [([], [], 0, ("111",))]
    # Lines outside a tick too.
    finished = _line(EventType.FINISHED, "111", 2)
    routing.send_event(finished)
    routing.send_event(go_ready)
    assert link.lines == [go_ready]
    assert link.casts[-1] == ("voice_event", (json.loads(finished),))


async def test_a_closed_players_late_lines_stay_voice_lines_until_a_socket_play() -> None:
    link = Link()
    voices = VoicePlayers(link)
    routing = VoiceRouting(link, voices)
    voices.sink("111")
    await voices.close("111")
    assert voices.owns("111") and voices.snapshots() == {}
    routing.send_event(_line(EventType.FINISHED, "111", 2))  # the stop's, after the close
    assert link.lines == [] and len(link.casts) == 1
    voices.disown("111")  # a Go play on the guild, once the player is gone
    routing.send_event(_line(EventType.READY, "111", 3))
    assert len(link.lines) == 1
    # Without any voice session, lines are not even parsed.
    assert not voices.any


def test_a_player_without_a_connection_holds_its_frames() -> None:
    voices = VoicePlayers(Link())
    player = voices.sink("111")
    assert player.ready is False and player.send_opus(b"\xf8\xff\xfe") is False
    assert voices.snapshots()["111"].connected is False
    assert voices.snapshots()["111"].ping_ms == -1


def test_tracks_from_what_ytdlp_and_the_probes_say() -> None:
    youtube = _page_track({"id": "dQw4w9WgXcQ", "url": "dQw4w9WgXcQ", "title": "Song",
                           "duration": 212.0, "uploader": "Someone",
                           "thumbnail": "https://i.ytimg.com/x.jpg",
                           "extractor": "Youtube"})
    assert (youtube.source_name, youtube.identifier, youtube.length, youtube.uri) == (
        "youtube", "dQw4w9WgXcQ", 212_000, "https://www.youtube.com/watch?v=dQw4w9WgXcQ")
    assert youtube.artwork_url == "https://i.ytimg.com/x.jpg" and youtube.details == b""
    live = _page_track({"url": "https://soundcloud.com/a/b", "title": "Live"})
    assert (live.source_name, live.length, live.is_stream) == ("soundcloud", STREAM_LENGTH,
                                                                True)
    other = _page_track({"url": "https://example.org/page", "title": "x", "duration": 3})
    assert other.source_name == "ytdlp" and other.author == "Unknown artist"
    enclosure = _page_track({"url": "https://example.org/ep1.ogg", "title": "Ep 1",
                             "duration": 60})
    assert enclosure.source_name == "http" and enclosure.probe_info == "ogg"
    local = _direct_track("/srv/music/a.flac", {"title": "", "author": "", "duration": 5},
                          local=True)
    assert (local.source_name, local.title, local.probe_info) == ("local", "Unknown title",
                                                                  "flac")


def test_what_the_engine_opens_for_a_track() -> None:
    def track(source: str, identifier: str, uri: str | None) -> DecodedTrack:
        return DecodedTrack(title="t", author="a", length=1, identifier=identifier,
                            is_stream=False, uri=uri, artwork_url=None, isrc=None,
                            source_name=source, details=probe_details("mp3")
                            if source in ("http", "local") else b"")

    assert play_url(track("local", "/m/a.mp3", "/m/a.mp3")) == "/m/a.mp3"
    assert play_url(track("youtube", "abc", None)) == "https://www.youtube.com/watch?v=abc"
    assert play_url(track("http", "https://x/a.mp3", "https://x/a.mp3")) == "https://x/a.mp3"
    assert play_url(track("spotify", "id", "https://open.spotify.com/track/id")) == \
        "https://open.spotify.com/track/id"
    assert play_url(track("deezer", "123", None)) is None
