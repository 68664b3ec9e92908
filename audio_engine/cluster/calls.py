"""The API operations on a placed session: each is a call to the worker that holds the
session, whose channel failures become the API's errors (``SessionNotFound``,
``WorkerUnavailable``) here, once; what a move must replay (paused, volume, end,
filters, crossfade, a seek's position) is kept in the session's record.

Placing, admitting and replacing a play, and stopping one, are the front's
(``front``); these operations never change where a session lives.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Final

from audio_engine.audio.formats import OutputFormat
from audio_engine.cluster.directory import SessionDirectory, SessionRecord
from audio_engine.cluster.errors import SessionNotFound, WorkerUnavailable
from audio_engine.cluster.peer import CallFailed, CallTimedOut, PeerGone
from audio_engine.cluster.workers import WorkerProcess
from protocol.filters import Filters

__all__ = ["CALL_TIMEOUT", "Record", "SessionCalls"]

#: Seconds the front waits for a worker's answer to an API call.
CALL_TIMEOUT: Final = 5.0

#: A session record of the front: on a worker process.
Record = SessionRecord[WorkerProcess]


class SessionCalls:
    """See the module docstring.

    Args:
        sessions: the front's session directory.
    """

    def __init__(self, sessions: SessionDirectory[WorkerProcess]) -> None:
        self._sessions = sessions

    def record(self, session_id: str) -> Record:
        """*session_id*'s record, on a live worker.

        Raises:
            SessionNotFound: no session has this id.
            WorkerUnavailable: its worker died and the session is being moved.
        """
        record = self._sessions.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        if record.moving or not record.worker.alive:
            raise WorkerUnavailable(
                "the engine is moving this session to another worker; try again shortly")
        return record

    async def call(self, record: Record, method: str, *args: Any) -> Any:
        """*record*'s worker's answer to ``method(*args)``.

        Raises:
            SessionNotFound: the worker has no such session.
            CallFailed: the worker refused the call otherwise.
            WorkerUnavailable: the worker died or did not answer in time.
        """
        try:
            return await record.worker.call(method, *args, within=CALL_TIMEOUT)
        except CallFailed as exc:
            if exc.kind == "not_found":
                raise SessionNotFound(str(exc)) from exc
            raise
        except (PeerGone, CallTimedOut) as exc:
            raise WorkerUnavailable("the engine worker of this session is not answering; "
                                    "try again shortly") from exc

    async def pause(self, session_id: str) -> None:
        """Pause (idempotent). Raises SessionNotFound."""
        record = self.record(session_id)
        if not await self.call(record, "pause", session_id):
            raise SessionNotFound(session_id)
        record.paused = True

    async def resume(self, session_id: str) -> None:
        """Resume (no-op unless paused). Raises SessionNotFound."""
        record = self.record(session_id)
        if not await self.call(record, "resume", session_id):
            raise SessionNotFound(session_id)
        record.paused = False

    async def status(self, session_id: str) -> dict[str, Any] | None:
        """The Go engine's ``/status`` fields, or None for an unknown id."""
        record = self._sessions.get(session_id)
        if record is None:
            return None
        if record.moving or not record.worker.alive:
            return {"state": "streaming" if record.live else "stopped", "bytes_sent": 0,
                    "url": record.request.url}
        try:
            return await self.call(record, "status", session_id)  # type: ignore[no-any-return]
        except SessionNotFound:
            return None

    async def view(self, session_id: str) -> dict[str, Any] | None:
        record = self._sessions.get(session_id)
        if record is None:
            return None
        if record.moving or not record.worker.alive:
            raise WorkerUnavailable("the engine is moving this session; try again shortly")
        return await self.call(record, "view", session_id)  # type: ignore[no-any-return]

    async def set_volume(self, session_id: str, volume: float) -> float:
        record = self.record(session_id)
        value = float(await self.call(record, "volume", session_id, volume))
        record.volume = value
        return value

    async def seek(self, session_id: str, position: float) -> str:
        record = self.record(session_id)
        state = str(await self.call(record, "seek", session_id, position))
        record.position_hint = (position, time.monotonic())
        return state

    async def set_end(self, session_id: str, end_at: float | None) -> None:
        """The track position (seconds) at which the current play ends (None: its end)."""
        record = self.record(session_id)
        await self.call(record, "end_at", session_id, end_at)
        record.request = replace(record.request, end_at=end_at)  # a move keeps it

    async def filters(self, session_id: str) -> dict[str, Any]:
        record = self.record(session_id)
        return await self.call(record, "filters", session_id)  # type: ignore[no-any-return]

    async def set_filters(self, session_id: str, filters: Filters,
                          loudness_default: bool) -> dict[str, Any]:
        record = self.record(session_id)
        view = await self.call(record, "set_filters", session_id, filters, loudness_default)
        record.filters = filters
        record.loudness_default = loudness_default
        return view  # type: ignore[no-any-return]

    async def set_crossfade(self, session_id: str, seconds: float) -> float:
        record = self.record(session_id)
        value = float(await self.call(record, "crossfade", session_id, seconds))
        record.crossfade = value
        return value

    def output_of(self, session_id: str) -> OutputFormat:
        """The output format of *session_id*'s stream. Raises SessionNotFound."""
        record = self._sessions.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record.request.output

    async def cancel_next(self, session_id: str) -> int | None:
        record = self.record(session_id)
        value = await self.call(record, "cancel_next", session_id)
        return int(value) if value is not None else None
