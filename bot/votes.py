"""``/voteskip``'s count, as pure code: a majority of the people listening with the bot.

A vote is for one track of one guild (a new track starts a new count). Only votes of
people still listening count: someone who voted and left takes their vote along, and
the majority is of those in the channel now (``listeners // 2 + 1``), so a channel that
empties around a vote does not need votes it can no longer give. One count per guild
is kept (the current track's), so memory follows the guilds voting right now.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

__all__ = ["SkipVotes", "Tally", "needed"]


def needed(listeners: int) -> int:
    """Votes that carry a skip among *listeners* people: more than half."""
    return listeners // 2 + 1


@dataclass(frozen=True, slots=True)
class Tally:
    """Where a skip vote stands.

    Attributes:
        votes: votes of people still listening.
        needed: votes that carry it now.
        passed: enough votes: skip (the count is cleared).
        again: the voter had voted already (nothing changed).
    """

    votes: int
    needed: int
    passed: bool
    again: bool = False


@dataclass
class _Count:
    track_id: str
    voters: set[int] = field(default_factory=set)


class SkipVotes:
    """The skip votes of every guild, one track each."""

    def __init__(self) -> None:
        self._counts: dict[int, _Count] = {}

    def vote(self, guild_id: int, track_id: str, voter: int,
             listeners: Collection[int]) -> Tally:
        """*voter* votes to skip *track_id* in *guild_id*, where *listeners* (people,
        not bots, the voter among them) are in the bot's channel."""
        count = self._counts.get(guild_id)
        if count is None or count.track_id != track_id:
            count = self._counts[guild_id] = _Count(track_id)
        present = set(listeners) | {voter}
        again = voter in count.voters
        count.voters.add(voter)
        count.voters &= present
        votes, wanted = len(count.voters), needed(len(present))
        passed = votes >= wanted
        if passed:
            del self._counts[guild_id]
        return Tally(votes, wanted, passed, again)

    def clear(self, guild_id: int) -> None:
        """Forget *guild_id*'s count (the bot left, the track was skipped anyway)."""
        self._counts.pop(guild_id, None)

    def __len__(self) -> int:
        return len(self._counts)
