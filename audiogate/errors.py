"""How a process ends: start-up errors and exit codes a supervisor can act on.

Exit codes follow ``sysexits.h`` where one fits, so a unit file can tell a
setting to fix (do not restart) from a crash (restart)::

    0   stopped by SIGTERM/SIGINT
    1   a long-lived task died unexpectedly (restart it)
    2   unknown command-line flag (from argparse)
    69  audiogate run: the engine kept dying and the restart limit was reached
    78  could not start: a setting must change (port in use, bad value, ...)
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_CRASHED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "GaveUp",
    "ProcessExit",
    "StartupError",
]

EXIT_OK = 0
EXIT_CRASHED = 1
#: ``EX_UNAVAILABLE``: a service this process depends on cannot be kept running.
EXIT_UNAVAILABLE = 69
#: ``EX_CONFIG``: the configuration is wrong; restarting will not help.
EXIT_CONFIG = 78


class ProcessExit(Exception):
    """Ends the process with ``exit_code``; ``str()`` is one line for the user."""

    exit_code = EXIT_CRASHED


class StartupError(ProcessExit):
    """The process cannot start. ``str()`` says what is wrong and which setting
    to change. Raised before any task has started, so nothing needs undoing
    beyond what the raiser already closed."""

    exit_code = EXIT_CONFIG


class GaveUp(ProcessExit):
    """A supervised child kept dying; its supervisor stops so that its own
    supervisor (systemd, a container runtime) can act."""

    exit_code = EXIT_UNAVAILABLE
