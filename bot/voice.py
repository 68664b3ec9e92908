"""Joining voice channels and feeding them a guild's audio.

``VoiceBridge`` keeps, per guild, the voice client, the router sink (session id =
guild id) and the ``GuildAudioSource`` that discord.py's player reads. The only
part that talks to Discord is the *connect* function (``channel.connect`` by
default); tests pass one that returns a recording stand-in, and everything else
runs for real.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.core import Metric

from applog import session_logger
from bot.audio import GuildAudioSource, GuildSink
from gateway.metrics import counter, gauge
from gateway.player import PlayerStatus, Stop
from gateway.runtime import Gateway

__all__ = ["VoiceBridge", "VoiceClientLike"]

log = logging.getLogger(__name__)


class VoiceClientLike(Protocol):
    """What the bridge needs of a discord.py ``VoiceClient``."""

    channel: Any

    def is_connected(self) -> bool: ...

    def is_playing(self) -> bool: ...

    def play(self, source: Any, *, after: Callable[[Exception | None], Any] | None = None
             ) -> None: ...

    def stop(self) -> None: ...

    async def disconnect(self, *, force: bool = False) -> None: ...

    async def move_to(self, channel: Any) -> None: ...


async def _discord_connect(channel: Any) -> VoiceClientLike:
    client: VoiceClientLike = await channel.connect(self_deaf=True, reconnect=True)
    return client


@dataclass
class _GuildVoice:
    client: VoiceClientLike
    sink: GuildSink
    source: GuildAudioSource
    #: Releases the guild's player: it stays loaded while the bot is in voice.
    release: Callable[[], None]


class VoiceBridge:
    """Voice connections and audio of every guild.

    Args:
        gateway: router and players.
        connect: opens a voice connection to a channel (Discord's, by default).
    """

    def __init__(self, gateway: Gateway,
                 connect: Callable[[Any], Awaitable[VoiceClientLike]] = _discord_connect) -> None:
        self._gateway = gateway
        self._connect = connect
        self._guilds: dict[int, _GuildVoice] = {}
        # Counters of sources that have left, so totals stay monotonic.
        self._retired = {"frames": 0, "silence": 0, "underruns": 0}
        gateway.metrics.add_source(self.metric_families)

    def metric_families(self) -> Iterable[Metric]:
        """Discord metrics (see ``gateway.metrics``)."""
        live = [v.source for v in self._guilds.values()]
        yield gauge("audiogate_gateway_voice_clients", "Discord voice connections",
                    sum(1 for v in self._guilds.values() if v.client.is_connected()))
        for name, what in (("frames", "Opus frames handed to Discord voice"),
                           ("silence", "Silence frames sent (underruns and gaps)"),
                           ("underruns", "Frames missing while a track was playing")):
            yield counter(f"audiogate_gateway_voice_{name}", what,
                          self._retired[name] + sum(getattr(s, name) for s in live))

    def channel_id(self, guild_id: int) -> int | None:
        """The voice channel the bot is in for *guild_id*, if connected."""
        voice = self._guilds.get(guild_id)
        if voice is None or not voice.client.is_connected():
            return None
        return int(voice.client.channel.id)

    def channel(self, guild_id: int) -> Any | None:
        """The voice channel object the bot is in for *guild_id*, if connected."""
        voice = self._guilds.get(guild_id)
        if voice is None or not voice.client.is_connected():
            return None
        return voice.client.channel

    def source(self, guild_id: int) -> GuildAudioSource | None:
        """The audio source playing in *guild_id*'s channel."""
        voice = self._guilds.get(guild_id)
        return voice.source if voice else None

    async def join(self, guild_id: int, channel: Any) -> None:
        """Be in *channel* with the guild's audio playing (connects or moves)."""
        voice = self._guilds.get(guild_id)
        if voice is not None and voice.client.is_connected():
            if int(voice.client.channel.id) != int(channel.id):
                await voice.client.move_to(channel)
                session_logger(log, str(guild_id)).info("moved to voice channel %s", channel.id)
            if not voice.client.is_playing():
                voice.client.play(voice.source, after=self._after(guild_id))
            return
        client = await self._connect(channel)
        sink = GuildSink()
        key = str(guild_id)
        self._gateway.router.register_sink(key, sink)
        source = GuildAudioSource(sink, expecting=lambda: self._expecting(key))
        # Joining follows a user's command, which decides whether to play: no
        # automatic resume of a restored queue.
        release = self._gateway.players.get(key, output="opus").hold(resume=False)
        self._guilds[guild_id] = _GuildVoice(client, sink, source, release)
        client.play(source, after=self._after(guild_id))
        session_logger(log, key).info("joined voice channel %s", channel.id)

    async def leave(self, guild_id: int) -> None:
        """Disconnect from voice and stop routing the guild's audio. Idempotent."""
        voice = self._guilds.pop(guild_id, None)
        if voice is None:
            return
        for name in self._retired:
            self._retired[name] += getattr(voice.source, name)
        self._gateway.router.unregister_sink(str(guild_id), voice.sink)
        voice.release()
        voice.client.stop()
        if voice.client.is_connected():
            await voice.client.disconnect(force=True)
        session_logger(log, str(guild_id)).info("left voice")

    async def disconnected(self, guild_id: int) -> bool:
        """Discord dropped us from voice (kicked, channel deleted): stop cleanly,
        including the engine session, since nobody can hear it. Returns False
        when the bot had left on its own (nothing to do)."""
        if guild_id not in self._guilds:
            return False
        await self.leave(guild_id)
        player = self._gateway.players.existing(str(guild_id))
        if player is not None:
            await player.apply(Stop())
        return True

    async def close(self) -> None:
        """Leave every channel."""
        for guild_id in list(self._guilds):
            await self.leave(guild_id)

    def _expecting(self, key: str) -> bool:
        player = self._gateway.players.existing(key)
        # Called on discord.py's player thread: the status alone, not a whole view.
        return player is not None and player.status is PlayerStatus.PLAYING

    def _after(self, guild_id: int) -> Callable[[Exception | None], None]:
        def after(error: Exception | None) -> None:
            if error is not None:
                session_logger(log, str(guild_id)).error("voice player stopped: %s", error)

        return after
