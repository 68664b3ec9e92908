"""The HTTP of the egress proxy, without I/O: parse what a client asks a proxy,
and the heads the proxy sends on (RFC 9110 section 7.6, RFC 9112 section 3.2).

Two kinds of request reach an HTTP proxy:

* ``CONNECT host:port`` (HTTPS, and anything tunnelled): the proxy checks the
  destination, answers ``200`` and relays bytes both ways;
* a request in absolute form, ``GET http://host:port/path HTTP/1.1`` (plain
  HTTP): the proxy checks the destination, sends the request on in origin form
  (``GET /path``) and relays the response.

The proxy handles one request per client connection: every head it sends on
says ``Connection: close`` (both ways), so a client never reuses a connection
for a second request, possibly to another host, that the proxy would not see.
Saying it in the *response* matters too: FFmpeg 8 asks for ``Connection: close``
but, when a server then closes without announcing it, it still sends its next
range request on the dead connection and takes the failure for the end of the
file (an Ogg source over HTTP stopped after its first second that way).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "MAX_HEAD_BYTES",
    "Destination",
    "HeadError",
    "ProxyRequest",
    "forward_head",
    "parse_request_head",
    "proxy_response",
    "rewrite_response_head",
]

#: Largest request or response head accepted (request line or status line and
#: headers). Real heads are a few hundred bytes; cookies rarely pass 8 KB.
MAX_HEAD_BYTES = 32 * 1024

#: Hop-by-hop headers (RFC 9110 section 7.6.1) the proxy consumes or replaces.
#: Transfer-Encoding is kept: the proxy relays bodies as they are, unframed.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authorization", "proxy-authenticate",
    "proxy-connection", "te", "trailer", "upgrade",
})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class HeadError(Exception):
    """The peer sent a head the proxy cannot use; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a proxied request goes."""

    host: str
    port: int
    #: Origin-form target of a plain HTTP request ("" for CONNECT).
    path: str = ""


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """A parsed request head."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header *name* (case-insensitive), if present."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def token(self) -> str | None:
        """The credential of ``Proxy-Authorization: Basic``: the user name, or
        the password when the user name is empty."""
        value = self.header("proxy-authorization")
        if value is None:
            return None
        scheme, _, encoded = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        user = urllib.parse.unquote(user)
        return user or urllib.parse.unquote(password) or None

    def destination(self) -> Destination:
        """Where this request asks to go.

        Raises:
            HeadError: not CONNECT and not an absolute ``http://`` URL, or no
                usable host and port.
        """
        if self.method == "CONNECT":
            host, sep, port_text = self.target.rpartition(":")
            host = host.removeprefix("[").removesuffix("]")
            if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise HeadError("CONNECT needs host:port")
            return Destination(host, int(port_text))
        parsed = urllib.parse.urlsplit(self.target)
        if parsed.scheme.lower() != "http":
            raise HeadError("only http:// URLs are forwarded; use CONNECT for others")
        try:
            port = parsed.port or 80
        except ValueError as exc:
            raise HeadError("invalid port") from exc
        if not parsed.hostname:
            raise HeadError("the URL has no host")
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        return Destination(parsed.hostname, port, path)


def _split_head(data: bytes) -> list[str]:
    if len(data) > MAX_HEAD_BYTES:
        raise HeadError("head too large")
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
        raise HeadError("head is not text") from exc
    lines = text.split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise HeadError("empty head")
    return lines


def _parse_headers(lines: list[str]) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or any(c not in _TOKEN_CHARS for c in name):
            raise HeadError("malformed header line")
        headers.append((name, value.strip()))
    return tuple(headers)


def parse_request_head(data: bytes) -> ProxyRequest:
    """Parse a request head (request line and headers, up to the blank line).

    Raises:
        HeadError: malformed, too large, or not HTTP/1.x.
    """
    lines = _split_head(data)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HeadError("malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HeadError("unsupported HTTP version")
    if any(c not in _TOKEN_CHARS for c in method):
        raise HeadError("malformed method")
    return ProxyRequest(method, target, version, _parse_headers(lines[1:]))


def _connection_tokens(headers: tuple[tuple[str, str], ...]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _end_to_end(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    named = _connection_tokens(headers)
    return [(k, v) for k, v in headers
            if k.lower() not in _HOP_BY_HOP and k.lower() not in named]


def forward_head(request: ProxyRequest, destination: Destination) -> bytes:
    """The head to send to the origin server for a plain HTTP request: origin
    form, hop-by-hop headers (the credential included) removed, one request."""
    lines = [f"{request.method} {destination.path} {request.version}"]
    headers = _end_to_end(request.headers)
    if not any(k.lower() == "host" for k, _ in headers):
        default = destination.port == 80
        host = destination.host if ":" not in destination.host else f"[{destination.host}]"
        headers.insert(0, ("Host", host if default else f"{host}:{destination.port}"))
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def rewrite_response_head(data: bytes) -> tuple[int, bytes]:
    """The origin's response head as the proxy passes it on: its status code, and
    the head with hop-by-hop headers replaced by ``Connection: close``.

    Raises:
        HeadError: not an HTTP/1.x status line, or malformed headers.
    """
    lines = _split_head(data)
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise HeadError("malformed status line")
    headers = _end_to_end(_parse_headers(lines[1:]))
    out = [lines[0], *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return int(status[1]), ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def proxy_response(status: int, reason: str, message: str = "",
                   headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete response from the proxy itself (refusals, 407, 200 for CONNECT)."""
    body = (message + "\n").encode() if message else b""
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    if status != 200 or body:
        lines += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}",
                  "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
