"""Turns a session's encoded frames into complete socket packets, off the loop.

Runs in the same worker-thread job as the conversion, so the clock only moves
finished bytes. For Ogg formats it owns the session's ``OggOpusWriter``: one
page per frame, granule +960, EOS on the last frame of the source.
"""

from __future__ import annotations

from typing import NamedTuple

from audio_engine.ring import Frame
from protocol import OggOpusWriter, encode_packet

__all__ = ["EncodedFrame", "Packager"]


class EncodedFrame(NamedTuple):
    """One 20 ms frame as a source produces it: an Opus packet or PCM bytes,
    its sample count and its media position (seconds)."""

    data: bytes
    samples: int
    position: float


class Packager:
    """Builds ``Frame`` values for one session.

    Not thread-safe; the producer uses it from one job at a time, and rewinds
    it (``writer.rewind``) only between jobs.
    """

    def __init__(self, session_id: str, writer: OggOpusWriter | None) -> None:
        self.session_id = session_id
        self.writer = writer

    def package(self, frames: list[EncodedFrame], at_end: bool) -> list[Frame]:
        """Wrap *frames*; with *at_end*, the last one ends the Ogg stream."""
        out: list[Frame] = []
        writer = self.writer
        session_id = self.session_id
        final = len(frames) - 1 if at_end else -1
        for index, (data, samples, position) in enumerate(frames):
            last = index == final
            if writer is None:
                out.append(Frame(encode_packet(session_id, data), len(data), position, last=last))
                continue
            page = writer.audio_page(data, samples, eos=last)
            out.append(
                Frame(
                    encode_packet(session_id, page),
                    len(page),
                    position,
                    writer.granule_position,
                    writer.next_sequence - 1,
                    last,
                )
            )
        return out
