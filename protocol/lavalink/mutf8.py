"""Java's modified UTF-8, the string format of ``DataOutput.writeUTF``.

Lavalink writes every text field of an encoded track with ``writeUTF``: a big-endian
unsigned 16-bit byte count, then the string's UTF-16 code units one by one, each as
one, two or three bytes. It differs from UTF-8 in two ways: U+0000 is the two bytes
``C0 80``, and a character outside the Basic Multilingual Plane is its two surrogates
encoded separately (six bytes, not four).

Decoding follows ``DataInputStream.readUTF``, with one leniency: a four-byte UTF-8
sequence, which Java refuses, is read as the character it encodes. The Python client
lavalink.py writes plain UTF-8, so a track it encoded with an emoji in the title would
otherwise be unreadable; we read it (and write it back the Java way).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_UTF_LENGTH", "decode_modified_utf8", "encode_modified_utf8"]

#: ``writeUTF`` stores the byte count in an unsigned short.
MAX_UTF_LENGTH: Final = 0xFFFF


def encode_modified_utf8(text: str) -> bytes:
    """*text* as ``writeUTF``'s payload (without the length prefix).

    Raises:
        ValueError: if the result is longer than 65535 bytes.
    """
    out = bytearray()
    for char in text:
        code = ord(char)
        if code > 0xFFFF:  # two UTF-16 surrogates, three bytes each
            code -= 0x10000
            units: tuple[int, ...] = (0xD800 | (code >> 10), 0xDC00 | (code & 0x3FF))
        else:
            units = (code,)
        for unit in units:
            if 0x0001 <= unit <= 0x007F:
                out.append(unit)
            elif unit <= 0x07FF:  # U+0000 lands here: C0 80
                out += bytes((0xC0 | (unit >> 6), 0x80 | (unit & 0x3F)))
            else:
                out += bytes((0xE0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3F),
                              0x80 | (unit & 0x3F)))
    if len(out) > MAX_UTF_LENGTH:
        raise ValueError(f"string of {len(out)} bytes exceeds writeUTF's {MAX_UTF_LENGTH}")
    return bytes(out)


def decode_modified_utf8(data: bytes) -> str:
    """The string whose ``writeUTF`` payload is *data* (no length prefix).

    Surrogate pairs are joined into one character; a lone surrogate is kept as it is
    (Java strings may hold one).

    Raises:
        ValueError: on a malformed sequence, naming its byte offset.
    """
    units: list[int] = []
    index = 0
    size = len(data)
    while index < size:
        lead = data[index]
        if lead < 0x80:
            units.append(lead)
            index += 1
        elif 0xC0 <= lead < 0xE0:
            if index + 1 >= size or data[index + 1] & 0xC0 != 0x80:
                raise ValueError(f"malformed two-byte sequence at byte {index}")
            units.append(((lead & 0x1F) << 6) | (data[index + 1] & 0x3F))
            index += 2
        elif 0xE0 <= lead < 0xF0:
            if index + 2 >= size or data[index + 1] & 0xC0 != 0x80 \
                    or data[index + 2] & 0xC0 != 0x80:
                raise ValueError(f"malformed three-byte sequence at byte {index}")
            units.append(((lead & 0x0F) << 12) | ((data[index + 1] & 0x3F) << 6)
                         | (data[index + 2] & 0x3F))
            index += 3
        elif 0xF0 <= lead <= 0xF4:  # plain UTF-8 (lavalink.py), see the module docstring
            sequence = data[index:index + 4]
            try:
                char = sequence.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"malformed four-byte sequence at byte {index}") from exc
            code = ord(char) - 0x10000
            units += (0xD800 | (code >> 10), 0xDC00 | (code & 0x3FF))
            index += 4
        else:
            raise ValueError(f"byte {lead:#04x} at {index} starts no character")
    return _join_surrogates(units)


def _join_surrogates(units: list[int]) -> str:
    chars: list[str] = []
    index = 0
    while index < len(units):
        unit = units[index]
        if 0xD800 <= unit <= 0xDBFF and index + 1 < len(units) \
                and 0xDC00 <= units[index + 1] <= 0xDFFF:
            chars.append(chr(0x10000 + ((unit - 0xD800) << 10) + (units[index + 1] - 0xDC00)))
            index += 2
        else:
            chars.append(chr(unit))
            index += 1
    return "".join(chars)
