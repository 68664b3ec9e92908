"""A source's length as FFmpeg reports it, and when not to believe it.

FFmpeg reads an Ogg stream's length from the granule position of its last page,
which needs a seek to the end: over HTTP, a server that answers byte ranges. When
it cannot seek, it estimates the length from the bitrate a codec header declares (a
Vorbis identification header's nominal bitrate) and the file's size, which for
variable-bitrate audio is far off: a 30 s tone that takes a fifth of its nominal
rate is announced as 6 s (the page showed 0:05, and a crossfade planned from that
length would cut the track). No Ogg header carries the length itself, so an Ogg
source that cannot seek has no length we know: it is reported as unknown (0 in the
catalogue, none at the session), never as the guess.

Other containers keep their length in their headers (FLAC's STREAMINFO, an MP3's
Xing or VBRI frame, RIFF sizes), read without a seek; they are left as FFmpeg
reports them.

Used by the sources (``media``) and the resolution workers' probes; av is imported
only when a container is checked, so the workers start without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from av.container import InputContainer

__all__ = ["length_is_a_guess"]

#: FFmpeg's demuxer names whose length comes from the last page only.
_LAST_PAGE_FORMATS = frozenset({"ogg"})


def length_is_a_guess(container: InputContainer, *, is_local: bool) -> bool:
    """Whether the duration *container* reports is only FFmpeg's estimate from a
    bitrate (an Ogg source that cannot seek, see the module docstring).

    It tries a seek to the start: on a source that can seek, the container is then
    at its first packet, as after opening; on one that cannot, the failed seek
    leaves the container unusable: close it (and open it again to read it).
    Local files can always seek, and a container without a duration has nothing
    to doubt: neither is touched.
    """
    if is_local or not container.duration:
        return False
    if not _LAST_PAGE_FORMATS & set(container.format.name.split(",")):
        return False
    import av.error  # here, not at the top: see the module docstring

    try:
        container.seek(0)
    except (av.error.FFmpegError, OSError):
        return True
    return False
