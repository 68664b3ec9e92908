"""Sessions as the API shows them (plain dicts, rendered by the front as Go-style JSON)."""

from __future__ import annotations

from typing import Any

from audio_engine.sessions.session import Session

__all__ = ["filters_view", "session_view"]


def filters_view(session: Session) -> dict[str, Any]:
    """The session's filters as set (Lavalink's keys; ``"loudness": null`` when
    switched off against the engine's default)."""
    shown = session.filters.to_lavalink()
    if not session.loudness_default and session.filters.loudness is None:
        shown["loudness"] = None
    return shown


def session_view(session: Session) -> dict[str, Any]:
    """A session as ``GET /sessions`` shows it."""
    view: dict[str, Any] = {
        "session_id": session.id,
        "play_id": session.play_id,
        "status": session.status.value,
        "url": session.request.url,
        "title": session.title,
        "format": session.request.output.value,
        "position": round(session.position, 3),
        "duration": round(session.duration, 3) if session.duration else 0,
        "volume": session.volume,
        "passthrough": session.passthrough,
        "bytes_sent": session.bytes_sent,
        "frames_sent": session.frames_sent,
        "underruns": session.underruns,
        "retries": session.retries,
        "filters": list(session.filters.active()),
        "crossfade": session.crossfade,
        "next": None,
    }
    nxt = session.next
    if nxt is not None:
        view["next"] = {"play_id": nxt.play_id, "url": nxt.request.url,
                        "state": nxt.state.value, "title": nxt.title}
        if nxt.error:
            view["next"]["error"] = nxt.error
    if session.error_message:
        view["error"] = session.error_message
    return view
