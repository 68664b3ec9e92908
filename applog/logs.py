"""Process logging: one line per event, every line carrying a ``session_id`` field.

Used by every process. Text lines read
``time level logger [session] message``; with JSON enabled each line is one JSON
object whose keys include ``session_id`` and any ``extra`` fields, for log
shippers. Messages are formatted lazily (``log.info("x %s", y)``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["SessionLogger", "configure_logging", "session_logger"]

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(session_id)s] %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(session_id)s %(message)s"


class _DefaultSessionId(logging.Filter):
    """Gives records logged outside any session the placeholder id ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "session_id"):
            record.session_id = "-"
        return True


def configure_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Send the root logger's records to stderr, as text or JSON lines.

    Library chatter (uvicorn's access log, discord.py's gateway, httpx) is kept
    one level quieter than ours so a busy process stays readable.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_DefaultSessionId())
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                _JSON_FIELDS,
                rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quieter = max(logging.WARNING, root.level)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "discord.gateway", "discord.client"):
        logging.getLogger(noisy).setLevel(quieter)


class SessionLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records all carry one session id."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the session id into the record's ``extra``."""
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("session_id", self.extra["session_id"] if self.extra else "-")
        kwargs["extra"] = extra
        return msg, kwargs


def session_logger(logger: logging.Logger, session_id: str) -> SessionLogger:
    """Wrap *logger* so that every record names *session_id*."""
    return SessionLogger(logger, {"session_id": session_id})
