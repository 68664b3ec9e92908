"""``/playlist save|load|list|delete``: each person's own saved playlists.

A playlist belongs to the Discord user who saved it (``gateway.playlists``, owner
``discord:<user id>``), not to a server: it can be loaded in any server the bot shares
with them. ``save`` keeps the server's current track and what comes after it; ``load``
queues the tracks as ``/play`` would (joining the caller's channel; ``now`` plays the
first at once and needs the DJ role, as ``/play now`` does). Saving, listing and
deleting answer privately: they concern the caller only.
"""

from __future__ import annotations

import logging
from typing import Any

from discord import app_commands

from bot.gate import Gate, Refused
from bot.replies import refuse, reply
from gateway.database import DatabaseError
from gateway.player import CommandError, Enqueue, PlayNow
from gateway.playlists import PlaylistError, PlaylistStore

__all__ = ["PlaylistCommands", "owner_of"]

log = logging.getLogger(__name__)

_TROUBLE = "I couldn't reach my playlist storage just now; try again in a moment."


def owner_of(user: Any) -> str:
    """The owner key of a Discord user's playlists."""
    return f"discord:{int(user.id)}"


def _bold(text: str) -> str:
    return f"**{text.replace('*', '')}**"


class PlaylistCommands:
    """Handlers of the ``/playlist`` group.

    Args:
        gate: checks, joining, the guilds' players.
        store: where playlists are kept.
    """

    def __init__(self, gate: Gate, store: PlaylistStore) -> None:
        self.gate = gate
        self.store = store

    async def save(self, interaction: Any, name: str) -> None:
        """``/playlist save name``: the current track and the queue after it."""
        if interaction.guild_id is None:
            await refuse(interaction, "Save a server's queue from that server.")
            return
        view = (await self.gate.player(interaction.guild_id)).view()
        tracks = ([view.current] if view.current is not None else []) + list(view.upcoming)
        try:
            saved = await self.store.save(owner_of(interaction.user), name, tracks)
        except PlaylistError as exc:
            await refuse(interaction, f"Can't save that: {exc}.")
            return
        except DatabaseError as exc:
            log.warning("saving a playlist failed: %s", exc)
            await refuse(interaction, _TROUBLE)
            return
        words = f"Saved {_bold(saved.name)}: {saved.count} tracks"
        if saved.left_out:
            words += (f" (the first {saved.count}; a playlist keeps at most "
                      f"{self.store.max_tracks})")
        if saved.replaced:
            words += ", replacing the playlist of that name"
        await reply(interaction, words + ". Load it anywhere with /playlist load.",
                    ephemeral=True)

    async def load(self, interaction: Any, name: str, now: bool = False) -> None:
        """``/playlist load name [now]``: queue a saved playlist here."""
        gate = self.gate
        try:
            guild_id, player = await gate.check(interaction, joins=True, controls=now)
        except Refused as exc:
            await refuse(interaction, str(exc))
            return
        requester = str(getattr(interaction.user, "display_name", "") or "")
        try:
            found = await self.store.load(owner_of(interaction.user), name,
                                          requested_by=requester)
        except PlaylistError as exc:
            await refuse(interaction, f"Can't load that: {exc}.")
            return
        except DatabaseError as exc:
            log.warning("loading a playlist failed: %s", exc)
            await refuse(interaction, _TROUBLE)
            return
        if found is None:
            await refuse(interaction, f"You have no playlist called {_bold(name.strip())}; "
                                      "/playlist list shows yours.")
            return
        if not found.tracks:
            await refuse(interaction, f"{_bold(found.name)} has no tracks I can play.")
            return
        try:
            joined = await gate.join(interaction, guild_id)
        except Refused as exc:
            await refuse(interaction, str(exc))
            return
        first, *rest = found.tracks
        command = PlayNow(first, tuple(rest)) if now else Enqueue(first, tuple(rest))
        try:
            outcome = await player.apply(command)
        except CommandError as exc:
            if joined and player.view().current is None:
                await gate.leave(guild_id)
            await refuse(interaction, f"Can't load that: {exc}.")
            return
        gate.announce(interaction, guild_id)
        added = outcome.count
        cut = f" (the first {added} of {len(found.tracks)}: the queue is full)" \
            if added < len(found.tracks) else ""
        if now or outcome.position == 0:
            where = f"{_bold(first.label)} starts now"
        else:
            where = f"from position {outcome.position}"
        await reply(interaction, f"Queued {added} tracks from your playlist "
                                 f"{_bold(found.name)}{cut}; {where}.")

    async def listing(self, interaction: Any) -> None:
        """``/playlist list``: the caller's playlists."""
        try:
            playlists = await self.store.summaries(owner_of(interaction.user))
        except DatabaseError as exc:
            log.warning("listing playlists failed: %s", exc)
            await refuse(interaction, _TROUBLE)
            return
        if not playlists:
            await reply(interaction, "You have no saved playlists yet: /playlist save "
                                     "keeps the queue under a name.", ephemeral=True)
            return
        lines = [f"• {_bold(p.name)} ({p.count} tracks)" for p in playlists]
        await reply(interaction, f"Your playlists ({len(playlists)} of "
                                 f"{self.store.max_playlists}):\n" + "\n".join(lines),
                    ephemeral=True)

    async def delete(self, interaction: Any, name: str) -> None:
        """``/playlist delete name``."""
        try:
            deleted = await self.store.delete(owner_of(interaction.user), name)
        except PlaylistError as exc:
            await refuse(interaction, f"Can't delete that: {exc}.")
            return
        except DatabaseError as exc:
            log.warning("deleting a playlist failed: %s", exc)
            await refuse(interaction, _TROUBLE)
            return
        if deleted is None:
            await refuse(interaction, f"You have no playlist called {_bold(name.strip())}.")
            return
        await reply(interaction, f"Deleted your playlist {_bold(deleted)}.", ephemeral=True)

    async def names(self, interaction: Any, current: str) -> list[app_commands.Choice[str]]:
        """Autocomplete: the caller's playlists whose names contain what was typed."""
        try:
            playlists = await self.store.summaries(owner_of(interaction.user))
        except DatabaseError:
            return []
        typed = current.strip().casefold()
        return [app_commands.Choice(name=f"{p.name} ({p.count} tracks)", value=p.name)
                for p in playlists if typed in p.name.casefold()][:25]
