"""Saved playlists: a person's own lists of tracks, kept in the gateway's database file.

A playlist belongs to an *owner* (a front's name for a person: ``discord:<user id>`` for
the bot), not to a guild or a player, so it can be loaded wherever its owner is. The
rows live in the ``playlists`` table of the gateway's SQLite file (schema version 2,
``gateway.schema``), through the file's one owner (``gateway.database.Database``: one
thread, one connection, one policy for a damaged or locked file).

Bounds, both named parameters of ``PlaylistStore``:

* ``max_playlists`` (25) per owner: a list of them must fit one Discord message and one
  autocomplete menu (25 choices), and the file must not grow with one person's habit;
* ``max_tracks`` (200) per playlist: a row stays a JSON list of about 60 KB at most
  (titles and links of a few hundred bytes each), read and written in one piece, and a
  load fits comfortably in a queue (``Queue.MAX_TRACKS``, 500). A longer queue is saved
  up to the limit, and the answer says how many were left out.

Names are 1 to ``MAX_NAME`` characters, spaces collapsed, unique per owner whatever
their letter case ("Road trip" and "road TRIP" are one playlist; saving again replaces
it). A track keeps its link, title, duration and picture; who asked for it, and its
queue entry id, are the loader's.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.database import Database
from gateway.player.track import Track
from gateway.schema import set_up

__all__ = [
    "MAX_NAME",
    "PlaylistError",
    "PlaylistStore",
    "PlaylistSummary",
    "SaveResult",
    "SavedPlaylist",
    "normalise_name",
]

log = logging.getLogger(__name__)

#: Longest playlist name, in characters (a Discord choice shows 100; a name is meant
#: to be typed).
MAX_NAME = 50


class PlaylistError(Exception):
    """A playlist operation that cannot be done; ``str()`` says why, for people."""


@dataclass(frozen=True, slots=True)
class PlaylistSummary:
    """One saved playlist as a list shows it."""

    name: str
    count: int
    updated: float


@dataclass(frozen=True, slots=True)
class SavedPlaylist:
    """A playlist's tracks (each a new queue entry, asked for by the loader)."""

    name: str
    tracks: tuple[Track, ...]


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What a save did: tracks kept, tracks left out (over ``max_tracks``), and
    whether a playlist of that name was replaced."""

    name: str
    count: int
    left_out: int
    replaced: bool


def normalise_name(name: str) -> str:
    """*name* as stored: spaces collapsed and trimmed.

    Raises:
        PlaylistError: empty, or longer than ``MAX_NAME``.
    """
    cleaned = " ".join(name.split())
    if not cleaned:
        raise PlaylistError("give the playlist a name")
    if len(cleaned) > MAX_NAME:
        raise PlaylistError(f"a playlist name has at most {MAX_NAME} characters")
    return cleaned


def _key(name: str) -> str:
    return normalise_name(name).casefold()


def _entry(track: Track) -> dict[str, Any]:
    return {"url": track.url, "title": track.title, "duration": track.duration,
            "thumbnail": track.thumbnail}


def _tracks(text: str, requested_by: str) -> tuple[Track, ...]:
    try:
        entries = json.loads(text)
    except ValueError:
        return ()
    out = []
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("url"), str) and entry["url"]:
            track = Track.from_dict({**entry, "id": None, "requested_by": requested_by})
            out.append(track)
    return tuple(out)


class PlaylistStore:
    """Saves, lists, loads and deletes owners' playlists.

    Args:
        database: the gateway's database (``Gateway.database``).
        max_playlists: playlists one owner may keep.
        max_tracks: tracks kept per playlist.
    """

    def __init__(self, database: Database, *, max_playlists: int = 25,
                 max_tracks: int = 200) -> None:
        self.database = database
        self.max_playlists = max_playlists
        self.max_tracks = max_tracks
        database.add_setup(set_up)

    async def save(self, owner: str, name: str, tracks: Sequence[Track]) -> SaveResult:
        """Save *tracks* as *owner*'s playlist *name* (replacing one of that name).

        Raises:
            PlaylistError: no tracks, a bad name, or *owner* has ``max_playlists``
                already (nothing changed).
            DatabaseError: it could not be saved.
        """
        clean = normalise_name(name)
        if not tracks:
            raise PlaylistError("there is nothing to save: the queue is empty")
        kept = [_entry(t) for t in tracks[: self.max_tracks]]
        text = json.dumps(kept)
        limit = self.max_playlists

        def write(connection: sqlite3.Connection) -> bool:
            with connection:
                exists = connection.execute(
                    "SELECT 1 FROM playlists WHERE owner = ? AND name_key = ?",
                    (owner, clean.casefold())).fetchone() is not None
                if not exists:
                    (count,) = connection.execute(
                        "SELECT COUNT(*) FROM playlists WHERE owner = ?", (owner,)).fetchone()
                    if count >= limit:
                        raise PlaylistError(
                            f"you have {limit} playlists, the most one person may keep: "
                            "delete one first, or save under the name of one to replace")
                connection.execute(
                    "INSERT INTO playlists (owner, name_key, name, tracks, updated) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(owner, name_key) DO UPDATE SET "
                    "name = excluded.name, tracks = excluded.tracks, "
                    "updated = excluded.updated",
                    (owner, clean.casefold(), clean, text, time.time()))
                return exists

        replaced = await self.database.run(write, "saving a playlist")
        return SaveResult(clean, len(kept), len(tracks) - len(kept), replaced)

    async def load(self, owner: str, name: str, *, requested_by: str = ""
                   ) -> SavedPlaylist | None:
        """*owner*'s playlist *name* (any letter case), or None.

        Raises:
            PlaylistError: a bad name.
            DatabaseError: it could not be read.
        """
        key = _key(name)

        def read(connection: sqlite3.Connection) -> tuple[str, str] | None:
            row = connection.execute(
                "SELECT name, tracks FROM playlists WHERE owner = ? AND name_key = ?",
                (owner, key)).fetchone()
            return None if row is None else (str(row[0]), str(row[1]))

        row = await self.database.run(read, "loading a playlist")
        if row is None:
            return None
        return SavedPlaylist(row[0], _tracks(row[1], requested_by))

    async def summaries(self, owner: str) -> list[PlaylistSummary]:
        """*owner*'s playlists, by name.

        Raises:
            DatabaseError: they could not be read.
        """
        def read(connection: sqlite3.Connection) -> list[tuple[str, int, float]]:
            return connection.execute(
                "SELECT name, json_array_length(tracks), updated FROM playlists "
                "WHERE owner = ? ORDER BY name_key", (owner,)).fetchall()

        rows = await self.database.run(read, "listing playlists")
        return [PlaylistSummary(str(name), int(count or 0), float(updated))
                for name, count, updated in rows]

    async def delete(self, owner: str, name: str) -> str | None:
        """Delete *owner*'s playlist *name*; returns its name as saved, or None when
        there was none.

        Raises:
            PlaylistError: a bad name.
            DatabaseError: it could not be deleted.
        """
        key = _key(name)

        def write(connection: sqlite3.Connection) -> str | None:
            with connection:
                row = connection.execute(
                    "DELETE FROM playlists WHERE owner = ? AND name_key = ? RETURNING name",
                    (owner, key)).fetchone()
            return None if row is None else str(row[0])

        return await self.database.run(write, "deleting a playlist")
