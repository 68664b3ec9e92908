"""The shared configuration of every Lavalink JSON model.

Lavalink's keys are camelCase (``isSeekable``, ``guildId``); the models use snake_case
attributes and the exact camelCase key as each field's alias. Models are frozen, accept
either spelling when built in Python, ignore unknown keys when parsed (Lavalink's own
parser does; clients add keys across versions) and are written with ``dump()``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

__all__ = ["JsonObject", "LavalinkModel", "Snowflake", "StrictBool", "StrictInt", "StrictStr"]

#: A free-form JSON object (``pluginInfo``, ``userData``, ``filters``).
JsonObject = dict[str, Any]
#: A Discord id: Lavalink carries snowflakes as decimal strings.
Snowflake = Annotated[StrictStr, Field(pattern=r"^[0-9]{1,20}$")]


class LavalinkModel(BaseModel):
    """Base class: camelCase aliases, frozen, unknown keys ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="ignore",
    )

    def dump(self) -> dict[str, Any]:
        """The JSON object Lavalink would send (camelCase keys, JSON types)."""
        return self.model_dump(mode="json", by_alias=True)

    def dump_json(self) -> str:
        """``dump()`` as compact JSON text."""
        return self.model_dump_json(by_alias=True)
