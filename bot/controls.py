"""The now-playing message's buttons: previous, pause/resume, skip, stop on the first
row; loop (its label shows the mode; a press moves to the next one), shuffle and the
queue on the second.

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

from gateway.player import LoopMode

__all__ = ["Action", "ControlButton", "ControlHandler", "controls_view", "next_loop"]


class Action(StrEnum):
    """What a button does."""

    PREVIOUS = "previous"
    PAUSE = "pause"
    RESUME = "resume"
    SKIP = "skip"
    STOP = "stop"
    LOOP = "loop"
    SHUFFLE = "shuffle"
    QUEUE = "queue"


class ControlHandler(Protocol):
    """What a press is handed to (the bot's ``MusicCommands``)."""

    async def press(self, interaction: Any, action: Action, guild_id: int) -> None: ...


#: Label, emoji, style and row of each button.
_LOOK = {
    Action.PREVIOUS: ("Previous", "⏮️", discord.ButtonStyle.secondary, 0),
    Action.PAUSE: ("Pause", "⏸️", discord.ButtonStyle.secondary, 0),
    Action.RESUME: ("Resume", "▶️", discord.ButtonStyle.success, 0),
    Action.SKIP: ("Skip", "⏭️", discord.ButtonStyle.primary, 0),
    Action.STOP: ("Stop", "⏹️", discord.ButtonStyle.danger, 0),
    Action.LOOP: ("Loop", "🔁", discord.ButtonStyle.secondary, 1),
    Action.SHUFFLE: ("Shuffle", "🔀", discord.ButtonStyle.secondary, 1),
    Action.QUEUE: ("Queue", "📜", discord.ButtonStyle.secondary, 1),
}
_ACTIONS = "|".join(action.value for action in Action)


class ControlButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=re.compile(rf"ag:(?P<action>{_ACTIONS}):(?P<guild>[0-9]{{1,20}})"),
):
    """One control button of one guild's announcement (*label* replaces the
    action's own, e.g. the loop button's mode)."""

    def __init__(self, action: Action, guild_id: int, *, label: str | None = None) -> None:
        name, emoji, style, row = _LOOK[action]
        super().__init__(discord.ui.Button(label=label or name, emoji=emoji, style=style,
                                           row=row, custom_id=f"ag:{action.value}:{guild_id}"))
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


def controls_view(guild_id: int, *, paused: bool, loop: LoopMode = LoopMode.OFF
                  ) -> discord.ui.View:
    """The buttons of *guild_id*'s announcement."""
    view = discord.ui.View(timeout=None)
    view.add_item(ControlButton(Action.PREVIOUS, guild_id))
    view.add_item(ControlButton(Action.RESUME if paused else Action.PAUSE, guild_id))
    view.add_item(ControlButton(Action.SKIP, guild_id))
    view.add_item(ControlButton(Action.STOP, guild_id))
    view.add_item(ControlButton(Action.LOOP, guild_id, label=f"Loop: {loop.value}"))
    view.add_item(ControlButton(Action.SHUFFLE, guild_id))
    view.add_item(ControlButton(Action.QUEUE, guild_id))
    return view


def next_loop(mode: LoopMode) -> LoopMode:
    """The mode a press of the loop button moves to: off, track, queue, off..."""
    modes = list(LoopMode)
    return modes[(modes.index(mode) + 1) % len(modes)]
