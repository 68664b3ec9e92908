"""Lavalink's encoded track, byte for byte, against lavalink.py's own encoder and decoder.

lavalink.py (devoxin/Lavalink.py) is the Python client that encodes and decodes tracks
itself (``lavalink.encode_track``/``lavalink.decode_track``); wavelink and mafic leave
that to the node. Its strings must decode with ours and ours with it, and a string we
decode must encode back to the same bytes.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import lavalink
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.lavalink import (
    STREAM_LENGTH,
    DecodedTrack,
    InvalidEncodedTrack,
    TrackEncodeError,
    decode_track,
    decode_track_bytes,
    encode_track,
    encode_track_bytes,
    probe_details,
)
from protocol.lavalink.mutf8 import decode_modified_utf8, encode_modified_utf8

#: The example of Lavalink's REST documentation (docs/api/rest.md, "Track Decoding"):
#: a version 2 track written by a real Lavalink node.
DOCS_TRACK = (
    "QAAAjQIAJVJpY2sgQXN0bGV5IC0gTmV2ZXIgR29ubmEgR2l2ZSBZb3UgVXAADlJpY2tBc3RsZXlWRVZPAAAAAAAD"
    "PCAAC2RRdzR3OVdnWGNRAAEAK2h0dHBzOi8vd3d3LnlvdXR1YmUuY29tL3dhdGNoP3Y9ZFF3NHc5V2dYY1EAB3lv"
    "dXR1YmUAAAAAAAAAAA=="
)


def _their_fields(track: DecodedTrack) -> dict[str, Any]:
    """*track* as the dict lavalink.py's ``encode_track`` takes."""
    fields: dict[str, Any] = {
        "title": track.title, "author": track.author, "length": track.length,
        "identifier": track.identifier, "isStream": track.is_stream, "uri": track.uri,
        "sourceName": track.source_name, "position": track.position,
    }
    if track.version >= 3:
        fields |= {"artworkUrl": track.artwork_url, "isrc": track.isrc}
    return fields


def _assert_same(ours: DecodedTrack, theirs: lavalink.AudioTrack) -> None:
    assert theirs.title == ours.title
    assert theirs.author == ours.author
    assert theirs.duration == ours.length
    assert theirs.identifier == ours.identifier
    assert theirs.is_stream == ours.is_stream
    assert theirs.is_seekable == ours.is_seekable
    assert theirs.uri == ours.uri
    assert theirs.source_name == ours.source_name
    # lavalink.py keeps what only the encoded form holds in ``extra``.
    assert theirs.extra["position"] == ours.position
    assert theirs.extra["encoder_version"] == ours.version
    if ours.version >= 3:
        assert theirs.artwork_url == ours.artwork_url
        assert theirs.isrc == ours.isrc


YOUTUBE = DecodedTrack(
    title="Tone at 440 Hz", author="audiogate", length=212_000, identifier="dQw4w9WgXcQ",
    is_stream=False, uri="https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    artwork_url="https://i.ytimg.com/vi/dQw4w9WgXcQ/maxresdefault.jpg", isrc="GBARL9300135",
    source_name="youtube", position=31_500,
)
STREAM = DecodedTrack(
    title="Live radio", author="Somebody", length=STREAM_LENGTH,
    identifier="https://radio.example/stream", is_stream=True,
    uri="https://radio.example/stream", artwork_url=None, isrc=None, source_name="http",
    details=probe_details("mp3"),
)


# -- the documentation's vector ----------------------------------------------------------


def test_the_documented_version_2_track_decodes_to_its_documented_fields() -> None:
    track = decode_track(DOCS_TRACK)
    assert track == DecodedTrack(
        title="Rick Astley - Never Gonna Give You Up", author="RickAstleyVEVO",
        length=212000, identifier="dQw4w9WgXcQ", is_stream=False,
        uri="https://www.youtube.com/watch?v=dQw4w9WgXcQ", artwork_url=None, isrc=None,
        source_name="youtube", position=0, details=b"", version=2,
    )
    assert encode_track(track) == DOCS_TRACK
    _assert_same(track, lavalink.decode_track(DOCS_TRACK))


def test_the_header_is_the_versioned_flag_and_the_message_size() -> None:
    raw = base64.b64decode(DOCS_TRACK)
    (header,) = struct.unpack(">I", raw[:4])
    assert header >> 30 == 1 and header & 0x3FFF_FFFF == len(raw) - 4 == 0x8D
    assert raw[4] == 2  # the version byte


# -- lavalink.py's encoder and decoder -----------------------------------------------------


@pytest.mark.parametrize("track", [YOUTUBE, STREAM], ids=["youtube", "http-stream"])
def test_lavalink_py_and_we_write_the_same_bytes_and_read_each_other(
        track: DecodedTrack) -> None:
    def http_encoder(writer: lavalink.DataWriter, fields: dict[str, Any]) -> None:
        writer.write_utf("mp3")

    version, theirs = lavalink.encode_track(_their_fields(track), {"http": http_encoder})
    assert version == 3
    ours = encode_track(track)
    assert ours == theirs
    assert decode_track(theirs) == track
    decoded = lavalink.decode_track(ours)
    _assert_same(track, decoded)
    if track.source_name == "http":
        assert decoded.extra["source_specific"] == {"probe_info": "mp3"}
        assert decode_track(theirs).probe_info == "mp3"


def test_a_version_2_track_of_lavalink_py_round_trips() -> None:
    track = DecodedTrack(
        title="Old", author="Client", length=1000, identifier="abc", is_stream=False,
        uri=None, artwork_url=None, isrc=None, source_name="soundcloud", version=2)
    version, theirs = lavalink.encode_track(_their_fields(track))
    assert version == 2
    assert decode_track(theirs) == track
    assert encode_track(track) == theirs


def test_a_version_1_track_has_no_flag_no_version_byte_and_no_uri() -> None:
    track = DecodedTrack(
        title="Ancient", author="Node", length=5, identifier="id", is_stream=True,
        uri=None, artwork_url=None, isrc=None, source_name="twitch", position=7, version=1)
    raw = encode_track_bytes(track)
    (header,) = struct.unpack(">I", raw[:4])
    assert header == len(raw) - 4  # flags 0
    assert raw[4:6] == b"\x00\x07"  # straight into the title's length
    assert decode_track_bytes(raw) == track
    # lavaplayer reads version 1 this way; lavalink.py does not (it reads a uri whatever
    # the version), so it cannot read these tracks at all.
    with pytest.raises(struct.error):
        lavalink.decode_track(base64.b64encode(raw).decode())


def test_characters_java_writes_differently_from_utf8() -> None:
    # U+0000 is C0 80 and an emoji two 3-byte surrogates in Java's writeUTF; lavalink.py
    # reads titles and authors as modified UTF-8, so it reads ours back.
    track = YOUTUBE.__class__(**{**_dataclass_fields(YOUTUBE),
                                 "title": "nul\x00 and \U0001f3b5 notes",
                                 "author": "Zoë ☃"})
    raw = encode_track_bytes(track)
    assert b"\xc0\x80" in raw and "\U0001f3b5".encode() not in raw
    assert b"\xed\xa0\xbc\xed\xbe\xb5" in raw  # D83C DFB5, each as three bytes
    decoded = lavalink.decode_track(base64.b64encode(raw).decode())
    assert decoded.title == track.title and decoded.author == track.author
    assert decode_track_bytes(raw) == track


def test_an_emoji_written_as_plain_utf8_by_lavalink_py_is_read() -> None:
    fields = _their_fields(YOUTUBE) | {"title": "\U0001f3b5 song"}
    _, theirs = lavalink.encode_track(fields)
    assert "\U0001f3b5".encode() in base64.b64decode(theirs)
    track = decode_track(theirs)
    assert track.title == "\U0001f3b5 song"
    # Written back the Java way (not byte-identical to lavalink.py's UTF-8 here).
    assert decode_track(encode_track(track)) == track


def _dataclass_fields(track: DecodedTrack) -> dict[str, Any]:
    return {name: getattr(track, name) for name in DecodedTrack.__dataclass_fields__}


# -- what decoding accepts -------------------------------------------------------------------


def test_missing_padding_is_accepted_and_bytes_after_the_message_are_ignored() -> None:
    assert decode_track(DOCS_TRACK.rstrip("=")) == decode_track(DOCS_TRACK)
    raw = base64.b64decode(DOCS_TRACK) + b"trailing"
    assert decode_track_bytes(raw) == decode_track(DOCS_TRACK)


def test_a_plugin_track_keeps_its_source_fields_byte_for_byte() -> None:
    # LavaSrc writes album, artist and preview fields after the source name.
    details = (b"\x01" + struct.pack(">H", 5) + b"Album" + b"\x00\x00\x00\x00\x01")
    track = DecodedTrack(
        title="Song", author="Artist", length=180_000, identifier="4uLU6hMCjMI75M1A2tKUQC",
        is_stream=False, uri="https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC",
        artwork_url=None, isrc="USUM71703861", source_name="spotify", position=0,
        details=details)
    encoded = encode_track(track)
    assert decode_track(encoded) == track
    decoded = lavalink.decode_track(encoded)  # lavalink.py's LavaSrc decoder agrees
    assert decoded.extra["source_specific"]["album_name"] == "Album"
    assert decoded.extra["source_specific"]["is_preview"] is True


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("encoded", "words"), [
    ("not base64!", "not valid base64"),
    ("QUJD\nREVG", "not valid base64"),
    ("QQ==", "shorter than its 4-byte header"),
    (base64.b64encode(b"\x40\x00\x00\x00").decode(), "holds no message"),
    (base64.b64encode(b"\x40\x00\x00\x10\x03").decode(), "declares 16 bytes but holds 1"),
])
def test_garbage_is_refused_with_a_named_error(encoded: str, words: str) -> None:
    with pytest.raises(InvalidEncodedTrack, match=words):
        decode_track(encoded)


def test_a_message_cut_anywhere_names_the_field_it_ends_in() -> None:
    raw = encode_track_bytes(YOUTUBE)
    body = raw[4:]
    seen = set()
    for cut in range(len(body)):
        shortened = struct.pack(">I", 1 << 30 | cut) + body[:cut]
        if cut == 0:
            continue
        with pytest.raises(InvalidEncodedTrack, match="ends inside") as info:
            decode_track_bytes(shortened)
        seen.add(str(info.value).rsplit(" ", 1)[-1])
    assert seen >= {"title", "author", "length", "identifier", "isStream",
                    "uri", "artworkUrl", "isrc", "sourceName", "position"}


def test_malformed_modified_utf8_is_refused() -> None:
    body = b"\x03" + b"\x00\x02\xff\xfe"
    raw = struct.pack(">I", 1 << 30 | len(body)) + body + bytes(20)
    with pytest.raises(InvalidEncodedTrack, match="title is not modified UTF-8"):
        decode_track_bytes(raw)


def test_what_the_format_cannot_carry_is_refused_when_built_or_encoded() -> None:
    with pytest.raises(TrackEncodeError, match="length"):
        DecodedTrack(title="", author="", length=2**63, identifier="", is_stream=False,
                     uri=None, artwork_url=None, isrc=None, source_name="x")
    with pytest.raises(TrackEncodeError, match="no artworkUrl"):
        DecodedTrack(title="", author="", length=0, identifier="", is_stream=False,
                     uri=None, artwork_url="a", isrc=None, source_name="x", version=2)
    with pytest.raises(TrackEncodeError, match="title"):
        encode_track(DecodedTrack(title="é" * 40_000, author="", length=0, identifier="",
                                  is_stream=False, uri=None, artwork_url=None, isrc=None,
                                  source_name="x"))


# -- properties ----------------------------------------------------------------------------

#: Text both codecs spell the same way: no U+0000 and nothing outside the BMP (lavalink.py
#: writes plain UTF-8, and reads some fields as plain UTF-8).
_shared_text = st.text(st.characters(min_codepoint=1, max_codepoint=0xFFFF,
                                     exclude_categories=("Cs",)), max_size=40)
_any_text = st.text(max_size=40)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _tracks(text: st.SearchStrategy[str], *, nonempty_optionals: bool) -> Any:
    optional = st.none() | (text.filter(bool) if nonempty_optionals else text)
    return st.builds(
        DecodedTrack, title=text, author=text, length=_int64.filter(lambda v: v >= 0),
        identifier=text, is_stream=st.booleans(), uri=optional, artwork_url=optional,
        isrc=optional, source_name=text, position=_int64.filter(lambda v: v >= 0))


@settings(max_examples=300, deadline=None)
@given(_tracks(_any_text, nonempty_optionals=False), st.binary(max_size=30))
def test_any_track_round_trips_through_our_codec(track: DecodedTrack, details: bytes) -> None:
    track = DecodedTrack(**(_dataclass_fields(track) | {"details": details}))
    assert decode_track(encode_track(track)) == track


@settings(max_examples=200, deadline=None)
@given(_tracks(_shared_text, nonempty_optionals=True))
def test_any_track_round_trips_through_lavalink_py_byte_for_byte(track: DecodedTrack) -> None:
    _, theirs = lavalink.encode_track(_their_fields(track))
    assert encode_track(track) == theirs
    assert decode_track(theirs) == track
    _assert_same(track, lavalink.decode_track(encode_track(track)))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_track_or_the_named_error(data: bytes) -> None:
    try:
        decode_track_bytes(data)
    except InvalidEncodedTrack:
        pass


@settings(max_examples=300, deadline=None)
@given(_any_text)
def test_modified_utf8_round_trips_any_text(text: str) -> None:
    assert decode_modified_utf8(encode_modified_utf8(text)) == text
