"""``audiogate-stack``: the whole stack on one machine, on a bundled demo track.

Renders the demo track (first run only), starts the engine as a child process,
waits until it answers, then runs the gateway process's work in this process,
and stops everything in order on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from audio_engine.logs import configure_logging
from gateway.demo import ensure_demo_tracks
from gateway.settings import GatewaySettings

__all__ = ["main"]


def _start_engine(settings: GatewaySettings, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GO_API_PORT": str(settings.go_api_port),
        "SOCKET_PATH": str(settings.socket_path),
        "ENGINE_API_HOST": settings.engine_host,
        "ENGINE_LOG_LEVEL": settings.log_level,
    }
    env.setdefault("ENGINE_MEDIA_DIR", str(data_dir))
    return subprocess.Popen([sys.executable, "-m", "audio_engine"], env=env)


def _wait_for_engine(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the engine exited during start-up (code {process.returncode})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"the engine did not answer at {url} within {timeout:g} s")


def main(argv: list[str] | None = None) -> int:
    """Run engine + gateway until interrupted."""
    from pydantic_settings import CliApp

    settings = CliApp.run(GatewaySettings, cli_args=sys.argv[1:] if argv is None else argv)
    configure_logging(settings.log_level, settings.log_json)
    data_dir = settings.data_dir.resolve()
    tracks = ensure_demo_tracks(data_dir / "demo")
    engine = _start_engine(settings, data_dir)
    try:
        _wait_for_engine(settings.engine_url, engine)
        print(
            f"\n  open the playground:  http://{settings.host}:{settings.port}/"
            "   (the demo track is in the URL box: press Play)"
            f"\n  engine API:           {settings.engine_url}   (docs at /docs)"
            f"\n  engine socket:        {settings.socket_path}"
            f"\n  demo track:           {tracks['opus']}"
            "\n  Discord bot:          "
            + ("starting (DISCORD_TOKEN is set)" if settings.discord_token
               else "off (set DISCORD_TOKEN to start it)")
            + "\n",
            flush=True,
        )
        from gateway.app import run_gateway

        asyncio.run(run_gateway(settings, demo_tracks=tracks))
    except KeyboardInterrupt:
        pass
    finally:
        if engine.poll() is None:
            engine.send_signal(signal.SIGTERM)
            try:
                engine.wait(15)
            except subprocess.TimeoutExpired:
                engine.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
