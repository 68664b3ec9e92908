"""Errors of the Lavalink codecs, split like the rest of ``protocol`` by who broke the rules.

``InvalidEncodedTrack`` means a base64 track string we were given is not one Lavalink
could have written (a client sent garbage, or a plugin format we cannot read);
``TrackEncodeError`` means our own code asked for a track the format cannot carry (a
title longer than Java's ``writeUTF`` allows, a negative length).
"""

from __future__ import annotations

from protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["InvalidEncodedTrack", "TrackEncodeError"]


class InvalidEncodedTrack(RemoteProtocolError, ValueError):
    """An encoded track is not valid base64 or not a valid Lavalink track message.

    ``str(error)`` names the field that could not be read, in words fit for the
    ``message`` of Lavalink's error JSON.
    """


class TrackEncodeError(LocalProtocolError, ValueError):
    """A track cannot be written in Lavalink's format (a field out of its range)."""
