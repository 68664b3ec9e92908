"""Why the front refuses an API operation on a session: the errors its parts raise
(``front``, ``calls``, ``claims``) and the HTTP and Lavalink faces translate."""

from __future__ import annotations

__all__ = ["SessionConflict", "SessionNotFound", "WorkerUnavailable", "conflict_message"]


class SessionNotFound(Exception):
    """No session has this id."""


class WorkerUnavailable(Exception):
    """The worker holding the session is restarting (its sessions are being moved)."""


class SessionConflict(Exception):
    """A guild is either a Lavalink player or a Go session, never both: the id is
    taken by the other kind (``str()`` says which)."""


def conflict_message(session_id: str, *, lavalink: bool) -> str:
    """What a ``SessionConflict`` on *session_id* says: it is a Lavalink player's
    guild (*lavalink*), or a live Go session's."""
    if lavalink:
        return (f"session {session_id} is a Lavalink player's guild: a guild is either a "
                "Lavalink player or a Go session, never both")
    return (f"guild {session_id} has a live Go session: a guild is either a "
            "Lavalink player or a Go session, never both")
