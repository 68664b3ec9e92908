"""Lavalink's encoded track: the base64 string a client stores and sends back to play.

The format is lavaplayer's ``MessageOutput`` message holding one ``AudioTrackInfo``
(``DefaultAudioPlayerManager.encodeTrack``), all integers big-endian::

    int32   header: flags << 30 | size of the message that follows (30 bits)
            flag 1 (TRACK_INFO_VERSIONED): the message starts with a version byte
    uint8   version                        (only with flag 1; 1 without it)
    utf     title                          (utf = uint16 byte count + modified UTF-8)
    utf     author
    int64   length in milliseconds         (Long.MAX_VALUE for a stream)
    utf     identifier
    bool    isStream                       (one byte, non-zero is true)
    bool+utf uri                           (version >= 2; false means null)
    bool+utf artworkUrl                    (version >= 3)
    bool+utf isrc                          (version >= 3)
    utf     sourceName
    ...     the source manager's own fields ("details")
    int64   position in milliseconds

Lavalink v4 writes version 3. The source manager's fields are opaque here: ``http`` and
``local`` write one utf (the container probe, ``mp3`` or ``mpegts|...``), lavaplayer's other
sources nothing, plugins whatever they like. Since the position is always the message's
last eight bytes, we keep the details as the bytes between the source name and the
position, so any track (a plugin's too) survives ``decode_track``/``encode_track``
byte for byte. Like lavaplayer we read exactly one message and ignore bytes after it.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Final

from protocol.lavalink.errors import InvalidEncodedTrack, TrackEncodeError
from protocol.lavalink.mutf8 import MAX_UTF_LENGTH, decode_modified_utf8, encode_modified_utf8

__all__ = [
    "CURRENT_TRACK_VERSION",
    "MAX_ENCODED_TRACK_LENGTH",
    "STREAM_LENGTH",
    "DecodedTrack",
    "decode_track",
    "decode_track_bytes",
    "encode_track",
    "encode_track_bytes",
    "probe_details",
]

#: The version Lavalink v4 writes (lavaplayer's ``TRACK_INFO_VERSION``).
CURRENT_TRACK_VERSION: Final = 3
#: The ``length`` of a live stream: Java's ``Long.MAX_VALUE`` (``Units.DURATION_MS_UNKNOWN``).
STREAM_LENGTH: Final = 2**63 - 1
#: Longest base64 string ``decode_track`` accepts. Eight text fields of at most 64 KiB
#: each make a real track far smaller; 1 MiB bounds the work a client can ask of a
#: ``/v4/decodetracks`` call per track.
MAX_ENCODED_TRACK_LENGTH: Final = 1 << 20

_VERSIONED: Final = 1
_SIZE_MASK: Final = 0x3FFF_FFFF
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
#: Sources whose details are one utf string: the media container probe's name.
_PROBE_SOURCES: Final = frozenset({"http", "local"})


@dataclass(frozen=True, slots=True)
class DecodedTrack:
    """The fields of one encoded track (names as in Lavalink's ``TrackInfo`` JSON).

    ``details`` are the source manager's own bytes between ``source_name`` and
    ``position`` (see the module docstring); ``version`` is the format version it was
    read with and is written with (1, 2 or 3; fields a version lacks must be None).

    Raises:
        TrackEncodeError: on building, if a field cannot be written in *version*.
    """

    title: str
    author: str
    length: int
    identifier: str
    is_stream: bool
    uri: str | None
    artwork_url: str | None
    isrc: str | None
    source_name: str
    position: int = 0
    details: bytes = b""
    version: int = CURRENT_TRACK_VERSION

    def __post_init__(self) -> None:
        if not 1 <= self.version <= 255:
            raise TrackEncodeError(f"track version {self.version} is not 1-255")
        for name in ("length", "position"):
            value = getattr(self, name)
            if isinstance(value, bool) or not _INT64_MIN <= value <= _INT64_MAX:
                raise TrackEncodeError(f"{name} {value!r} is not a 64-bit integer")
        if self.version < 2 and self.uri is not None:
            raise TrackEncodeError("a version 1 track has no uri")
        if self.version < 3 and (self.artwork_url is not None or self.isrc is not None):
            raise TrackEncodeError(f"a version {self.version} track has no artworkUrl or isrc")

    @property
    def is_seekable(self) -> bool:
        """What Lavalink reports as ``isSeekable``: every track but a stream."""
        return not self.is_stream

    @property
    def probe_info(self) -> str | None:
        """The container probe of an ``http`` or ``local`` track (``"mp3"``), or None
        for other sources and for details that are not exactly one utf field."""
        if self.source_name not in _PROBE_SOURCES or len(self.details) < 2:
            return None
        (size,) = struct.unpack_from(">H", self.details)
        if len(self.details) != 2 + size:
            return None
        try:
            return decode_modified_utf8(self.details[2:])
        except ValueError:
            return None


def probe_details(probe: str) -> bytes:
    """The ``details`` an ``http`` or ``local`` track carries: its container probe
    (``"mp3"``, ``"mpegts|<parameters>"``...) as one utf field.

    Raises:
        TrackEncodeError: if *probe* is longer than a utf field allows.
    """
    return _utf(probe, "probe")


def encode_track_bytes(track: DecodedTrack) -> bytes:
    """The message bytes (header included) of *track*.

    Raises:
        TrackEncodeError: if a text field is longer than 65535 bytes of modified UTF-8
            or the message exceeds the header's 30-bit size.
    """
    body = bytearray()
    if track.version >= 2:
        body.append(track.version)
    body += _utf(track.title, "title")
    body += _utf(track.author, "author")
    body += struct.pack(">q", track.length)
    body += _utf(track.identifier, "identifier")
    body.append(1 if track.is_stream else 0)
    if track.version >= 2:
        body += _nullable_utf(track.uri, "uri")
    if track.version >= 3:
        body += _nullable_utf(track.artwork_url, "artworkUrl")
        body += _nullable_utf(track.isrc, "isrc")
    body += _utf(track.source_name, "sourceName")
    body += track.details
    body += struct.pack(">q", track.position)
    if len(body) > _SIZE_MASK:
        raise TrackEncodeError(f"track message of {len(body)} bytes exceeds 30 bits")
    flags = _VERSIONED if track.version >= 2 else 0
    return struct.pack(">I", flags << 30 | len(body)) + bytes(body)


def encode_track(track: DecodedTrack) -> str:
    """*track* as Lavalink's base64 string (standard alphabet, padded).

    Raises:
        TrackEncodeError: as ``encode_track_bytes``.
    """
    return base64.b64encode(encode_track_bytes(track)).decode("ascii")


def decode_track(encoded: str) -> DecodedTrack:
    """The track in Lavalink's base64 string *encoded*.

    Padding may be missing (Java's decoder does not require it); whitespace and the
    URL-safe alphabet are refused, as Lavalink refuses them.

    Raises:
        InvalidEncodedTrack: if *encoded* is not base64 or not a valid track message.
    """
    if len(encoded) > MAX_ENCODED_TRACK_LENGTH:
        raise InvalidEncodedTrack(
            f"encoded track of {len(encoded)} characters exceeds {MAX_ENCODED_TRACK_LENGTH}")
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        data = base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidEncodedTrack("encoded track is not valid base64") from exc
    return decode_track_bytes(data)


def decode_track_bytes(data: bytes) -> DecodedTrack:
    """The track in the message bytes *data* (header included; bytes after the
    message are ignored, as lavaplayer ignores them).

    Raises:
        InvalidEncodedTrack: if a field is missing, truncated or malformed.
    """
    if len(data) < 4:
        raise InvalidEncodedTrack("encoded track is shorter than its 4-byte header")
    (header,) = struct.unpack_from(">I", data)
    size = header & _SIZE_MASK
    if size == 0:
        raise InvalidEncodedTrack("encoded track holds no message")
    if len(data) - 4 < size:
        raise InvalidEncodedTrack(
            f"encoded track declares {size} bytes but holds {len(data) - 4}")
    reader = _Reader(data[4:4 + size])
    version = reader.byte("version") if (header >> 30) & _VERSIONED else 1
    title = reader.utf("title")
    author = reader.utf("author")
    length = reader.int64("length")
    identifier = reader.utf("identifier")
    is_stream = reader.boolean("isStream")
    uri = reader.nullable_utf("uri") if version >= 2 else None
    artwork_url = reader.nullable_utf("artworkUrl") if version >= 3 else None
    isrc = reader.nullable_utf("isrc") if version >= 3 else None
    source_name = reader.utf("sourceName")
    details = reader.rest_before_position()
    position = reader.int64("position")
    return DecodedTrack(
        title=title, author=author, length=length, identifier=identifier,
        is_stream=is_stream, uri=uri, artwork_url=artwork_url, isrc=isrc,
        source_name=source_name, position=position, details=details,
        # A versioned message with version byte 0 or 1 reads as version 1, as in
        # lavaplayer; it is written back unversioned.
        version=version if version >= 2 else 1,
    )


def _utf(text: str, field: str) -> bytes:
    try:
        payload = encode_modified_utf8(text)
    except ValueError as exc:
        raise TrackEncodeError(f"{field}: {exc}") from exc
    return struct.pack(">H", len(payload)) + payload


def _nullable_utf(text: str | None, field: str) -> bytes:
    # Java's writeNullableText: false for null, true then the utf otherwise (an empty
    # string stays an empty string, unlike lavalink.py's writer, which nulls it).
    return b"\x00" if text is None else b"\x01" + _utf(text, field)


class _Reader:
    """Reads fields off one message, naming the field in every error."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def _take(self, count: int, field: str) -> bytes:
        end = self._offset + count
        if end > len(self._data):
            raise InvalidEncodedTrack(f"encoded track ends inside {field}")
        chunk = self._data[self._offset:end]
        self._offset = end
        return chunk

    def byte(self, field: str) -> int:
        return self._take(1, field)[0]

    def boolean(self, field: str) -> bool:
        return self._take(1, field)[0] != 0

    def int64(self, field: str) -> int:
        (value,) = struct.unpack(">q", self._take(8, field))
        return int(value)

    def utf(self, field: str) -> str:
        (size,) = struct.unpack(">H", self._take(2, field))
        assert size <= MAX_UTF_LENGTH
        try:
            return decode_modified_utf8(self._take(size, field))
        except ValueError as exc:
            raise InvalidEncodedTrack(f"{field} is not modified UTF-8: {exc}") from exc

    def nullable_utf(self, field: str) -> str | None:
        return self.utf(field) if self.boolean(field) else None

    def rest_before_position(self) -> bytes:
        end = len(self._data) - 8
        if end < self._offset:
            raise InvalidEncodedTrack("encoded track ends inside position")
        chunk = self._data[self._offset:end]
        self._offset = end
        return chunk
