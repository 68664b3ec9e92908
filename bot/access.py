"""Who may run which command: the voice-channel and DJ rules, as a pure function.

* Commands that make the bot play (``/play``, ``/resume``, ``/skip``...) need the
  caller in a voice channel when the bot is in none: that is where it joins.
* Everything that acts on playback needs the caller listening in the bot's voice
  channel, unless they are privileged (the guild's DJ role, or Manage Server).
* Commands that change what *others* hear (skip, stop, volume, clear, shuffle,
  loop, move...) additionally need the DJ role when the guild set one, unless the
  caller is alone with the bot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Caller", "Room", "refusal"]


@dataclass(frozen=True, slots=True)
class Caller:
    """The member running a command.

    Attributes:
        channel_id: the voice channel they are in, if any.
        privileged: has the guild's DJ role or the Manage Server permission.
    """

    channel_id: int | None
    privileged: bool


@dataclass(frozen=True, slots=True)
class Room:
    """The bot's side of the guild.

    Attributes:
        bot_channel_id: the voice channel the bot is in, if any.
        others_listening: people other than the caller in the bot's channel (in
            the caller's channel when the bot is in none: that is where it would go).
        dj_role_set: the guild chose a DJ role.
    """

    bot_channel_id: int | None
    others_listening: int
    dj_role_set: bool


def refusal(caller: Caller, room: Room, *, joins: bool, controls: bool) -> str | None:
    """Why *caller* may not run a command now, or None when they may.

    Args:
        joins: the command makes the bot play, so it joins the caller's channel
            when it is in none.
        controls: the command changes what everyone in the channel hears.
    """
    if joins and room.bot_channel_id is None and caller.channel_id is None:
        return "Join a voice channel first: I will come to you."
    if not caller.privileged:
        if caller.channel_id is None:
            return "Join my voice channel first."
        if room.bot_channel_id is not None and caller.channel_id != room.bot_channel_id:
            return "You need to be in my voice channel for that."
    if controls and room.dj_role_set and not caller.privileged and room.others_listening > 0:
        return ("Only members with the DJ role can do that while others are listening "
                "(or anyone alone with me).")
    return None
