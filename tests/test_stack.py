"""``audiogate run`` keeps its engine child up: a killed engine is restarted
(counted, logged, never a zombie), too many deaths end the stack with code 69
for its own supervisor, SIGTERM stops everything in order with code 0, and an
engine whose stack vanished stops by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from loadtest.processes import free_port

from .support.waiting import poll_until

pytestmark = pytest.mark.timeout(240)

EXIT_UNAVAILABLE = 69


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's stacks: the demo track is rendered once."""
    return tmp_path_factory.mktemp("stack-data")


class Stack:
    """``python -m audiogate run`` on free ports and a temporary socket."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ag-"))
        self.socket_path = self.directory / "engine.sock"
        self.port = free_port()
        self.engine_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.directory / "stack.log"
        environment = {**os.environ, "GATEWAY_PORT": str(self.port),
                       "GO_API_PORT": str(self.engine_port),
                       "SOCKET_PATH": str(self.socket_path), "GATEWAY_DATA_DIR": str(data_dir),
                       "GATEWAY_QUEUE_DB": ":memory:", "GATEWAY_ENGINE_CHECK_INTERVAL": "0.5",
                       **env}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "audiogate", "run"],
                                            env=environment, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.psutil = psutil.Process(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60) -> None:
        try:
            poll_until(self.ready, timeout=timeout, interval=0.1)
        except TimeoutError:
            raise AssertionError(f"the stack did not become ready:\n{self.log()}") from None

    def engine(self) -> psutil.Process:
        children = self.psutil.children()
        assert len(children) == 1, children
        return children[0]

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for stack in started:
        children = stack.psutil.children(recursive=True) if stack.process.poll() is None else []
        stack.process.kill()
        stack.process.wait(30)
        for child in children:
            child.kill()


def _no_zombies(process: psutil.Process) -> bool:
    return all(child.status() != psutil.STATUS_ZOMBIE for child in process.children())


def test_a_killed_engine_is_restarted_and_sigterm_stops_everything(
    data_dir: Path, stacks: list[Stack]
) -> None:
    stack = Stack(data_dir)
    stacks.append(stack)
    stack.wait_ready()
    first = stack.engine()
    first.kill()
    first.wait(10)
    poll_until(lambda: not stack.ready(), timeout=30, interval=0.05)
    assert _no_zombies(stack.psutil)
    stack.wait_ready()
    second = stack.engine()
    assert second.pid != first.pid
    assert _no_zombies(stack.psutil)
    assert stack.metric("audiogate_stack_engine_restarts_total") == 1
    assert stack.metric("audiogate_stack_engine_ready") == 1
    assert "the engine exited with signal SIGKILL" in stack.log()
    assert "(restart 1)" in stack.log()
    assert stack.stop() == 0
    assert not second.is_running()
    assert not stack.socket_path.exists()
    log = stack.log()
    assert log.index("gateway stopped") < log.index("engine stopped")  # gateway first


def test_an_engine_that_keeps_dying_ends_the_stack_with_69(
    data_dir: Path, stacks: list[Stack]
) -> None:
    stack = Stack(data_dir, GATEWAY_ENGINE_MAX_RESTARTS="0")
    stacks.append(stack)
    stack.wait_ready()
    engine = stack.engine()
    engine.kill()
    assert stack.process.wait(60) == EXIT_UNAVAILABLE
    assert "error: the engine died once (last: signal SIGKILL)" in stack.log()
    assert "Traceback" not in stack.log()
    assert not engine.is_running()
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get(f"{stack.url}/health")


def test_the_engine_stops_when_its_stack_vanishes(data_dir: Path,
                                                   stacks: list[Stack]) -> None:
    stack = Stack(data_dir)
    stacks.append(stack)
    stack.wait_ready()
    engine = stack.engine()
    stack.process.kill()  # no chance to stop its child
    stack.process.wait(10)
    engine.wait(30)  # not our child: its code goes to whoever adopted it
    assert not engine.is_running()
    assert not stack.socket_path.exists()  # it shut down properly
