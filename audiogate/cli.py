"""``audiogate``: one command for everything (``_USAGE`` below)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["main"]

_USAGE = """\
usage: audiogate COMMAND [--help | settings...]

  run        the whole stack (engine + gateway) on the demo track, as make run does
  engine     the engine alone (same as python -m audio_engine)
  gateway    the gateway alone (same as python -m gateway)
  loadtest   load an engine (ours or a Go engine) and report

Each command takes --help. Exit codes: 0 stopped, 1 a task died, 2 usage,
69 the engine kept dying (run), 78 could not start (a setting must change)."""

#: Subcommand -> module whose ``main(argv) -> int`` runs it. Imported only when
#: chosen, so ``audiogate engine`` never loads the bot or the playground.
_COMMANDS = {
    "run": "audiogate.stack",
    "engine": "audiogate.engine_process",
    "gateway": "audiogate.gateway_process",
    "loadtest": "loadtest.cli",
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; returns its exit code (2 for a usage error)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in _COMMANDS:
        asked = bool(args) and args[0] in ("-h", "--help")
        print(_USAGE, file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    module = importlib.import_module(_COMMANDS[args[0]])
    run: Callable[[list[str]], int | None] = module.main
    return int(run(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
