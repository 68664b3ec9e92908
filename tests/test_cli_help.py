"""``--help`` of every command says what each value is in plain words (a secret,
seconds, a path), never a Python or pydantic type; ``audiogate run --help`` says
which engine settings reach its engine child, and that list is the one the
child's environment is built by."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import AliasChoices, Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from audio_engine.settings import EngineSettings
from audiogate.config import load_settings, setting_name
from audiogate.settings_help import env_name, help_source, plain_kind, settings_table
from audiogate.stack import StackSettings, _engine_environment, _help_epilog
from gateway.settings import GatewaySettings

COMMANDS = {
    "python -m audio_engine": ["-m", "audio_engine"],
    "python -m gateway": ["-m", "gateway"],
    "audiogate": ["-m", "audiogate"],
    "audiogate run": ["-m", "audiogate", "run"],
    "audiogate engine": ["-m", "audiogate", "engine"],
    "audiogate gateway": ["-m", "audiogate", "gateway"],
    "audiogate loadtest": ["-m", "audiogate", "loadtest"],
}
#: What pydantic-settings used to print for a flag's value: Python types, its
#: unions with null.
_TYPE_WORDS = re.compile(
    r"\b(?:int|float|str|bool|Path|PosixPath|SecretStr|NoneType|Optional|Literal|null)\b")
#: Type names and reprs that have no business anywhere in a help text (a
#: description may well say "loudness": null, a JSON value).
_REPRS = re.compile(r"\{[^}]*null\}|\b(?:SecretStr|PosixPath|NoneType)\b|<class|typing\.|"
                    r"pydantic\.")
_FLAG_VALUE = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[ =]([^\s,\]]+)")


@functools.cache
def _helps() -> dict[str, str]:
    """Every command's ``--help``, each from its own real process, all started at
    once and read once per test run: a help text is fixed for a given tree, so the
    tests below share it (one process per test took ~26 s, mostly interpreter and
    import start-up)."""
    processes = {command: subprocess.Popen([sys.executable, *argv, "--help"],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True, env={**os.environ, "COLUMNS": "100"})
                 for command, argv in COMMANDS.items()}
    texts = {}
    try:
        for command, process in processes.items():
            stdout, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, (command, stderr)
            texts[command] = stdout
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return texts


def _help(command: str) -> str:
    return _helps()[command]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_names_no_internal_types(command: str) -> None:
    text = _help(command)
    assert "usage:" in text
    for value in _FLAG_VALUE.findall(text):
        assert not _TYPE_WORDS.search(value), f"{command} --help: a flag takes {value!r}"
    assert not _REPRS.search(text), _REPRS.search(text)
    assert "(default: null)" not in text and "(default: )" not in text


def test_the_engines_help_says_what_each_value_is() -> None:
    text = _help("python -m audio_engine")
    for flag, kind in [("--hello-timeout", "SECONDS"), ("--node-token", "SECRET"),
                       ("--api-token", "SECRET"), ("--socket-path", "PATH"),
                       ("--media-dir", "DIRECTORY"), ("--go-api-port", "PORT"),
                       ("--tcp-port", "PORT"), ("--max-body-bytes", "BYTES"),
                       ("--first-audio-margin-ms", "MILLISECONDS"),
                       ("--resolve-memory-mb", "MEGABYTES"), ("--max-sessions", "INTEGER"),
                       ("--opus-encoder", "{opuslib,pyav}"), ("--api-host", "ADDRESS")]:
        assert f"[{flag} {kind}]" in text, flag
    assert "(default: unset)" in text
    assert "--log-json, --no-log-json" in text


def test_the_gateways_help_says_what_each_value_is() -> None:
    text = _help("python -m gateway")
    for flag, kind in [("--discord-token", "SECRET"), ("--cookie-secret", "SECRET"),
                       ("--data-dir", "DIRECTORY"), ("--port", "PORT"),
                       ("--engine-check-interval", "SECONDS"), ("--nodes", "JSON"),
                       ("--room-linger", "SECONDS"), ("--discord-guild-id", "ID")]:
        assert f"[{flag} {kind}]" in text, flag
    assert "(default: empty)" in text


@pytest.mark.parametrize(("command", "model"), [("python -m audio_engine", EngineSettings),
                                              ("audiogate run", StackSettings)])
def test_error_lines_name_the_real_flags(command: str, model: type[BaseSettings]) -> None:
    """``setting_name`` (in every ``error:`` line) names a flag the command has."""
    text = _help(command)
    for field in model.model_fields:
        flag = re.search(r"\((--[a-z0-9-]+)\)$", setting_name(model, field))
        assert flag is not None and f"[{flag.group(1)}" in text, setting_name(model, field)


def test_audiogate_run_help_lists_the_engine_settings_it_passes_on() -> None:
    text = _help("audiogate run")
    assert "--engine-max-restarts" in text  # its own flags first
    epilog = text[text.index("the engine child:"):]
    listed = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) +\S+ +default ", epilog, flags=re.M))
    assert "ENGINE_MAX_SESSIONS" in listed and "ENGINE_OPUS_COMPLEXITY" in listed
    assert re.search(r"^  ENGINE_HELLO_TIMEOUT +SECONDS +default 2.0$", epilog, flags=re.M)
    assert re.search(r"^    ENGINE_API_HOST += GATEWAY_ENGINE_HOST \(--engine-host\)$", epilog,
                     flags=re.M)
    assert re.search(r"^    ENGINE_MEDIA_DIR += GATEWAY_DATA_DIR \(--data-dir\)$", epilog,
                     flags=re.M)
    assert "--engine-api-token reaches the gateway only" in epilog


def test_the_list_in_run_help_is_what_the_child_gets(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """Every engine variable set in the stack's environment reaches the child
    unchanged exactly when the help lists it as passed on; the others are the
    ones the help says the stack sets or defaults."""
    settings = StackSettings(engine_host="127.0.0.2")  # type: ignore[call-arg]
    variables = {env_name(EngineSettings, field) for field in EngineSettings.model_fields}
    for variable in variables:
        monkeypatch.setenv(variable, f"from-the-environment-{variable}")
    child = _engine_environment(settings, tmp_path)
    unchanged = {v for v in variables if child[v] == f"from-the-environment-{v}"}
    epilog = _help_epilog()
    passed_on = epilog[epilog.index("engine settings passed on"):]
    listed = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", passed_on, flags=re.M))
    assert listed == unchanged - {"ENGINE_LOG_LEVEL", "ENGINE_MEDIA_DIR"}
    # Those two are only defaulted: set in the environment, they pass unchanged.
    assert {"ENGINE_LOG_LEVEL", "ENGINE_MEDIA_DIR"} <= unchanged
    assert child["ENGINE_API_HOST"] == "127.0.0.2"
    assert child["GO_API_PORT"] == str(settings.go_api_port)
    assert child["SOCKET_PATH"] == str(settings.socket_path)
    for variable in variables - unchanged:
        assert f"    {variable} " in epilog, variable
    monkeypatch.delenv("ENGINE_LOG_LEVEL")
    monkeypatch.delenv("ENGINE_MEDIA_DIR")
    child = _engine_environment(settings, tmp_path)
    assert child["ENGINE_LOG_LEVEL"] == settings.log_level
    assert child["ENGINE_MEDIA_DIR"] == str(tmp_path)


def test_plain_kinds() -> None:
    assert plain_kind("node_token", SecretStr | None) == "SECRET"
    assert plain_kind("tls_cert", Path | None) == "PATH"
    assert plain_kind("data_dir", Path) == "DIRECTORY"
    assert plain_kind("read_timeout", float) == "SECONDS"
    assert plain_kind("tcp_port", int | None) == "PORT"
    assert plain_kind("log_json", bool) is None
    assert plain_kind("anything_new", int) == "INTEGER"
    assert plain_kind("anything_new", float) == "NUMBER"
    assert plain_kind("anything_new", str) == "TEXT"
    assert plain_kind("anything_new", list[int]) == "VALUE"


def test_help_survives_settings_that_come_and_go(capsys: pytest.CaptureFixture[str]) -> None:
    """The renderer names no setting it needs: the engine's settings without its
    test knobs (ENGINE_DEBUG_*, moving out of the production settings), and a
    model of settings it never saw, render as well."""

    class Config(BaseSettings):
        model_config = EngineSettings.model_config

    fields = {name: (info.annotation, info) for name, info in EngineSettings.model_fields.items()
              if not name.startswith("debug_")}
    trimmed = create_model("Trimmed", __base__=Config, **fields)  # type: ignore[call-overload]
    text = help_source(trimmed).root_parser.format_help()
    assert "--hello-timeout SECONDS" in text and "debug" not in text
    table = settings_table(trimmed, trimmed.model_fields)
    assert "ENGINE_DEBUG" not in table and "ENGINE_HELLO_TIMEOUT" in table

    class Unseen(BaseSettings):
        """Settings of a process yet to come."""

        model_config = SettingsConfigDict(env_prefix="NEW_", cli_prog_name="new",
                                          cli_kebab_case=True, cli_implicit_flags=True)
        wait_seconds: float = Field(1.5, description="how long")
        secret: SecretStr | None = Field(None, description="a secret",
                                         validation_alias=AliasChoices("secret", "NEW_KEY"))
        on: bool = Field(False, description="a switch")

    with pytest.raises(SystemExit) as exited:
        load_settings(Unseen, ["--help"], epilog="after the flags")
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--wait-seconds SECONDS" in text and "--secret SECRET" in text
    assert "(default: unset)" in text and "(default: off)" in text
    assert text.rstrip().endswith("after the flags")
    assert load_settings(Unseen, ["--wait-seconds", "3"]).wait_seconds == 3.0


def test_flags_parse_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ROOM_LINGER", "5")
    settings = load_settings(GatewaySettings, ["--port", "9999", "--no-log-json"])
    assert settings.port == 9999 and settings.room_linger == 5.0 and not settings.log_json
    engine = load_settings(EngineSettings, ["--tcp-port", "null", "--GO-API-PORT", "9000"])
    assert engine.tcp_port is None and engine.go_api_port == 9000
    with pytest.raises(SystemExit) as exited:
        load_settings(EngineSettings, ["--no-such-flag"])
    assert exited.value.code == 2
