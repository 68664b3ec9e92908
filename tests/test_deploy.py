"""The deployment files in deploy/ name real commands and real settings, and the
example settings load: what can be checked without a container runtime or a
running systemd. The unit files are checked by ``systemd-analyze verify``."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from audio_engine.settings import EngineSettings
from audiogate.cli import _COMMANDS
from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


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
