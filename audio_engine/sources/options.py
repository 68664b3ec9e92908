"""FFmpeg's options for opening a media source, in one place: the engine's
sources (``source.py``) and the resolution workers' probes use the same ones.

Every name is one of FFmpeg's own options: PyAV passes unknown ones on and
FFmpeg ignores them silently (``max_index_size`` was such a name for the seek
index; the real one is ``indexmem``). ``tests/test_hostile.py`` checks that each
one took effect.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LOCAL_FORMATS", "MAX_REDIRECTS", "NETWORK_PROTOCOLS", "media_options"]

#: Demuxers a local file may use: plain audio containers. Playlist and
#: concatenation demuxers (hls, concat, ...) would open other files or URLs.
LOCAL_FORMATS = ("aac,aiff,ape,asf,au,caf,flac,matroska,webm,mov,mp4,m4a,mp3,ogg,wav,"
                 "w64,wv,tta,mpc,mpc8,ac3,eac3,dts,amr,mpegts,mpeg,flv,avi,rm,voc,xwma,"
                 "aax,dsf,iff")
#: Protocols FFmpeg may use for a network source: HTTP(S) through the egress
#: proxy (httpproxy makes its CONNECT tunnels). No file, no data, no crypto.
NETWORK_PROTOCOLS = "http,https,tls,tcp,httpproxy"
#: Redirects FFmpeg follows per request (each one is checked by the proxy).
MAX_REDIRECTS = 5


def media_options(*, is_local: bool, proxy: str | None, headers: Mapping[str, str],
                  open_timeout: float, read_timeout: float,
                  index_bytes: int) -> dict[str, str]:
    """FFmpeg's options for opening a media source (shared with ``source.py``).

    Every name here is one of FFmpeg's own options: PyAV ignores unknown ones
    silently (``max_index_size`` was such a name; the real one is ``indexmem``).
    """
    options = {
        # The seek index grows by one entry per packet read for the whole
        # session; a small cap keeps a playing session's memory flat (FFmpeg
        # thins the index instead of growing it; seeking still works).
        "indexmem": str(index_bytes),
    }
    if is_local:
        options["protocol_whitelist"] = "file"
        options["format_whitelist"] = LOCAL_FORMATS
        return options
    options["protocol_whitelist"] = NETWORK_PROTOCOLS
    options["max_redirects"] = str(MAX_REDIRECTS)
    if proxy is not None:
        options["http_proxy"] = proxy
    # FFmpeg's own protocol timeouts (microseconds), not PyAV's timeout=
    # argument: that one installs a Python interrupt callback that takes the
    # GIL on every network read, which with hundreds of sessions turns
    # demuxing into a fight for the GIL.
    options["rw_timeout"] = str(int(read_timeout * 1_000_000))
    options["timeout"] = str(int(open_timeout * 1_000_000))
    if headers:
        options["headers"] = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
    return options
