"""Start-up errors, from the real processes: one line naming the problem and the
setting to change, exit code 78, and nothing left behind (no socket file, no
database, no child process, the ports free again)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.processes import EngineProcess, free_port

pytestmark = pytest.mark.timeout(120)

EXIT_CONFIG = 78


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short: Unix socket paths are limited to ~108 bytes.
    with tempfile.TemporaryDirectory(prefix="ag-") as directory:
        yield Path(directory)


def _run(module: str, env: dict[str, str], *args: str,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module`` to its end; fails the test if it keeps running."""
    return subprocess.run([sys.executable, "-m", module, *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, check=False)


def _the_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line, checked to be alone and without a traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_CONFIG, (result.returncode, result.stderr)
    return errors[0]


def _engine_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    return {"GO_API_PORT": str(port), "SOCKET_PATH": str(workdir / "engine.sock"),
            "ENGINE_LOG_LEVEL": "INFO", **extra}


def _gateway_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    return {"GATEWAY_PORT": str(port), "GATEWAY_DATA_DIR": str(workdir / "var"),
            "GO_API_PORT": str(free_port()), "SOCKET_PATH": str(workdir / "none.sock"),
            "GATEWAY_LOG_LEVEL": "INFO", **extra}


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_the_engine_names_a_port_in_use_and_leaves_no_socket(workdir: Path,
                                                              taken_port: int) -> None:
    result = _run("audio_engine", _engine_env(workdir, taken_port))
    line = _the_error(result)
    assert f"port {taken_port} on 127.0.0.1 is already in use" in line
    assert "GO_API_PORT (--go-api-port)" in line
    assert list(workdir.iterdir()) == []


def test_the_engine_names_a_socket_in_use_and_frees_its_port(workdir: Path) -> None:
    with EngineProcess() as other:
        port = free_port()
        result = _run("audio_engine", {**_engine_env(workdir, port),
                                       "SOCKET_PATH": str(other.socket_path)})
        line = _the_error(result)
        assert f"already serving on {other.socket_path}" in line
        assert "SOCKET_PATH (--socket-path)" in line
        assert other.socket_path.exists()  # the other engine's socket is untouched
        assert _port_is_free(port)
        assert other.process is not None and other.process.poll() is None


def test_the_engine_names_a_missing_socket_directory(workdir: Path) -> None:
    port = free_port()
    result = _run("audio_engine", {**_engine_env(workdir, port),
                                   "SOCKET_PATH": str(workdir / "missing" / "e.sock")})
    line = _the_error(result)
    assert f"the socket directory {workdir / 'missing'} does not exist" in line
    assert "SOCKET_PATH" in line
    assert _port_is_free(port)
    assert list(workdir.iterdir()) == []


def test_the_engine_refuses_to_replace_a_file_that_is_not_a_socket(workdir: Path) -> None:
    precious = workdir / "engine.sock"
    precious.write_text("not a socket")
    line = _the_error(_run("audio_engine", _engine_env(workdir, free_port())))
    assert "exists and is not a socket" in line
    assert precious.read_text() == "not a socket"


def test_the_engine_replaces_a_stale_socket_file(workdir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(workdir / "engine.sock"))
    stale.close()  # the file stays, nobody listens: a crashed engine's leftover
    with EngineProcess(socket_path=workdir / "engine.sock") as engine:
        assert "ENGINE READY" in engine.log()


@pytest.mark.parametrize(("env", "words"), [
    ({"ENGINE_MAX_SESSIONS": "0"},
     "bad setting ENGINE_MAX_SESSIONS (--max-sessions): Input should be greater than or "
     "equal to 1 (got '0')"),
    ({"GO_API_PORT": "eighty"}, "bad setting GO_API_PORT (--go-api-port)"),
    ({"ENGINE_SOCKET_MODE": "999"}, "bad setting ENGINE_SOCKET_MODE"),
    ({"ENGINE_LOG_LEVEL": "loud"}, "bad setting ENGINE_LOG_LEVEL (--log-level): unknown log"),
    ({"ENGINE_API_HOST": "no-such-host.invalid"}, "set ENGINE_API_HOST (--api-host)"),
])
def test_the_engine_names_a_bad_setting(workdir: Path, env: dict[str, str],
                                        words: str) -> None:
    """... and never echoes a secret setting beside it (checked on every case: one
    engine process each, none more for the secret alone)."""
    secret = "s3cr3t-" + "x" * 30
    result = _run("audio_engine", {**_engine_env(workdir, free_port()), **env,
                                   "ENGINE_API_TOKEN": secret})
    assert words in _the_error(result)
    assert secret not in result.stderr + result.stdout
    assert list(workdir.iterdir()) == []


def test_the_gateway_names_a_port_in_use_and_creates_nothing(workdir: Path,
                                                              taken_port: int) -> None:
    line = _the_error(_run("gateway", _gateway_env(workdir, taken_port)))
    assert f"port {taken_port} on 127.0.0.1 is already in use" in line
    assert "GATEWAY_PORT (--port)" in line
    assert not (workdir / "var").exists()


def test_the_gateway_names_a_bad_setting(workdir: Path) -> None:
    result = _run("gateway", _gateway_env(workdir, free_port(),
                                          GATEWAY_ENGINE_CHECK_INTERVAL="-1"))
    assert "bad setting GATEWAY_ENGINE_CHECK_INTERVAL" in _the_error(result)


def test_the_gateway_names_a_queue_database_it_cannot_open(workdir: Path) -> None:
    (workdir / "var").mkdir()
    (workdir / "var" / "queues.sqlite3").mkdir()  # a directory where the file goes
    port = free_port()
    line = _the_error(_run("gateway", _gateway_env(workdir, port)))
    assert "cannot open the queue database" in line
    assert "GATEWAY_QUEUE_DB" in line
    assert _port_is_free(port)


def test_the_stack_names_its_port_in_use_before_starting_the_engine(
    workdir: Path, taken_port: int
) -> None:
    engine_port = free_port()
    result = _run("audiogate", _gateway_env(workdir, taken_port, GO_API_PORT=str(engine_port),
                                            SOCKET_PATH=str(workdir / "e.sock")), "run")
    line = _the_error(result)
    assert "GATEWAY_PORT" in line
    assert "engine started" not in result.stderr
    assert not (workdir / "e.sock").exists()
    assert _port_is_free(engine_port)


def test_the_stack_stops_with_the_engines_start_up_error(workdir: Path,
                                                        taken_port: int) -> None:
    port = free_port()
    result = _run("audiogate", _gateway_env(workdir, port, GO_API_PORT=str(taken_port),
                                            SOCKET_PATH=str(workdir / "e.sock")), "run")
    assert result.returncode == EXIT_CONFIG, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith(f"error: port {taken_port} on 127.0.0.1 is already in use")
    assert "GO_API_PORT" in errors[0]
    assert errors[1] == "error: the engine could not start (its error is above)"
    assert "Traceback" not in result.stderr
    assert "restarting" not in result.stderr
    assert _port_is_free(port)
    assert not (workdir / "e.sock").exists()
