"""``/join``, ``/leave`` and ``/voteskip``: the bot's place in voice, and skipping by vote.

* ``/join`` brings the bot to the caller's voice channel (or moves it there). Pulling it
  away from people listening elsewhere needs the DJ role (or Manage Server); from an
  empty channel anyone may. A queue waiting (after a restart or a ``/leave``) stays
  paused: ``/resume`` plays it.
* ``/leave`` leaves voice and keeps the queue: the track is paused where it was, and
  ``/resume`` (or ``/join``) brings the bot back. It changes what others hear: DJ.
* ``/voteskip``: anyone listening votes; more than half of the people in the channel
  (bots do not count) skip the track (``bot.votes``). A DJ (the DJ role or Manage
  Server), or someone alone with the bot, skips at once.
"""

from __future__ import annotations

from typing import Any

from bot.announce import Announcer
from bot.gate import Gate, Refused
from bot.presence import listeners
from bot.replies import refuse, reply
from bot.voice import VoiceBridge
from bot.votes import SkipVotes
from gateway.player import CommandError, Pause, PlayerStatus, Skip

__all__ = ["VoiceCommands"]


def _name(thing: Any, fallback: str) -> str:
    return str(getattr(thing, "name", "") or fallback).replace("*", "")


def _bold(label: str) -> str:
    return f"**{label.replace('*', '')}**"


class VoiceCommands:
    """Handlers of ``/join``, ``/leave`` and ``/voteskip``.

    Args:
        gate: checks, joining, the guilds' players.
        voice: the voice connections.
        announcer: the now-playing messages (their last words on ``/leave``).
        votes: the skip votes.
    """

    def __init__(self, gate: Gate, voice: VoiceBridge, announcer: Announcer,
                 votes: SkipVotes) -> None:
        self.gate = gate
        self.voice = voice
        self.announcer = announcer
        self.votes = votes

    async def join(self, interaction: Any) -> None:
        """``/join``: come to (or move to) the caller's voice channel."""
        guild_id = interaction.guild_id
        if guild_id is None:
            await refuse(interaction, "Music commands work in a server, not in DMs.")
            return
        target = self.gate.caller_channel(interaction)
        if target is None:
            await refuse(interaction, "Join a voice channel first: I will come to you.")
            return
        current = self.voice.channel(guild_id)
        if current is not None:
            if int(current.id) == int(target.id):
                await refuse(interaction,
                             f"I'm already in {_bold(_name(current, 'your channel'))}.")
                return
            settings = await self.gate.settings.get(guild_id)
            if listeners(current, besides=interaction.user.id) and not self.gate.privileged(
                    interaction, settings):
                await refuse(interaction, f"I'm playing for people in "
                                          f"{_bold(_name(current, 'another channel'))}; only a "
                                          "DJ can move me away from them.")
                return
            await interaction.response.defer(thinking=True)
            try:
                await self.voice.join(guild_id, target)
            except Exception:  # discord.py raises many kinds here
                await refuse(interaction,
                             f"I couldn't move to {_bold(_name(target, 'your channel'))}.")
                return
            self.gate.joined(guild_id)
        else:
            try:
                await self.gate.join(interaction, guild_id)
            except Refused as exc:
                await refuse(interaction, str(exc))
                return
        player = await self.gate.player(guild_id)
        view = player.view()
        words = f"Joined {_bold(_name(target, 'your channel'))}."
        if view.current is not None and view.paused:
            words += f" {_bold(view.current.label)} is waiting: /resume plays it."
        await reply(interaction, words)

    async def leave(self, interaction: Any) -> None:
        """``/leave``: leave voice, keep the queue (paused where it was)."""
        try:
            guild_id, player = await self.gate.check(interaction, joins=False, controls=True)
        except Refused as exc:
            await refuse(interaction, str(exc))
            return
        channel = self.voice.channel(guild_id)
        if channel is None:
            await refuse(interaction, "I'm not in a voice channel.")
            return
        view = player.view()
        if view.current is not None and not view.paused:
            try:
                await player.apply(Pause())
            except CommandError:
                pass  # nothing left to pause (it ended meanwhile)
        await self.gate.leave(guild_id)
        view = player.view()
        kept = len(view.upcoming) + (1 if view.current is not None else 0)
        where = _bold(_name(channel, "the voice channel"))
        if kept:
            self.announcer.conclude(guild_id, f"Left {_name(channel, 'the voice channel')}; "
                                              "the queue is kept. /resume brings me back.")
            await reply(interaction, f"Left {where}; the queue is kept ({kept} tracks): "
                                     "/resume brings me back.")
        else:
            self.announcer.conclude(guild_id, f"Left {_name(channel, 'the voice channel')}.")
            await reply(interaction, f"Left {where}.")

    async def voteskip(self, interaction: Any) -> None:
        """``/voteskip``: a vote to skip; a majority of the listeners skips."""
        try:
            guild_id, player = await self.gate.check(interaction, joins=False, controls=False)
        except Refused as exc:
            await refuse(interaction, str(exc))
            return
        channel = self.voice.channel(guild_id)
        view = player.view()
        if view.current is None or view.status is PlayerStatus.IDLE:
            await refuse(interaction, "Nothing is playing.")
            return
        if channel is None:
            await refuse(interaction, "I'm not playing in a voice channel.")
            return
        track = view.current
        voter = int(interaction.user.id)
        present = {int(m.id) for m in listeners(channel)}
        settings = await self.gate.settings.get(guild_id)
        if self.gate.privileged(interaction, settings) or present <= {voter}:
            await self._skip(interaction, guild_id, f"Skipped {_bold(track.label)}.")
            return
        tally = self.votes.vote(guild_id, track.id, voter, present)
        if tally.passed:
            await self._skip(interaction, guild_id, f"Vote passed ({tally.votes} of "
                             f"{len(present)} listening): skipped {_bold(track.label)}.")
        elif tally.again:
            await refuse(interaction, f"You already voted to skip {_bold(track.label)} "
                                      f"({tally.votes} of {tally.needed} votes needed).")
        else:
            name = _name(interaction.user, "someone")
            voter_name = getattr(interaction.user, "display_name", None) or name
            await reply(interaction, f"{voter_name} votes to skip {_bold(track.label)}: "
                                     f"{tally.votes} of {tally.needed} votes needed "
                                     "(/voteskip to vote).")

    async def _skip(self, interaction: Any, guild_id: int, words: str) -> None:
        self.votes.clear(guild_id)
        await self.gate.act(interaction, Skip(), lambda _outcome: words, joins=False,
                            controls=False)
