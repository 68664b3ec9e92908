"""The deployment files in deploy/ name real commands and real settings, and the
example settings load: what can be checked without a container runtime or a
running systemd. The unit files are checked by ``systemd-analyze verify``; the
alert rules and the example Prometheus configuration by ``promtool`` (Debian's
``prometheus``), the rules' behaviour by promtool's unit tests
(``tests/prometheus/alerts_test.yaml``). Every metric the rules and the Grafana
dashboard query is one that the real processes serve, read from their
``/metrics``; the container's health check asks their ``/ready``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from audio_engine.metrics import TICK_LATENESS_BUCKETS
from audio_engine.sessions.admission import MAX_NULLED_SHARE, MAX_TICK_LATENESS
from audio_engine.settings import EngineSettings
from audiogate.cli import _COMMANDS
from audiogate.healthcheck import ready_urls, role_of
from gateway.settings import GatewaySettings
from loadtest.processes import ServiceProcess, free_port

from .support.waiting import poll_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yaml"
ALERT_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yaml"
DASHBOARD = DEPLOY / "grafana" / "audiogate.json"


def _env_names(model: type[BaseSettings]) -> set[str]:
    prefix = str(model.model_config.get("env_prefix", ""))
    names = set()
    for field, info in model.model_fields.items():
        names.add(f"{prefix}{field}".upper())
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c for c in alias.choices if isinstance(c, str) and c.isupper())
    return names


SETTINGS = _env_names(EngineSettings) | _env_names(GatewaySettings)
#: Variables of the runtime, not ours.
OTHERS = {"PYTHONUNBUFFERED"}


def _env_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile as systemd reads it (KEY=VALUE, '#' comments, quotes)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def test_every_variable_in_the_deploy_files_is_a_setting() -> None:
    named: dict[str, set[str]] = {}
    for path in (DEPLOY / "env").glob("*.env"):
        text = path.read_text()
        named[path.name] = set(_env_file(path)) | set(
            re.findall(r"^# ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    for path in (DEPLOY / "systemd").glob("*.service"):
        named[path.name] = set(re.findall(r"^Environment=([A-Z0-9_]+)=", path.read_text(),
                                          flags=re.M))
    container = (DEPLOY / "Containerfile").read_text()
    env_block = container[container.index("ENV "):container.index("EXPOSE")]
    named["Containerfile"] = set(re.findall(r"([A-Z][A-Z0-9_]+)=", env_block))
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    named["compose.yaml"] = {key for service in compose["services"].values()
                             for key in service.get("environment", {})}
    for source, names in named.items():
        unknown = names - SETTINGS - OTHERS
        assert not unknown, f"{source} sets {sorted(unknown)}, which no process reads"
    assert all(named.values())


def test_the_example_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from the environment, as the units hand the files over."""
    engine = _env_file(DEPLOY / "env" / "engine-a.env")
    for key, value in engine.items():
        monkeypatch.setenv(key, value)
    settings = EngineSettings()
    assert settings.tcp_port == 8190 and settings.consumer_token
    for key in engine:
        monkeypatch.delenv(key)
    gateway = _env_file(DEPLOY / "env" / "gateway-0.env")
    for key, value in gateway.items():
        monkeypatch.setenv(key, value)
    loaded = GatewaySettings()
    nodes = loaded.node_configs
    assert [n.name for n in nodes] == ["a", "b"]
    assert {str(n.socket) for n in nodes} == {"/run/audiogate/engine-a.sock",
                                              "tcp://127.0.0.1:8191"}
    engine_b = _env_file(DEPLOY / "env" / "engine-b.env")
    # The gateway's node b is the engine of engine-b.env, with its token.
    assert nodes[1].api.endswith(engine_b["GO_API_PORT"])
    assert nodes[1].token == engine_b["ENGINE_API_TOKEN"]


def test_compose_nodes_parse_and_use_the_engines_ports() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    gateway = compose["services"]["gateway"]["environment"]
    loaded = GatewaySettings(nodes=gateway["GATEWAY_NODES"], engine_api_token="t")  # type: ignore[call-arg]
    engines = {name for name, service in compose["services"].items()
               if service.get("command") == ["engine"]}
    assert {f"engine-{n.name}" for n in loaded.node_configs} == engines
    for service in engines:
        env = compose["services"][service]["environment"]
        assert all(str(n.socket).endswith(f":{env['ENGINE_TCP_PORT']}")
                   for n in loaded.node_configs)
    for service in compose["services"].values():
        assert service.get("command", ["engine"])[0] in _COMMANDS


def test_the_container_file_copies_every_package_and_runs_our_command() -> None:
    container = (DEPLOY / "Containerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \./\S+$", container, flags=re.M))
    copied |= set(re.findall(r"^COPY ((?:\S+ )+)\./$", container, flags=re.M)[0].split())
    for source in copied:
        assert (ROOT / source).exists(), source
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]
                ["include"]}
    assert packages <= copied, packages - copied
    assert "audiogate" in pyproject["project"]["scripts"]
    assert 'ENTRYPOINT ["audiogate"]' in container
    command = re.search(r'^CMD \["(\w+)"\]', container, flags=re.M)
    assert command is not None and command.group(1) in _COMMANDS
    for port in re.search(r"^EXPOSE (.+)$", container, flags=re.M).group(1).split():  # type: ignore[union-attr]
        assert port.isdigit()


@pytest.mark.parametrize("unit", ["audiogate-engine@.service", "audiogate-gateway@.service"])
def test_units_start_real_modules_and_pass_systemd_analyze(unit: str, tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    command = re.search(r"^ExecStart=(\S+) -m (\S+)$", text, flags=re.M)
    assert command is not None
    assert importlib.util.find_spec(command.group(2)) is not None
    assert "RestartPreventExitStatus=78" in text and "KillSignal=SIGTERM" in text
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze (Debian's systemd) checks the unit files"
    # An instance of the template, with this machine's Python in place of the
    # install path (verify checks that the executable exists).
    instance = tmp_path / unit.replace("@.", "@test.")
    instance.write_text(text.replace(command.group(1), sys.executable))
    (tmp_path / "audiogate.target").write_text((DEPLOY / "systemd" / "audiogate.target")
                                               .read_text())
    result = subprocess.run([analyze, "verify", "--man=no", str(instance)],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(tmp_path) in line or "bad unit" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


# -- metrics: the processes' own /metrics ----------------------------------------------

#: Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up"}
#: The runtime metrics prometheus_client's default registry would have.
RUNTIME = {
    "process_cpu_seconds_total", "process_resident_memory_bytes",
    "process_virtual_memory_bytes", "process_start_time_seconds", "process_open_fds",
    "process_max_fds", "python_info", "python_gc_objects_collected_total",
    "python_gc_collections_total",
}

#: Sample names a family of each type is exposed as (a family with no sample yet,
#: such as a labelled counter nobody incremented, still has its names).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


def exported_names(text: str) -> set[str]:
    """Every series name a Prometheus text exposition can carry."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "by", "without",
                 "on", "ignoring", "group_left", "group_right"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's ``$variables``
    allowed): strings, label matchers, ranges and grouping clauses removed, what
    is left that is neither a function, a keyword nor a number is a metric."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        if match.group(2) is None and match.group(1) not in _PROMQL_WORDS:
            names.add(match.group(1))
    return names


def test_promql_metric_names_finds_metrics_only() -> None:
    expr = ('1 - sum by (instance, le) (rate(a_bucket{le="0.04", x=~"$engine"}[$__rate_interval]))'
            ' / on (instance) group_left b_total offset 5m > 1e3 and c')
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert promql_metric_names("histogram_quantile(0.99, sum(rate(d[5m])))") == {"d"}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in _dashboard_panels() for target in panel["targets"]]


def _names_used() -> dict[str, set[str]]:
    """Metric names each file queries."""
    dashboard = set().union(*map(promql_metric_names, _dashboard_exprs()))
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["query"])
            assert found is not None, variable["query"]
            dashboard.add(found.group(1))
    unit_tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    series = {re.match(r"\w+", entry["series"]).group(0)  # type: ignore[union-attr]
              for case in unit_tests for entry in case["input_series"]}
    return {
        "alerts.yaml": set().union(*(promql_metric_names(r["expr"]) for r in _rules())),
        "audiogate.json": dashboard,
        "alerts_test.yaml": series,
    }


@dataclass
class LiveStack:
    """``audiogate run`` whose gateway has its engine child as a node of its pool
    (so the node metrics are served too), and what both served at /metrics."""

    process: subprocess.Popen[bytes]
    engine_port: int
    gateway_port: int
    engine_metrics: str
    gateway_metrics: str


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    data = tmp_path_factory.mktemp("stack")
    sockets = Path(tempfile.mkdtemp(prefix="ag-"))  # short: Unix socket paths are limited
    engine_port, gateway_port = free_port(), free_port()
    socket_path = sockets / "engine.sock"
    nodes = [{"name": "a", "api": f"http://127.0.0.1:{engine_port}", "socket": str(socket_path)}]
    env = {**os.environ, "GO_API_PORT": str(engine_port), "GATEWAY_PORT": str(gateway_port),
           "SOCKET_PATH": str(socket_path), "GATEWAY_DATA_DIR": str(data),
           "GATEWAY_QUEUE_DB": ":memory:", "GATEWAY_NODES": json.dumps(nodes),
           "GATEWAY_ENGINE_CHECK_INTERVAL": "0.5"}
    log_path = data / "stack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "audiogate", "run"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    gateway = f"http://127.0.0.1:{gateway_port}"
    engine = f"http://127.0.0.1:{engine_port}"

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text(errors="replace")
        try:
            return httpx.get(f"{gateway}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        try:
            poll_until(ready, timeout=90, interval=0.1)
        except TimeoutError:
            raise AssertionError("the stack did not become ready:\n"
                                 + log_path.read_text(errors="replace")) from None
        yield LiveStack(process, engine_port, gateway_port,
                        httpx.get(f"{engine}/metrics", timeout=5).text,
                        httpx.get(f"{gateway}/metrics", timeout=5).text)
    finally:
        children = psutil.Process(process.pid).children(recursive=True) \
            if process.poll() is None else []
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for child in children:
            if child.is_running():
                child.kill()


def test_both_processes_serve_runtime_metrics(live_stack: LiveStack) -> None:
    engine = exported_names(live_stack.engine_metrics)
    gateway = exported_names(live_stack.gateway_metrics)
    assert RUNTIME <= engine, RUNTIME - engine
    assert RUNTIME <= gateway, RUNTIME - gateway
    # Each describes its own process: the engine is the stack's child.
    child = psutil.Process(live_stack.process.pid).children()[0]
    for text, process in ((live_stack.engine_metrics, child),
                          (live_stack.gateway_metrics, psutil.Process(live_stack.process.pid))):
        values = {sample.name: sample.value for family in text_string_to_metric_families(text)
                  for sample in family.samples}
        assert abs(values["process_start_time_seconds"] - process.create_time()) < 2
        assert values["process_resident_memory_bytes"] > 10_000_000
        assert values["process_cpu_seconds_total"] > 0


def test_every_metric_queried_is_served(live_stack: LiveStack) -> None:
    served = (exported_names(live_stack.engine_metrics)
              | exported_names(live_stack.gateway_metrics))
    for source, names in _names_used().items():
        assert names, source
        unknown = names - served - PROMETHEUS_OWN
        assert not unknown, f"{source} queries {sorted(unknown)}, which no process serves"


# -- alert rules -------------------------------------------------------------------------


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian's prometheus, make setup-test) checks the rules"
    return promtool


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_alert_rules_pass_promtool() -> None:
    out = _run(_promtool(), "check", "rules", ALERTS)
    assert f"SUCCESS: {len(_rules())} rules found" in out
    # The example configuration loads them by a relative path.
    _run(_promtool(), "check", "config", PROMETHEUS_CONFIG.name, cwd=PROMETHEUS_CONFIG.parent)


def test_each_alert_fires_on_its_series_and_only_there() -> None:
    """promtool's unit tests evaluate the rules over time (``for`` included)."""
    out = _run(_promtool(), "test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert "SUCCESS" in out
    tested = set(re.findall(r"alertname=\"(\w+)\"", ALERT_TESTS.read_text()))
    tested |= {name for pattern in re.findall(r'alertname=~"([^"]+)"', ALERT_TESTS.read_text())
               for name in (r["alert"] for r in _rules()) if re.fullmatch(pattern, name)}
    assert {rule["alert"] for rule in _rules()} <= tested


def test_the_alerts_cover_what_operators_asked_for() -> None:
    alerts = {rule["alert"]: rule for rule in _rules()}
    assert {"AudiogateEngineDown", "AudiogateEngineNotReady", "AudiogateEngineClockStalled",
            "AudiogateLatePages", "AudiogateUnderruns", "AudiogatePlaysRefused",
            "AudiogateOpusComplexityLowered", "AudiogateNodeDown", "AudiogateEngineRestarting",
            "AudiogateMemoryGrowing"} <= set(alerts)
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    # The engine's own bounds of "degrading" (admission by load), at a bucket edge.
    assert MAX_TICK_LATENESS in TICK_LATENESS_BUCKETS
    assert f'le="{MAX_TICK_LATENESS:g}"' in alerts["AudiogateLatePages"]["expr"]
    assert f"> {MAX_NULLED_SHARE:g}" in alerts["AudiogateUnderruns"]["expr"]


# -- the Grafana dashboard ---------------------------------------------------------------


def test_the_dashboard_is_importable_with_a_datasource_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24
        area = {(x, y) for x in range(box["x"], box["x"] + box["w"])
                for y in range(box["y"], box["y"] + box["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    for panel in _dashboard_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["title"] and panel["description"] and panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"] and target["refId"]
    for name in ("engine", "gateway"):
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    used = _names_used()["audiogate.json"]
    assert {"audiogate_engine_sessions", "audiogate_engine_tick_lateness_seconds_bucket",
            "audiogate_engine_underruns_total", "audiogate_engine_frames_dropped_total",
            "audiogate_engine_plays_refused_total", "audiogate_engine_opus_complexity",
            "audiogate_engine_complexity_steps_total", "audiogate_engine_workers",
            "audiogate_engine_worker_restarts_total", "audiogate_gateway_node_up",
            "audiogate_stack_engine_restarts_total", "process_resident_memory_bytes",
            "process_cpu_seconds_total"} <= used


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, Grafana's variables
    replaced by what they expand to."""
    rules = []
    for index, expr in enumerate(_dashboard_exprs()):
        expr = expr.replace("$__rate_interval", "1m")
        expr = re.sub(r"\$(engine|gateway)", ".*", expr)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in _run(_promtool(), "check", "rules", path)


# -- the container's health check --------------------------------------------------------


def test_the_container_file_checks_ready() -> None:
    container = (DEPLOY / "Containerfile").read_text()
    check = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.+\])$", container, flags=re.M)
    assert check is not None
    command = json.loads(check.group(1))
    assert command[:2] == ["python", "-m"]
    assert importlib.util.find_spec(command[2]) is not None


@pytest.mark.parametrize(("command", "role"), [
    (["/usr/local/bin/python", "/usr/local/bin/audiogate", "engine"], "engine"),
    (["/usr/local/bin/python", "/usr/local/bin/audiogate", "gateway"], "gateway"),
    (["python", "-m", "audiogate", "run"], "run"),
    (["python", "-m", "audio_engine"], "engine"),
    (["python", "-m", "gateway", "--port", "8080"], "gateway"),
    (["/opt/audiogate/.venv/bin/audiogate-engine"], "engine"),
    (["/sbin/docker-init", "--", "audiogate", "loadtest"], None),
    ([], None),
])
def test_the_health_check_reads_the_role(command: list[str], role: str | None) -> None:
    assert role_of(command) == role


def test_the_health_check_urls() -> None:
    env = {"GO_API_PORT": "9001", "GATEWAY_PORT": "9002", "ENGINE_API_HOST": "0.0.0.0",
           "GATEWAY_HOST": "10.1.2.3"}
    assert ready_urls("engine", env) == ["http://127.0.0.1:9001/ready"]
    assert ready_urls("run", env) == ["http://10.1.2.3:9002/ready"]
    assert ready_urls(None, {}) == ["http://127.0.0.1:8080/ready", "http://127.0.0.1:8180/ready"]
    assert ready_urls("engine", {"ENGINE_API_HOST": "::"}) == ["http://[::1]:8180/ready"]


def _health_check(role: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audiogate.healthcheck", role],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=30)


def test_the_health_check_asks_ready(live_stack: LiveStack) -> None:
    engine = _health_check("engine", GO_API_PORT=str(live_stack.engine_port))
    assert engine.returncode == 0, engine.stdout + engine.stderr
    assert f"127.0.0.1:{live_stack.engine_port}/ready: 200" in engine.stdout
    stack = _health_check("run", GATEWAY_PORT=str(live_stack.gateway_port))
    assert stack.returncode == 0, stack.stdout + stack.stderr
    nobody = _health_check("engine", GO_API_PORT=str(free_port()))
    assert nobody.returncode == 1 and "nothing listens" in nobody.stdout


class _LonelyGateway(ServiceProcess):
    """A gateway whose engine does not exist: it serves, it is not ready."""

    module = "gateway"


def test_the_health_check_fails_a_gateway_that_is_not_ready() -> None:
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="ag-"))
    env = {"GO_API_PORT": str(free_port()), "SOCKET_PATH": str(directory / "none.sock"),
           "GATEWAY_PORT": str(port), "GATEWAY_DATA_DIR": str(directory),
           "GATEWAY_QUEUE_DB": ":memory:"}
    with _LonelyGateway(env, port=port, directory=directory):
        result = _health_check("gateway", GATEWAY_PORT=str(port))
    assert result.returncode == 1
    assert "503" in result.stdout and "not connected to the engine socket" in result.stdout
