"""``python -m gateway``: the router, the playground and (with a token) the bot."""

from __future__ import annotations

import asyncio
import sys

from pydantic_settings import CliApp

from audio_engine.logs import configure_logging
from gateway.app import run_gateway
from gateway.settings import GatewaySettings

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse settings (environment, then flags) and run until SIGTERM/SIGINT."""
    settings = CliApp.run(GatewaySettings, cli_args=sys.argv[1:] if argv is None else argv)
    configure_logging(settings.log_level, settings.log_json)
    try:
        asyncio.run(run_gateway(settings))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
