"""Settings from the environment and flags, with errors that name the setting.

Both processes' settings are pydantic-settings models; a bad value becomes a
``StartupError`` such as ``bad setting GO_API_PORT (--go-api-port): Input should
be a valid integer (got 'abc')``. Secret values are never echoed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic_settings import BaseSettings, CliApp, SettingsError

from applog import configure_logging
from audiogate.errors import StartupError
from audiogate.settings_help import help_source

__all__ = ["load_settings", "setting_name", "start_logging"]

S = TypeVar("S", bound=BaseSettings)

#: Longest input value quoted back in an error line.
_MAX_QUOTED = 60


def setting_name(model: type[BaseSettings], field: str) -> str:
    """``ENV_NAME (--flag-name)`` of *field* (a field name or one of its aliases).

    Unknown names come back as they are.
    """
    name = _field_name(model, field)
    info = model.model_fields.get(name)
    if info is None:
        return field
    alias = info.validation_alias
    env = f"{model.model_config.get('env_prefix', '')}{name}".upper()
    flag = name
    if isinstance(alias, AliasChoices):
        # Our convention: (python_name, ENV_NAME); the upper-case choice is the
        # variable, the first choice the flag (engine_token: --engine-api-token).
        uppers = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        env = uppers[0] if uppers else env
        first = alias.choices[0]
        flag = first.lower() if isinstance(first, str) else flag
    elif isinstance(alias, str):
        env = alias.upper()
    return f"{env} (--{flag.replace('_', '-')})"


def _field_name(model: type[BaseSettings], field: str) -> str:
    if field in model.model_fields:
        return field
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        if field in choices:
            return name
    return field


def _describe(model: type[BaseSettings], exc: ValidationError) -> str:
    error = exc.errors()[0]
    if not error["loc"]:  # a rule over several settings (a model validator)
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"bad settings: {message}"
    location = str(error["loc"][0])
    name = _field_name(model, location)
    info = model.model_fields.get(name)
    secret = info is not None and SecretStr in _annotation_args(info.annotation)
    text = f"bad setting {setting_name(model, location)}: {error['msg']}"
    value = error.get("input")
    if not secret and isinstance(value, str | int | float) and not isinstance(value, bool):
        shown = str(value)
        if len(shown) > _MAX_QUOTED:
            shown = shown[:_MAX_QUOTED] + "..."
        text += f" (got {shown!r})"
    more = len(exc.errors()) - 1
    if more:
        text += f"; and {more} more"
    return text


def _annotation_args(annotation: object) -> tuple[object, ...]:
    return (annotation, *getattr(annotation, "__args__", ()))


def load_settings(model: type[S], argv: Sequence[str], *, epilog: str | None = None) -> S:
    """Settings from the environment, then *argv* flags (``--help`` prints every
    setting in plain words, then *epilog*, and exits 0).

    Raises:
        StartupError: a value is invalid; the message names the variable and flag.
    """
    try:
        return CliApp.run(model, cli_args=list(argv),
                          cli_settings_source=help_source(model, epilog))
    except ValidationError as exc:
        raise StartupError(_describe(model, exc)) from exc
    except SettingsError as exc:
        raise StartupError(f"bad setting: {exc}") from exc


def start_logging(model: type[BaseSettings], level: str, json_lines: bool) -> None:
    """``applog.configure_logging``, with an unknown *level* reported as a bad
    ``log_level`` setting of *model*.

    Raises:
        StartupError: *level* is not a logging level name.
    """
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise StartupError(
            f"bad setting {setting_name(model, 'log_level')}: unknown log level {level!r} "
            "(use DEBUG, INFO, WARNING, ERROR or CRITICAL)"
        )
    configure_logging(level, json_lines)
