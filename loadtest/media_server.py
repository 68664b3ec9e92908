"""An HTTP media server on 127.0.0.1 for load and fault tests: Range requests and
injected faults.

Faults are chosen per request with query parameters, so one server serves every
test:

* ``drop_after=N``: the first response for this URL is cut (connection closed)
  after N body bytes; later requests are served whole, so a client that reopens
  and seeks gets the rest;
* ``drop_every=N``: the file breaks every N bytes: the first response to reach
  each multiple of N is cut there, later ones go on to the next multiple (a
  source that keeps breaking, a little further each time it is reopened);
* ``stall_after=N``: after N body bytes the response stops sending but keeps the
  connection open, until the client leaves or the server stops;
* ``status=CODE``: answer with that HTTP error;
* ``redirect=URL``: answer ``302 Found`` to *URL* (chains: a redirect to a URL
  that redirects again);
* ``type=MIME``: send this Content-Type instead of the one the suffix implies;
* ``ranges=0``: no byte ranges, as plain or streaming servers: a ``Range`` header
  is ignored (the whole file, ``200``) and no ``Accept-Ranges`` is sent;
* ``endless=1``: an HTML page that never ends, sent as fast as the client reads;
* ``drip=N``: an HTML page that never ends, N bytes per second (never idle long
  enough for a read timeout).

The path of an ``endless``, ``drip`` or ``redirect`` request need not exist.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["MediaServer"]

_CONTENT_TYPES = {
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".webm": "audio/webm",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class MediaServer:
    """Serves the files of *root*; use as a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self._dropped: set[str] = set()
        #: Per path: the furthest offset at which drop_every has cut a response.
        self._cut_at: dict[str, int] = {}
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                name = urllib.parse.unquote(parsed.path.lstrip("/"))
                server.requests.append((name, self.headers.get("Range")))
                if "status" in query:
                    self.send_error(int(query["status"]))
                    return
                if "redirect" in query:
                    self.send_response(HTTPStatus.FOUND)
                    self.send_header("Location", query["redirect"])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "endless" in query or "drip" in query:
                    self._endless(body, float(query.get("drip", 0)))
                    return
                path = (server.root / name).resolve()
                if server.root.resolve() not in path.parents or not path.is_file():
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                size = path.stat().st_size
                start, end = 0, size - 1
                ranges = query.get("ranges") != "0"
                match = _RANGE.fullmatch(self.headers.get("Range", "")) if ranges else None
                if match:
                    if match[1]:
                        start = int(match[1])
                        end = min(int(match[2]), size - 1) if match[2] else size - 1
                    elif match[2]:
                        start = max(0, size - int(match[2]))
                    if start >= size:
                        self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(HTTPStatus.PARTIAL_CONTENT)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(HTTPStatus.OK)
                if ranges:
                    self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", query.get("type") or _CONTENT_TYPES.get(
                    path.suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if not body:
                    return
                length = end - start + 1
                limit = length
                if "drop_after" in query and self.path not in server._dropped:
                    server._dropped.add(self.path)
                    limit = min(limit, max(0, int(query["drop_after"]) - start))
                if "drop_every" in query:
                    every = int(query["drop_every"])
                    boundary = max(server._cut_at.get(self.path, 0) + every,
                                   (start // every + 1) * every)
                    if boundary <= end:
                        server._cut_at[self.path] = boundary
                        limit = min(limit, boundary - start)
                stall = int(query["stall_after"]) if "stall_after" in query else None
                if stall is not None:
                    limit = min(limit, max(0, stall - start))
                try:
                    self.wfile.flush()
                    with path.open("rb") as media:
                        # The kernel copies the file: hundreds of concurrent
                        # streams cost this process almost nothing.
                        sent = 0
                        while sent < limit:
                            count = self.connection.sendfile(media, start + sent, limit - sent)
                            if not count:
                                break
                            sent += count
                    if stall is not None and limit < length:
                        server._stop.wait(60)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if limit < length:
                    self.close_connection = True

            def _endless(self, body: bool, rate: float) -> None:
                """A page with no end: as fast as possible, or *rate* bytes/s."""
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.close_connection = True
                if not body:
                    return
                filler = b"<p>" + b"x" * 65_530 + b"</p>\n"
                try:
                    self.wfile.write(b"<html><head><title>endless</title></head><body>")
                    while not server._stop.is_set():
                        if rate > 0:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            server._stop.wait(1.0 / rate)
                        else:
                            self.wfile.write(filler)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            # A burst of hundreds of opens must not overflow the accept queue
            # (the default of 5 turns a burst into 1 s SYN retransmits).
            request_queue_size = 1024

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, name: str, **query: object) -> str:
        """The URL of *name*, with fault parameters."""
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return f"http://127.0.0.1:{self.port}/{urllib.parse.quote(name)}{suffix}"

    def __enter__(self) -> MediaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
