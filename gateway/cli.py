"""``audiogate``: one command for everything.

::

    audiogate run        the whole stack (engine + gateway) on the demo track
    audiogate engine     the engine alone (python -m audio_engine)
    audiogate gateway    the gateway alone (python -m gateway)
    audiogate loadtest   load an engine and report (see --help)
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_COMMANDS = {
    "run": ("gateway.stack", "the whole stack on the bundled demo track"),
    "engine": ("audio_engine.__main__", "the audio engine"),
    "gateway": ("gateway.__main__", "router, playground and bot"),
    "loadtest": ("loadtest.cli", "load an engine and report"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in _COMMANDS:
        print(__doc__.strip())
        return 0 if args and args[0] in ("-h", "--help") else 2
    module_name, _ = _COMMANDS[args[0]]
    module = __import__(module_name, fromlist=["main"])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
