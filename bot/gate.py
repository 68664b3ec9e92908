"""The way into a guild's player from a slash command or a button: who may, joining
voice when the command needs it, applying the command, and answering.

``Gate.check`` applies the voice-channel and DJ rules (``bot.access``); ``Gate.act``
runs one player command (a value of ``gateway.player.commands``) with those checks,
joins the caller's voice channel when the command makes the bot play and it is in
none (only for a command that will apply), and replies with the words the handler
gives for its ``Outcome``. Invalid use gets a private reply and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from applog import session_logger
from bot.access import Caller, Room, refusal
from bot.announce import Announcer
from bot.guild_settings import GuildSettings, GuildSettingsStore
from bot.presence import listeners
from bot.replies import refuse, reply
from bot.voice import VoiceBridge
from gateway.database import DatabaseError
from gateway.player import Command, CommandError, Outcome, Player, SetVolume
from gateway.runtime import Gateway

__all__ = ["JOIN_TIMEOUT", "Gate", "Refused"]

log = logging.getLogger(__name__)

#: Seconds allowed for joining a voice channel.
JOIN_TIMEOUT = 20.0


class Refused(Exception):
    """A command cannot run; ``str()`` is the (private) reply."""


#: The words of a command that ran, from its outcome (may raise ``Refused``).
Words = Callable[[Outcome], str]


class Gate:
    """Checks, voice joins and replies around the guild players' commands.

    Args:
        gateway: the players.
        voice: voice connections.
        settings: per-guild settings (the DJ role).
        announcer: now-playing messages (attached when a command starts playback).
        on_joined: called with the guild id after joining voice (the empty-channel
            watch starts counting).
        on_left: called with the guild id before leaving voice.
    """

    def __init__(self, gateway: Gateway, voice: VoiceBridge, *, settings: GuildSettingsStore,
                 announcer: Announcer, on_joined: Callable[[int], None],
                 on_left: Callable[[int], None]) -> None:
        self.gateway = gateway
        self.voice = voice
        self.settings = settings
        self.announcer = announcer
        self._on_joined = on_joined
        self._on_left = on_left

    async def player(self, guild_id: int) -> Player:
        """The guild's player, its stored queue loaded (after a restart a player
        comes back from the database on first use)."""
        player = self.gateway.players.get(str(guild_id), output="opus")
        await player.loaded()
        return player

    @staticmethod
    def caller_channel(interaction: Any) -> Any | None:
        """The voice channel of the member who sent *interaction*, if any."""
        voice_state = getattr(interaction.user, "voice", None)
        return getattr(voice_state, "channel", None)

    async def check(self, interaction: Any, *, joins: bool, controls: bool
                    ) -> tuple[int, Player]:
        """The guild and its player, if the caller may run the command.

        Raises:
            Refused: with the reason.
        """
        guild_id = interaction.guild_id
        if guild_id is None:
            raise Refused("Music commands work in a server, not in DMs.")
        member = interaction.user
        caller_channel = self.caller_channel(interaction)
        settings = await self.settings.get(guild_id)
        privileged = self.privileged(interaction, settings)
        bot_channel = self.voice.channel(guild_id)
        room_channel = bot_channel if bot_channel is not None else caller_channel
        others = len(listeners(room_channel, besides=member.id)) if room_channel else 0
        why = refusal(
            Caller(int(caller_channel.id) if caller_channel is not None else None, privileged),
            Room(int(bot_channel.id) if bot_channel is not None else None, others,
                 settings.dj_role_id is not None),
            joins=joins, controls=controls,
        )
        if why is not None:
            raise Refused(why)
        return guild_id, await self.player(guild_id)

    @staticmethod
    def privileged(interaction: Any, settings: GuildSettings) -> bool:
        """The caller has the guild's DJ role or the Manage Server permission."""
        permissions = getattr(interaction, "permissions", None)
        role_ids = {role.id for role in getattr(interaction.user, "roles", [])}
        return bool(permissions is not None and permissions.manage_guild) or (
            settings.dj_role_id is not None and settings.dj_role_id in role_ids)

    def announce(self, interaction: Any, guild_id: int) -> None:
        """Announce *guild_id*'s playback: in its announcement channel when it set one
        the bot can see, else where *interaction* came from."""
        channel = interaction.channel
        settings = self.settings.cached(guild_id)
        chosen = settings.announce_channel_id if settings is not None else None
        if chosen is not None:
            guild = getattr(interaction, "guild", None)
            found = guild.get_channel(chosen) if guild is not None else None
            channel = found if found is not None else channel
        self.announcer.attach(guild_id, channel)

    async def join(self, interaction: Any, guild_id: int) -> bool:
        """Join the caller's channel if the bot is in none; True if it joined now.

        Raises:
            Refused: the connection failed.
        """
        if self.voice.channel(guild_id) is not None:
            return False
        channel = self.caller_channel(interaction)
        if channel is None:
            raise Refused("Join a voice channel first: I will come to you.")
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                await self.voice.join(guild_id, channel)
        except Exception as exc:  # discord.py raises many kinds here
            session_logger(log, str(guild_id)).warning("joining voice failed: %r", exc)
            raise Refused(f"I couldn't join **{getattr(channel, 'name', 'your channel')}**. "
                          "Check that I may connect and speak there, then try again.") from exc
        self._on_joined(guild_id)
        await self._default_volume(guild_id)
        return True

    async def _default_volume(self, guild_id: int) -> None:
        """A session that starts with nothing queued starts at the guild's volume."""
        try:
            settings = await self.settings.get(guild_id)
        except DatabaseError as exc:
            session_logger(log, str(guild_id)).warning("default volume unknown: %s", exc)
            return
        if settings.volume is None:
            return
        player = await self.player(guild_id)
        view = player.view()
        if view.current is not None or round(view.volume * 100) == settings.volume:
            return
        try:
            await player.apply(SetVolume(settings.volume / 100))
        except CommandError as exc:  # an engine without live volume
            session_logger(log, str(guild_id)).info("default volume not set: %s", exc)

    def joined(self, guild_id: int) -> None:
        """The bot joined or moved in *guild_id* other than through ``join``."""
        self._on_joined(guild_id)

    async def leave(self, guild_id: int) -> None:
        """Leave voice in *guild_id* (and stop watching its channel)."""
        self._on_left(guild_id)
        await self.voice.leave(guild_id)

    async def act(self, interaction: Any, command: Command, done: Words, *, joins: bool,
                  controls: bool = True, quiet: bool = False) -> Outcome | None:
        """Run *command* on the guild's player with the checks, the join and the reply.

        *done* gives the reply from the outcome. *quiet* (buttons): acknowledge
        without a message unless joining voice already made the answer a message.
        Returns the outcome, or None when the command did not run."""
        try:
            guild_id, player = await self.check(interaction, joins=joins, controls=controls)
            if joins and self.voice.channel(guild_id) is None:
                # Joining voice for a command that cannot run helps nobody.
                why = player.refusal(command)
                if why is not None:
                    raise Refused(f"Can't do that: {why}.")
            joined = await self.join(interaction, guild_id) if joins else False
        except Refused as exc:
            await refuse(interaction, str(exc))
            return None
        try:
            outcome = await player.apply(command)
            words = done(outcome)
        except (CommandError, Refused) as exc:
            if joined and player.view().current is None:
                await self.leave(guild_id)
            await refuse(interaction, f"Can't do that: {exc}." if isinstance(
                exc, CommandError) else str(exc))
            return None
        if joins:
            self.announce(interaction, guild_id)
        else:
            self.announcer.refresh(guild_id)
        if quiet and not interaction.response.is_done():
            # The announcement itself shows the change.
            await interaction.response.defer()
        else:
            await reply(interaction, words, ephemeral=quiet)
        return outcome
