"""The Discord side: discord.py's own AudioPlayer and our command handlers.

Discord's servers are the only thing replaced (tests/support/discord_standins.py).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from bot.audio import GuildAudioSource, GuildSink
from bot.commands import MusicCommands
from bot.voice import VoiceBridge
from gateway.player import PlayerStatus, Track
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol import OPUS_SILENCE_FRAME, OggOpusWriter

from .conftest import TONES
from .support.discord_standins import (
    Channel,
    FakeInteraction,
    RecordingVoiceClient,
    User,
    recording_connect,
)
from .support.gateway_harness import running_gateway, settings_for
from .support.media import decode_opus_packets, dominant_frequency

pytestmark = pytest.mark.timeout(120)


async def wait_until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def tone_of(packets: list[bytes]) -> float:
    return await asyncio.to_thread(lambda: dominant_frequency(decode_opus_packets(packets)[0]))


def audio_of(client: RecordingVoiceClient) -> list[tuple[float, bytes]]:
    return [(t, p) for t, p in client.snapshot() if p != OPUS_SILENCE_FRAME]


# -- discord.py's AudioPlayer driving our source ----------------------------------------


async def test_the_player_sends_each_guild_its_own_tone_every_20_ms(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    async with running_gateway(settings_for(engine)) as gateway:
        voice = VoiceBridge(gateway, connect=recording_connect(clients))
        await gateway.socket.connected.wait()
        for guild, channel, name in ((111, 11, "long_a.mp3"), (222, 22, "long_b.mp3")):
            await voice.join(guild, Channel(channel))
            player = gateway.players.get(str(guild), output="opus")
            await player.command(lambda core, now, name=name: core.enqueue(
                Track(media_server.url(name)), now))
        await wait_until(lambda: all(len(audio_of(c)) > 150 for c in clients.values()))
        a, b = clients[11], clients[22]
        # Analysis runs off the loop: the gateway in this process must keep routing.
        assert abs(await tone_of([p for _, p in audio_of(a)][-60:]) - TONES["a"]) < 3
        assert abs(await tone_of([p for _, p in audio_of(b)][-60:]) - TONES["b"]) < 3
        # Cadence: one packet per 20 ms, as discord.py's loop paces it.
        times = [t for t, _ in b.snapshot()][-150:]
        gaps = np.diff(times)
        assert 0.0195 < float(np.mean(gaps)) < 0.0205
        assert float(np.percentile(gaps, 99)) < 0.030

        # Stop guild 111: 222's cadence is intact around it.
        stopped = time.perf_counter()
        player_a = gateway.players.get("111")
        await player_a.command(lambda core, now: core.stop())
        await voice.leave(111)
        count = len(b.snapshot())
        await wait_until(lambda: len(b.snapshot()) > count + 75)
        around = [t for t, _ in b.snapshot() if abs(t - stopped) < 1.0]
        assert max(np.diff(around)) < 0.040
        assert not a.is_connected()
        source_b = voice.source(222)
        assert source_b is not None and source_b.underruns == 0
        await gateway.players.get("222").command(lambda core, now: core.stop())
        await voice.close()


async def test_an_underrun_sends_silence_and_playback_continues() -> None:
    loop = asyncio.get_running_loop()
    sink = GuildSink()
    source = GuildAudioSource(sink)
    client = RecordingVoiceClient(Channel(1), loop)
    writer = OggOpusWriter(7)
    frame = bytes([0xFC]) + bytes(100)
    sink.feed(writer.header_pages + b"".join(writer.audio_page(frame) for _ in range(10)))
    client.play(source)
    try:
        await wait_until(lambda: source.frames == 10)
        await asyncio.sleep(0.3)  # the buffer is dry: silence, not the end
        assert client.is_playing()
        assert source.underruns >= 1
        silent = sum(1 for _, p in client.snapshot() if p == OPUS_SILENCE_FRAME)
        assert silent >= 10
        sink.feed(b"".join(writer.audio_page(frame) for _ in range(10)))
        await wait_until(lambda: source.frames == 20)
        assert client.is_playing()
        gaps = np.diff([t for t, _ in client.snapshot()])
        assert float(np.max(gaps)) < 0.05
    finally:
        client.stop()


# -- command handlers against the real gateway and engine -----------------------------


async def test_play_enqueue_skip_stop(engine: EngineProcess, media_server: MediaServer) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    async with running_gateway(settings_for(engine)) as gateway:
        voice = VoiceBridge(gateway, connect=recording_connect(clients))
        commands = MusicCommands(gateway, voice)
        await gateway.socket.connected.wait()
        channel = Channel(501)
        me = User.in_channel(channel)

        first = FakeInteraction(500, me)
        await commands.play(first, media_server.url("long_a.mp3"))
        assert first.response.deferred
        assert first.reply.content == "Now playing **long_a**." and not first.reply.ephemeral
        second = FakeInteraction(500, me)
        await commands.play(second, media_server.url("c.mp3"))
        assert second.reply.content == "Queued **c** at position 1."

        player = gateway.players.get("500")
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING)
        await wait_until(lambda: len(audio_of(clients[501])) > 60)

        queue = FakeInteraction(500, me)
        await commands.queue(queue)
        embed = queue.reply.embed
        assert embed is not None and embed.fields[0].value == "long_a"
        assert "`1.` c" in embed.fields[1].value

        now = FakeInteraction(500, me)
        await commands.nowplaying(now)
        assert now.reply.embed is not None and now.reply.embed.title == "long_a"
        assert "▰" in (now.reply.embed.description or "")

        skip = FakeInteraction(500, me)
        await commands.skip(skip)
        assert skip.reply.content == "Skipped **long_a**."
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "c"
                         and player.view().status is PlayerStatus.PLAYING)
        count = len(audio_of(clients[501]))
        await wait_until(lambda: len(audio_of(clients[501])) > count + 60)
        packets = [p for _, p in audio_of(clients[501])][-40:]
        assert abs(await tone_of(packets) - TONES["c"]) < 3

        status = FakeInteraction(500, me)
        await commands.status(status)
        assert status.reply.embed is not None
        assert status.reply.embed.fields[0].value == "ok"

        stop = FakeInteraction(500, me)
        await commands.stop(stop)
        assert stop.reply.content == "Stopped, cleared the queue and left the channel."
        assert not clients[501].is_connected()
        await player.settled()
        assert await gateway.engine.status("500") is None  # the engine session is gone
        await voice.close()


async def test_every_invalid_use_gets_a_clear_private_reply_and_changes_nothing(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    async with running_gateway(settings_for(engine)) as gateway:
        voice = VoiceBridge(gateway, connect=recording_connect(clients))
        commands = MusicCommands(gateway, voice)
        await gateway.socket.connected.wait()
        home = Channel(601)
        me = User.in_channel(home)
        elsewhere = User.in_channel(Channel(602))
        nowhere = User.in_channel(None)

        async def refused(call, words: str, user: User = me, guild: int | None = 600) -> None:  # type: ignore[no-untyped-def]
            interaction = FakeInteraction(guild, user)
            await call(interaction)
            assert interaction.reply.ephemeral, interaction.reply
            assert words in (interaction.reply.content or ""), interaction.reply.content

        await refused(lambda i: commands.play(i, "x"), "work in a server", guild=None)
        await refused(lambda i: commands.play(i, media_server.url("a.mp3")),
                      "Join a voice channel first", user=nowhere)
        await refused(lambda i: commands.play(i, "   "), "Tell me what to play")
        await refused(lambda i: commands.play(i, "lofi beats to test by"), "Couldn't find that")
        await refused(commands.skip, "nothing is playing")
        await refused(commands.pause, "nothing is playing")
        await refused(commands.previous, "there is no previous track")
        await refused(commands.nowplaying, "Nothing is playing")
        await refused(commands.stop, "Nothing is playing")
        await refused(lambda i: commands.seek(i, "1:9x"),
                      "Could not read '1:9x' as a time; use 90, 1:30 or 1:02:30")
        await refused(lambda i: commands.seek(i, "1:75"), "stop at 59")
        await refused(lambda i: commands.queue(i, 3), "There is no page 3")

        ok = FakeInteraction(600, me)
        await commands.play(ok, media_server.url("long_a.mp3"))
        player = gateway.players.get("600")
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING)
        before = player.view()
        await refused(lambda i: commands.jump(i, 5), "the queue is empty")
        await refused(lambda i: commands.remove(i, 1), "the queue is empty")
        await refused(lambda i: commands.seek(i, "2:00"), "only 0:40 long")
        await refused(commands.pause, "Join a voice channel first", user=nowhere)
        await refused(commands.skip, "need to be in my voice channel", user=elsewhere)
        await refused(commands.resume, "not paused")
        after = player.view()
        assert (after.current, after.upcoming, after.status) == (
            before.current, before.upcoming, before.status)
        help_ = FakeInteraction(600, me)
        await commands.help(help_)
        assert help_.reply.ephemeral and "/play query" in (help_.reply.embed.description or "")  # type: ignore[union-attr]

        seek = FakeInteraction(600, me)
        await commands.seek(seek, "0:20")
        assert seek.reply.content == "Jumped to 0:20."
        pause = FakeInteraction(600, me)
        await commands.pause(pause)
        assert pause.reply.content == "Paused."
        await commands.stop(FakeInteraction(600, me))
        await voice.close()


def test_time_parsing() -> None:
    from bot.timeparse import format_time, parse_time

    assert parse_time("90") == 90
    assert parse_time("1:30") == 90
    assert parse_time("1:02:30") == 3750
    assert parse_time(" 2.5 ") == 2.5
    for bad in ("", "abc", "1:2:3:4", "-5", "1:60"):
        with pytest.raises(ValueError):
            parse_time(bad)
    assert format_time(3750) == "1:02:30" and format_time(61) == "1:01"
    assert format_time(None) == "-:--"
