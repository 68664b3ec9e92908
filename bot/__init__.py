"""The Discord bot: slash commands, and a discord.py audio source fed by the router.

Starts inside the gateway process only when ``DISCORD_TOKEN`` is set.
"""

from __future__ import annotations

from bot.audio import GuildAudioSource, GuildSink
from bot.client import BotHandle, MusicBot, start_bot
from bot.commands import MusicCommands
from bot.voice import VoiceBridge

__all__ = [
    "BotHandle",
    "GuildAudioSource",
    "GuildSink",
    "MusicBot",
    "MusicCommands",
    "VoiceBridge",
    "start_bot",
]
