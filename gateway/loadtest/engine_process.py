"""Our engine as a child process: ``python -m audio_engine`` on a temporary socket
and a free loopback port (for integration tests, benchmarks and load runs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

__all__ = ["EngineProcess", "free_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EngineProcess:
    """Starts, watches and stops one engine process.

    Args:
        env: extra environment (engine settings) for this engine.
        log_level: the engine's log level.
        port, socket_path: reuse these (a restarted engine); fresh ones by default.
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        log_level: str = "DEBUG",
        port: int | None = None,
        socket_path: Path | None = None,
    ) -> None:
        # Unix socket paths are limited to ~108 bytes: keep the directory short.
        self.directory = Path(tempfile.mkdtemp(prefix="ag-"))
        self.socket_path = socket_path or self.directory / "engine.sock"
        self.log_path = self.directory / "engine.log"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GO_API_PORT": str(self.port),
            "SOCKET_PATH": str(self.socket_path),
            "ENGINE_LOG_LEVEL": log_level,
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> EngineProcess:
        """Start and wait until ``/health`` answers and the socket exists."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "audio_engine"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"engine exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    if self.socket_path.exists():
                        return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"engine did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """Everything the engine printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (kills after *timeout*)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)

    def kill(self) -> None:
        """SIGKILL, no cleanup (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()
