"""``--help`` of the settings models in plain words.

pydantic-settings builds an argparse parser from a settings model and names each
flag's value after its Python type: ``--node-token {SecretStr,null}``,
``--socket-path Path``, ``--hello-timeout float``. An operator reading
``--help`` needs to know what to type: a secret, seconds, a path, a port. This
module turns the type (and, for numbers, the unit the setting's name carries)
into such a word, says ``unset`` instead of ``null`` and ``empty`` instead of
nothing, and otherwise leaves pydantic-settings in charge of parsing.

The words come from the annotation and the field name alone, never from a list
of particular settings that must exist: a setting that is added or removed
gets a word by the same rules, and nothing here breaks.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, CliSettingsSource

__all__ = ["env_name", "help_source", "plain_kind", "settings_table"]

#: Numbers whose name ends so are measured in that unit (first match wins).
_NUMBER_UNITS = (
    ("_ms", "MILLISECONDS"),
    ("_mb", "MEGABYTES"),
    ("_bytes", "BYTES"),
    ("_port", "PORT"),
    ("_seconds", "SECONDS"),
    ("_timeout", "SECONDS"),
    ("_interval", "SECONDS"),
    ("_threshold", "SECONDS"),
    ("_linger", "SECONDS"),
    ("_after", "SECONDS"),
    ("_id", "ID"),
)
#: Names whose unit is not in a suffix. Looked up, never required: a name that
#: is gone costs nothing, a new one falls back to the rules above.
_NAMED = {
    "port": "PORT",
    "host": "ADDRESS",
    "index_memory": "BYTES",
    "cpu_budget": "CORES",
    "max_load": "FRACTION",
    "loudness_target": "LUFS",
    "log_level": "LEVEL",
    "socket_mode": "OCTAL",
    "nodes": "JSON",
    "queue_db": "PATH",
    "allowed_origins": "ORIGINS",
    "allowed_endpoints": "ADDRESS:PORT,...",
    "drain_nodes": "NAMES",
    "discord_shard_ids": "IDS",
}
#: Metavars pydantic-settings would print and nothing here should leave behind.
_NONE_WORDS = {"null": "unset", "": "empty"}


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None`` (``Optional[X]``); anything else unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def plain_kind(name: str, annotation: Any) -> str | None:
    """The word for the value of setting *name* of type *annotation*:
    ``SECONDS``, ``SECRET``, ``PATH``, ``PORT``, ``{opuslib,pyav}``...; None for
    a boolean (a flag that takes no value)."""
    kind = _without_none(annotation)
    if kind is bool:
        return None
    if name in _NAMED:
        return _NAMED[name]
    if get_origin(kind) is Literal:
        return "{" + ",".join(str(choice) for choice in get_args(kind)) + "}"
    if isinstance(kind, type) and issubclass(kind, SecretStr):
        return "SECRET"
    if isinstance(kind, type) and issubclass(kind, Path):
        return "DIRECTORY" if name.endswith("_dir") else "PATH"
    if kind in (int, float):
        for suffix, unit in _NUMBER_UNITS:
            if name.endswith(suffix):
                return unit
        return "INTEGER" if kind is int else "NUMBER"
    if kind is str:
        if name.endswith("_host"):
            return "ADDRESS"
        if name.endswith(("_token", "_secret")):
            return "SECRET"
        return "TEXT"
    return "VALUE"


def _field_for(model: type[BaseSettings], dest: str) -> tuple[str, FieldInfo] | None:
    """The field an argparse destination stands for (its name or an alias)."""
    name = dest.replace("-", "_")
    if name in model.model_fields:
        return name, model.model_fields[name]
    for field, info in model.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        if any(isinstance(c, str) and c.lower() == name.lower() for c in choices):
            return field, info
    return None


def _plain_default(help_text: str, is_flag: bool) -> str:
    for word, plain in _NONE_WORDS.items():
        help_text = help_text.replace(f"(default: {word})", f"(default: {plain})")
    if is_flag:
        help_text = help_text.replace("(default: False)", "(default: off)")
        help_text = help_text.replace("(default: True)", "(default: on)")
    return help_text


def _plain_add_argument(model: type[BaseSettings]) -> Callable[..., Any]:
    """``ArgumentParser.add_argument`` with plain metavars and defaults."""

    # *container* is the parser or one of its argument groups.
    def add_argument(container: Any, *args: Any, **kwargs: Any) -> Any:
        found = _field_for(model, str(kwargs.get("dest", "")))
        if found is not None:
            name, info = found
            kind = plain_kind(name, info.annotation)
            if "metavar" in kwargs and kind is not None:
                kwargs["metavar"] = kind
            help_text = kwargs.get("help")
            if isinstance(help_text, str) and help_text != argparse.SUPPRESS:
                kwargs["help"] = _plain_default(help_text, is_flag=kind is None)
        return container.add_argument(*args, **kwargs)

    return add_argument


def help_source(model: type[BaseSettings], epilog: str | None = None
                ) -> CliSettingsSource[argparse.ArgumentParser]:
    """A CLI settings source for *model* whose ``--help`` is in plain words,
    with *epilog* after the list of flags. Pass it to ``CliApp.run`` with the
    arguments (it parses nothing by itself)."""
    source: CliSettingsSource[argparse.ArgumentParser] = CliSettingsSource(
        model, add_argument_method=_plain_add_argument(model),
        # As BaseSettings builds its own CLI source: flags as the model reads
        # its variables (ours: case-insensitive, so GO_API_PORT is --go-api-port).
        case_sensitive=bool(model.model_config.get("case_sensitive", False)))
    if epilog:
        source.root_parser.epilog = epilog
    return source


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable of *field* (its upper-case alias, or the
    model's prefix and the field name)."""
    alias = model.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        uppers = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        if uppers:
            return uppers[0]
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def settings_table(model: type[BaseSettings], fields: Iterable[str],
                   indent: str = "  ") -> str:
    """One line per field: its variable, the kind of value and its default,
    aligned (for an ``--help`` epilog; the descriptions are in the model's own
    ``--help``)."""
    rows: list[Sequence[str]] = []
    for field in fields:
        info = model.model_fields[field]
        kind = plain_kind(field, info.annotation) or "true|false"
        default = info.get_default(call_default_factory=True)
        if default is None or default == "":
            shown = _NONE_WORDS["null" if default is None else ""]
        elif isinstance(default, bool):
            shown = "true" if default else "false"
        else:
            shown = str(default)
        rows.append((env_name(model, field), kind, shown))
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(2)]
    return "\n".join(f"{indent}{var:<{widths[0]}}  {kind:<{widths[1]}}  default {shown}"
                     for var, kind, shown in rows)
