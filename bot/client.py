"""The Discord client: slash commands registered on start, voice state handling.

Runs inside the gateway process, on the gateway's event loop, so commands reach
the shared players and router directly; ``bot.service`` logs it in and retries.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.commands import MusicCommands
from bot.voice import VoiceBridge
from gateway.runtime import Gateway

__all__ = ["MusicBot"]

log = logging.getLogger(__name__)


class MusicBot(discord.Client):
    """discord.py client with the music commands."""

    def __init__(self, gateway: Gateway, voice_bridge: VoiceBridge, *,
                 sync_guild: int | None = None) -> None:
        intents = discord.Intents.default()
        intents.voice_states = True
        super().__init__(intents=intents)
        self.gateway = gateway
        self.voice_bridge = voice_bridge
        self.handlers = MusicCommands(gateway, self.voice_bridge)
        self.tree = app_commands.CommandTree(self)
        self._sync_guild = sync_guild
        _register(self.tree, self.handlers)

    async def setup_hook(self) -> None:
        """Register the slash commands (one guild, instantly, when configured)."""
        if self._sync_guild is not None:
            guild = discord.Object(id=self._sync_guild)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), self._sync_guild)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands (may take up to an hour to appear)",
                     len(synced))

    async def on_ready(self) -> None:
        """Log in line."""
        log.info("Discord bot logged in as %s", self.user)

    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        """Our own member left voice (kicked, channel deleted): stop that guild."""
        if self.user is None or member.id != self.user.id:
            return
        if before.channel is not None and after.channel is None:
            await self.voice_bridge.disconnected(member.guild.id)

    async def close(self) -> None:
        """Leave voice everywhere, then log out."""
        await self.voice_bridge.close()
        await super().close()


def _register(tree: app_commands.CommandTree[Any], handlers: MusicCommands) -> None:
    @tree.command(name="play", description="Play a URL or search text (queues if busy)")
    @app_commands.describe(query="a URL, or words to search for")
    async def play(interaction: discord.Interaction, query: str) -> None:
        await handlers.play(interaction, query)

    @tree.command(name="stop", description="Stop, clear the queue and leave the channel")
    async def stop(interaction: discord.Interaction) -> None:
        await handlers.stop(interaction)

    @tree.command(name="pause", description="Pause")
    async def pause(interaction: discord.Interaction) -> None:
        await handlers.pause(interaction)

    @tree.command(name="resume", description="Resume")
    async def resume(interaction: discord.Interaction) -> None:
        await handlers.resume(interaction)

    @tree.command(name="skip", description="Play the next track")
    async def skip(interaction: discord.Interaction) -> None:
        await handlers.skip(interaction)

    @tree.command(name="previous", description="Play the previous track again")
    async def previous(interaction: discord.Interaction) -> None:
        await handlers.previous(interaction)

    @tree.command(name="jump", description="Play a track of the queue now")
    @app_commands.describe(position="its number in /queue")
    async def jump(interaction: discord.Interaction,
                   position: app_commands.Range[int, 1, 10000]) -> None:
        await handlers.jump(interaction, position)

    @tree.command(name="seek", description="Jump within the track")
    @app_commands.describe(position="90, 1:30 or 1:02:30")
    async def seek(interaction: discord.Interaction, position: str) -> None:
        await handlers.seek(interaction, position)

    @tree.command(name="remove", description="Remove a track from the queue")
    @app_commands.describe(position="its number in /queue")
    async def remove(interaction: discord.Interaction,
                     position: app_commands.Range[int, 1, 10000]) -> None:
        await handlers.remove(interaction, position)

    @tree.command(name="queue", description="What is coming up")
    @app_commands.describe(page="page number")
    async def queue(interaction: discord.Interaction,
                    page: app_commands.Range[int, 1, 1000] = 1) -> None:
        await handlers.queue(interaction, page)

    @tree.command(name="nowplaying", description="The current track and its progress")
    async def nowplaying(interaction: discord.Interaction) -> None:
        await handlers.nowplaying(interaction)

    @tree.command(name="status", description="The audio engine's health")
    async def status(interaction: discord.Interaction) -> None:
        await handlers.status(interaction)

    @tree.command(name="help", description="What the bot can do")
    async def help_(interaction: discord.Interaction) -> None:
        await handlers.help(interaction)
