"""Our processes as children: the engine (``python -m audio_engine``) and the
gateway (``python -m gateway``), on temporary sockets and free loopback ports,
for integration tests, benchmarks and load runs."""

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

__all__ = ["EngineProcess", "GatewayProcess", "ServiceProcess", "free_port"]


#: The variable our processes watch: they stop by themselves when the process it
#: names is gone (``audiogate.process.watching_supervisor``), so a test run or
#: benchmark that is killed leaves no engine or gateway behind.
_SUPERVISOR_PID_ENV = "AUDIOGATE_SUPERVISOR_PID"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """Starts, watches and stops one of our processes; ready once ``probe``
    answers 200."""

    module = ""
    #: The path polled until it answers 200.
    probe = "/health"

    def __init__(self, env: dict[str, str], *, port: int, directory: Path | None = None) -> None:
        # Unix socket paths are limited to ~108 bytes: keep the directory short.
        self.directory = directory or Path(tempfile.mkdtemp(prefix="ag-"))
        self.log_path = self.directory / f"{self.module}.log"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, _SUPERVISOR_PID_ENV: str(os.getpid()), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        """Start and wait until ready.

        Raises:
            RuntimeError: if the process exits or is not ready within *timeout*
                (with its log in the message).
        """
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited early:\n{self.log()}")
            try:
                healthy = httpx.get(f"{self.url}{self.probe}", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy:
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.module} did not start in {timeout} s:\n{self.log()}")

    @property
    def pid(self) -> int:
        """The running process's id."""
        assert self.process is not None, "not started"
        return self.process.pid

    def log(self) -> str:
        """Everything the process printed so far."""
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

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()


class EngineProcess(ServiceProcess):
    """``python -m audio_engine``, ready once ``/ready`` answers 200 (socket
    listening, clock ticking).

    Args:
        env: extra environment (engine settings).
        log_level: the engine's log level.
        port, socket_path: reuse these (a restarted engine); fresh ones by default.
        media_dir: the directory local files may be played from.
        allow_private: allow loopback/private hosts (media served on 127.0.0.1).
        node_token: also serve the socket on a free loopback TCP port
            (``tcp_port``), where consumers must present this token.
    """

    module = "audio_engine"
    probe = "/ready"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        log_level: str = "DEBUG",
        port: int | None = None,
        socket_path: Path | None = None,
        media_dir: Path | None = None,
        allow_private: bool = False,
        node_token: str | None = None,
        tcp_port: int | None = None,
    ) -> None:
        directory = Path(tempfile.mkdtemp(prefix="ag-"))
        self.socket_path = socket_path or directory / "engine.sock"
        port = port or free_port()
        policy = {"ENGINE_ALLOW_PRIVATE_NETWORKS": "true" if allow_private else "false"}
        if media_dir is not None:
            policy["ENGINE_MEDIA_DIR"] = str(media_dir)
        #: The TCP port of the socket framing, when *node_token* was given.
        self.tcp_port: int | None = None
        if node_token is not None:
            self.tcp_port = tcp_port or free_port()
            policy["ENGINE_TCP_PORT"] = str(self.tcp_port)
            policy["ENGINE_NODE_TOKEN"] = node_token
        super().__init__(
            {"GO_API_PORT": str(port), "SOCKET_PATH": str(self.socket_path),
             "ENGINE_LOG_LEVEL": log_level, **policy, **(env or {})},
            port=port, directory=directory,
        )

    def start(self, timeout: float = 30.0) -> EngineProcess:
        """See ``ServiceProcess.start``."""
        super().start(timeout)
        return self

    def __enter__(self) -> EngineProcess:
        return self.start()


class GatewayProcess(ServiceProcess):
    """``python -m gateway`` against *engine*, with in-memory queues.

    Args:
        engine: the engine it talks to.
        env: extra environment (gateway settings).
    """

    module = "gateway"

    def __init__(self, engine: EngineProcess, env: dict[str, str] | None = None,
                 *, log_level: str = "DEBUG") -> None:
        directory = Path(tempfile.mkdtemp(prefix="ag-"))
        port = free_port()
        super().__init__(
            {"GO_API_PORT": str(engine.port), "SOCKET_PATH": str(engine.socket_path),
             "GATEWAY_PORT": str(port), "GATEWAY_DATA_DIR": str(directory),
             "GATEWAY_QUEUE_DB": ":memory:", "GATEWAY_LOG_LEVEL": log_level, **(env or {})},
            port=port, directory=directory,
        )

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        """See ``ServiceProcess.start``."""
        super().start(timeout)
        return self

    def __enter__(self) -> GatewayProcess:
        return self.start()
