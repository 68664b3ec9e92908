"""The now-playing message's buttons: pause/resume, skip, stop.

Each button is a discord.py ``DynamicItem``: its custom id carries the action and
the guild (``ag:skip:123``), and discord.py matches presses by that pattern. So
no view object is kept per message (nothing grows with the number of
announcements) and buttons keep working after the bot restarts.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Protocol

import discord

__all__ = ["Action", "ControlButton", "ControlHandler", "controls_view"]


class Action(StrEnum):
    """What a button does."""

    PAUSE = "pause"
    RESUME = "resume"
    SKIP = "skip"
    STOP = "stop"


class ControlHandler(Protocol):
    """What a press is handed to (the bot's ``MusicCommands``)."""

    async def press(self, interaction: Any, action: Action, guild_id: int) -> None: ...


_LOOK = {
    Action.PAUSE: ("Pause", "⏸️", discord.ButtonStyle.secondary),
    Action.RESUME: ("Resume", "▶️", discord.ButtonStyle.success),
    Action.SKIP: ("Skip", "⏭️", discord.ButtonStyle.primary),
    Action.STOP: ("Stop", "⏹️", discord.ButtonStyle.danger),
}


class ControlButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=re.compile(r"ag:(?P<action>pause|resume|skip|stop):(?P<guild>[0-9]{1,20})"),
):
    """One control button of one guild's announcement."""

    def __init__(self, action: Action, guild_id: int) -> None:
        label, emoji, style = _LOOK[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=f"ag:{action.value}:{guild_id}"))
        self.action = action
        self.guild_id = guild_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str], /
                             ) -> ControlButton:
        """Rebuild the button from a press (discord.py calls this)."""
        return cls(Action(match["action"]), int(match["guild"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the press to the bot's command handlers."""
        handler: ControlHandler | None = getattr(interaction.client, "handlers", None)
        if handler is None:
            await interaction.response.send_message("These buttons are not active.",
                                                    ephemeral=True)
            return
        await handler.press(interaction, self.action, self.guild_id)


def controls_view(guild_id: int, *, paused: bool) -> discord.ui.View:
    """The row of buttons for *guild_id*'s announcement."""
    view = discord.ui.View(timeout=None)
    view.add_item(ControlButton(Action.RESUME if paused else Action.PAUSE, guild_id))
    view.add_item(ControlButton(Action.SKIP, guild_id))
    view.add_item(ControlButton(Action.STOP, guild_id))
    return view
