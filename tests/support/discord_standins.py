"""Stand-ins for the only thing we cannot reach here: Discord's servers.

``RecordingVoiceClient`` is what discord.py's own ``AudioPlayer`` sends to: it
records every ``send_audio_packet`` with its time instead of encrypting and
sending it over UDP. ``FakeInteraction`` records the replies of a handler called
directly; the bot's tests go through discord.py's command tree instead, against the
loopback Discord of ``discord_api``. Everything else (the player thread, our source,
the router, the engine) is real.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import discord
from discord.player import AudioPlayer

__all__ = ["Channel", "FakeInteraction", "RecordingVoiceClient", "User", "recording_connect"]


@dataclass
class Channel:
    id: int
    name: str = "voice"


class _Gateway:
    def __init__(self) -> None:
        self.speaking: list[object] = []

    async def speak(self, state: object) -> None:
        self.speaking.append(state)


class _Client:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop


class RecordingVoiceClient:
    """A voice client that records what it would send."""

    timeout = 5.0

    def __init__(self, channel: Channel, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.ws = _Gateway()
        self.client = _Client(loop)
        self.packets: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._connected = True
        self._player: AudioPlayer | None = None
        self.moves: list[int] = []

    # What AudioPlayer uses.
    def send_audio_packet(self, data: bytes, *, encode: bool = True) -> None:
        assert not encode, "our source is Opus: nothing should be encoded"
        with self._lock:
            self.packets.append((time.perf_counter(), bytes(data)))

    def is_connected(self) -> bool:
        return self._connected

    def wait_until_connected(self, timeout: float | None = 30.0) -> bool:
        return self._connected

    # What VoiceBridge uses.
    def play(self, source: discord.AudioSource, *, after: Any = None) -> None:
        self._player = AudioPlayer(source, self, after=after)  # type: ignore[arg-type]
        self._player.start()

    def is_playing(self) -> bool:
        return self._player is not None and self._player.is_playing()

    def stop(self) -> None:
        # As discord.py's VoiceClient.stop: signal the player thread, do not wait
        # for it (joining here would block the event loop for up to a frame).
        if self._player is not None:
            self._player.stop()
            self._player = None

    async def disconnect(self, *, force: bool = False) -> None:
        self.stop()
        self._connected = False

    async def move_to(self, channel: Channel) -> None:
        self.moves.append(channel.id)
        self.channel = channel

    def snapshot(self) -> list[tuple[float, bytes]]:
        with self._lock:
            return list(self.packets)


def recording_connect(clients: dict[int, RecordingVoiceClient]) -> Any:
    """A ``connect`` for ``VoiceBridge`` that opens recording clients."""

    async def connect(channel: Channel) -> RecordingVoiceClient:
        client = RecordingVoiceClient(channel, asyncio.get_running_loop())
        clients[channel.id] = client
        return client

    return connect


@dataclass
class _VoiceState:
    channel: Channel | None


@dataclass
class User:
    id: int = 42
    display_name: str = "tester"
    voice: _VoiceState | None = None

    @classmethod
    def in_channel(cls, channel: Channel | None) -> User:
        return cls(voice=_VoiceState(channel))


@dataclass
class Reply:
    content: str | None
    embed: discord.Embed | None
    ephemeral: bool


class _Response:
    def __init__(self, owner: FakeInteraction) -> None:
        self._owner = owner
        self._done = False
        self.deferred = False

    def is_done(self) -> bool:
        return self._done

    async def send_message(self, content: str | None = None, *, embed: discord.Embed | None = None,
                           ephemeral: bool = False) -> None:
        assert not self._done, "an interaction can be answered once"
        self._done = True
        self._owner.replies.append(Reply(content, embed, ephemeral))

    async def defer(self, *, thinking: bool = False, ephemeral: bool = False) -> None:
        assert not self._done
        self._done = True
        self.deferred = True


class _Followup:
    def __init__(self, owner: FakeInteraction) -> None:
        self._owner = owner

    async def send(self, content: str | None = None, *, embed: discord.Embed | None = None,
                   ephemeral: bool = False) -> None:
        self._owner.replies.append(Reply(content, embed, ephemeral))


@dataclass
class FakeInteraction:
    guild_id: int | None
    user: User = field(default_factory=User)
    replies: list[Reply] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.response = _Response(self)
        self.followup = _Followup(self)

    @property
    def reply(self) -> Reply:
        assert self.replies, "no reply"
        return self.replies[-1]
