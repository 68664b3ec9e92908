"""``/settings``: a guild's DJ role, 24/7, default volume and announcement channel, for
members with Manage Server."""

from __future__ import annotations

from typing import Any

import discord

from bot.guild_settings import GuildSettingsStore
from bot.presence import EmptyChannelWatcher
from bot.replies import refuse, reply

__all__ = ["SettingsCommands"]


class SettingsCommands:
    """Handlers of the ``/settings`` group.

    Args:
        settings: where they are stored.
        watcher: re-counts listeners when 24/7 changes.
    """

    def __init__(self, settings: GuildSettingsStore, watcher: EmptyChannelWatcher) -> None:
        self.settings = settings
        self.watcher = watcher

    async def _allowed(self, interaction: Any) -> int | None:
        permissions = getattr(interaction, "permissions", None)
        if interaction.guild_id is None:
            await refuse(interaction, "Settings belong to a server, not to DMs.")
            return None
        if permissions is None or not permissions.manage_guild:
            await refuse(interaction,
                         "You need the Manage Server permission to change my settings.")
            return None
        return int(interaction.guild_id)

    async def dj(self, interaction: Any, role: Any | None) -> None:
        """``/settings dj [role]``: set (or, without a role, clear) the DJ role."""
        guild_id = await self._allowed(interaction)
        if guild_id is None:
            return
        await self.settings.update(guild_id, dj_role_id=int(role.id) if role else None)
        if role is None:
            await reply(interaction, "No DJ role: everyone listening may control playback.")
        else:
            await reply(interaction, f"DJ role set to **{role.name}**: only DJs can skip, "
                                     "stop or change the queue for others.")

    async def stay(self, interaction: Any, on: bool) -> None:
        """``/settings stay on``: 24/7 (stay in voice when nobody listens)."""
        guild_id = await self._allowed(interaction)
        if guild_id is None:
            return
        await self.settings.update(guild_id, stay=on)
        self.watcher.check(guild_id)
        if on:
            await reply(interaction, "24/7 is on: I stay in the voice channel even when "
                                     "nobody is listening.")
        else:
            minutes = self.watcher.leave_after / 60
            await reply(interaction, "24/7 is off: I pause and leave after "
                                     f"{minutes:g} min with nobody listening.")

    async def volume(self, interaction: Any, percent: int | None) -> None:
        """``/settings volume [percent]``: the volume a session starts at when I join
        with nothing queued (without a value: as the last session left it)."""
        guild_id = await self._allowed(interaction)
        if guild_id is None:
            return
        await self.settings.update(guild_id, volume=percent)
        if percent is None:
            await reply(interaction, "No default volume: each session starts at the volume "
                                     "the last one had.")
        else:
            await reply(interaction, f"Default volume set to {percent} %: each time I join "
                                     "with nothing queued, playback starts there.")

    async def announce(self, interaction: Any, channel: Any | None) -> None:
        """``/settings announce [channel]``: where now-playing messages go (without a
        channel: where the command that started playback was sent)."""
        guild_id = await self._allowed(interaction)
        if guild_id is None:
            return
        await self.settings.update(guild_id,
                                   announce_channel_id=int(channel.id) if channel else None)
        if channel is None:
            await reply(interaction, "Now-playing messages go to the channel where playback "
                                     "was started.")
        else:
            await reply(interaction, f"Now-playing messages go to <#{int(channel.id)}> from "
                                     "the next playback on.")

    async def show(self, interaction: Any) -> None:
        """``/settings show``."""
        if interaction.guild_id is None:
            await refuse(interaction, "Settings belong to a server, not to DMs.")
            return
        settings = await self.settings.get(interaction.guild_id)
        embed = discord.Embed(title="Settings", colour=discord.Colour.blurple())
        embed.add_field(name="DJ role", value=f"<@&{settings.dj_role_id}>"
                        if settings.dj_role_id else "none (everyone may control playback)")
        embed.add_field(name="24/7", value="on" if settings.stay else
                        f"off (leave after {self.watcher.leave_after:g} s alone)")
        embed.add_field(name="default volume", value=f"{settings.volume} %"
                        if settings.volume is not None else "none (as the last session)")
        embed.add_field(name="announcements", value=f"<#{settings.announce_channel_id}>"
                        if settings.announce_channel_id else "where playback is started")
        embed.add_field(name="autoplay", value="on" if settings.autoplay else "off")
        await reply(interaction, embed=embed, ephemeral=True)
