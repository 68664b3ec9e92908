"""Process logging shared by every process: one line per record, each carrying
a ``session_id`` field (``-`` outside any session).

A leaf package: it imports nothing of ours, so any package may use it.
"""

from __future__ import annotations

from applog.logs import SessionLogger, configure_logging, session_logger

__all__ = ["SessionLogger", "configure_logging", "session_logger"]
