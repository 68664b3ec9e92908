"""A player update (``PATCH /v4/sessions/{id}/players/{guildId}``) checked before
anything of it is applied (pure).

Lavalink refuses what an update cannot mean with a 400 and changes nothing; the node
(``node``) then applies the rest in Lavalink's order, each step a call to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audio_engine.lavalink.errors import LavalinkError
from protocol.filters import FilterError, Filters, parse_filters
from protocol.lavalink import DecodedTrack, InvalidEncodedTrack, PlayerUpdate, decode_track

__all__ = ["CheckedUpdate", "check_update"]


@dataclass(frozen=True, slots=True)
class CheckedUpdate:
    """What a player update asks about its track and filters, read from either of
    Lavalink's forms (``track`` or the deprecated top-level fields)."""

    #: ``encoded`` was sent (``None``: stop the track), and what it decodes to.
    encoded_sent: bool
    encoded: str | None
    decoded: DecodedTrack | None
    #: ``identifier`` was sent (a track to load).
    identifier_sent: bool
    identifier: str | None
    user_data: dict[str, Any] | None
    filters: Filters | None

    @property
    def new_track(self) -> bool:
        """The update names a track (to play, or ``null`` to stop)."""
        return self.encoded_sent or self.identifier_sent


def check_update(update: PlayerUpdate) -> CheckedUpdate:
    """*update*'s track and filters, checked as Lavalink checks them.

    Raises:
        LavalinkError: 400 for both track forms, both ``encoded`` and
            ``identifier``, a ``null`` identifier, a partial voice state, an end
            time or position out of range, invalid filters, an invalid encoded track.
    """
    sent = update.sent
    track_update = update.track
    if track_update is not None and sent & {"encoded_track", "identifier"}:
        raise LavalinkError(400, "Cannot specify both track and encodedTrack/identifier")
    if track_update is not None:
        track_sent = track_update.sent
        encoded_sent, encoded = "encoded" in track_sent, track_update.encoded
        identifier = track_update.identifier if "identifier" in track_sent else None
        identifier_sent = "identifier" in track_sent
        user_data = track_update.user_data
    else:
        encoded_sent, encoded = "encoded_track" in sent, update.encoded_track
        identifier_sent, identifier = "identifier" in sent, update.identifier
        user_data = None
    if encoded_sent and identifier_sent:
        raise LavalinkError(400, "Cannot specify both encodedTrack and identifier")
    if identifier_sent and identifier is None:
        raise LavalinkError(400, "identifier must not be null")
    voice = update.voice
    if voice is not None and not (voice.token.strip() and voice.endpoint.strip()
                                  and voice.session_id.strip()):
        raise LavalinkError(400, "Partial Lavalink voice state: token, endpoint and "
                            "sessionId must be provided")
    if update.end_time is not None and update.end_time <= 0:
        raise LavalinkError(400, "End time must be greater than 0")
    if update.position is not None and update.position < 0:
        raise LavalinkError(400, "Position must not be negative")
    filters: Filters | None = None
    if update.filters is not None:
        try:
            filters = parse_filters(update.filters)
        except FilterError as exc:
            raise LavalinkError(400, f"Invalid filters: {exc}") from exc
    decoded = None
    if encoded_sent and encoded is not None:
        try:
            decoded = decode_track(encoded)
        except InvalidEncodedTrack as exc:
            raise LavalinkError(400, f"Invalid encoded track: {exc}") from exc
    return CheckedUpdate(encoded_sent, encoded, decoded, identifier_sent, identifier,
                         user_data, filters)
