"""Errors raised by the protocol package, split by who broke the rules.

``RemoteProtocolError`` means the bytes we were given cannot be part of a valid
stream (the peer is broken or we lost sync); ``LocalProtocolError`` means our own
code asked for something the wire format cannot express. Any other exception
escaping this package is a bug in it.
"""

from __future__ import annotations

__all__ = [
    "InvalidSessionId",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "TruncatedStream",
]


class ProtocolError(Exception):
    """Base class of every error this package raises on purpose."""


class LocalProtocolError(ProtocolError):
    """We tried to build or send something the wire format does not allow."""


class RemoteProtocolError(ProtocolError):
    """The byte stream we received violates the wire format.

    A decoder that raised this refuses further input: framing is lost, so the
    connection must be closed and a fresh decoder used for the next one.
    """


class TruncatedStream(RemoteProtocolError):
    """The stream ended (``receive_eof``) in the middle of a message: the peer closed
    the connection after part of a packet or event line. ``size`` is how many bytes of
    that message had arrived."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class InvalidSessionId(LocalProtocolError, ValueError):
    """A session id is not 1-24 bytes of printable ASCII without spaces.

    ``str(error)`` says what is wrong in words fit for an HTTP error body.
    """
