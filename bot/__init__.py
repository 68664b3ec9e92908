"""The Discord bot: slash commands, and a discord.py audio source fed by the router.

Runs inside the gateway process (``BotService``) only when ``DISCORD_TOKEN`` is set.
"""

from __future__ import annotations

from bot.audio import GuildAudioSource, GuildSink
from bot.client import MusicBot
from bot.commands import MusicCommands
from bot.service import BotService, BotState
from bot.voice import VoiceBridge

__all__ = [
    "BotService",
    "BotState",
    "GuildAudioSource",
    "GuildSink",
    "MusicBot",
    "MusicCommands",
    "VoiceBridge",
]
