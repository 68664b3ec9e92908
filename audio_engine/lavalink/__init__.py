"""The engine's second face: a Lavalink v4 node on its HTTP port (docs/lavalink.md).

Bots written for Lavalink's client libraries (wavelink, mafic, lavalink.py, Shoukaku,
lavalink-client...) use the engine unchanged: ``routes`` is the REST API and the
WebSocket, ``node`` maps players onto the engine's sessions (one ``voice`` session per
guild, its audio on the engine's own Discord voice connection, ``audio_engine.voice``),
``updates`` checks a player update, ``events`` tells the clients what happens to their
players, ``loader`` turns identifiers into tracks, ``player`` holds a player's and a
client session's state. The wire formats are ``protocol.lavalink``.
"""

from __future__ import annotations

from audio_engine.lavalink.errors import LavalinkError, error_response
from audio_engine.lavalink.node import LavalinkNode
from audio_engine.lavalink.routes import LavalinkGate, is_lavalink_path, lavalink_router

__all__ = [
    "LavalinkError",
    "LavalinkGate",
    "LavalinkNode",
    "error_response",
    "is_lavalink_path",
    "lavalink_router",
]
