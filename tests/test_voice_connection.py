"""The engine's own Discord voice connection against the Discord voice stand-in.

Real sockets on 127.0.0.1 (the stand-in's WebSocket and UDP), real encryption both
ways, real DAVE with davey on both sides, real libopus: a 440 Hz tone encoded by the
engine's Opus encoder goes out on a 20 ms schedule, and the stand-in must hear 440 Hz
at about 50 packets a second.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import numpy as np
import pytest

from audio_engine.audio.codec import OpuslibEncoder
from audio_engine.voice import (
    EncryptionMode,
    VoiceClosed,
    VoiceConnectError,
    VoiceConnection,
    VoiceConnectionState,
    VoiceCredentials,
)
from protocol import OPUS_SILENCE_FRAME

from .support.discord_voice import AES_GCM, XCHACHA, DiscordVoiceStandIn

#: A whole test, stand-in included, never takes longer than this.
TEST_DEADLINE = 30.0
BOT_USER_ID = 170939974227541168


def tone_frames(frequency: float, seconds: float) -> list[bytes]:
    """*seconds* of a stereo sine as 20 ms Opus frames, from the engine's encoder."""
    encoder = OpuslibEncoder(bitrate=96_000, complexity=5)
    count = round(seconds * 50)
    t = np.arange(count * 960) / 48_000
    wave = (np.sin(2 * np.pi * frequency * t) * 0.3 * 32767).astype(np.int16)
    stereo = np.repeat(wave, 2)
    return [encoder.encode(stereo[i * 1920:(i + 1) * 1920].tobytes()) for i in range(count)]


TONE = tone_frames(440.0, 3.0)


def credentials(standin: DiscordVoiceStandIn, *, channel: bool = True,
                token: str | None = None) -> VoiceCredentials:
    return VoiceCredentials(
        guild_id=standin.server_id, user_id=BOT_USER_ID, session_id=standin.session_id,
        token=token or standin.token, endpoint=standin.endpoint,
        channel_id=standin.channel_id if channel else None)


async def play(voice: VoiceConnection, frames: list[bytes],
               at_frame: Callable[[int], object] | None = None) -> int:
    """Send *frames* on a 20 ms clock of absolute deadlines, as an engine tick does;
    the number that went out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    sent = 0
    for index, frame in enumerate(frames):
        if at_frame is not None:
            at_frame(index)
        sent += voice.send_opus(frame)
        deadline += 0.020
        await asyncio.sleep(max(0.0, deadline - loop.time()))
    return sent


def assert_heard_tone(standin: DiscordVoiceStandIn, frequency: float = 440.0) -> None:
    assert abs(standin.dominant_frequency() - frequency) < 5.0
    assert 45.0 <= standin.packets_per_second() <= 55.0, standin.packets_per_second()
    assert standin.undecryptable == 0


def no_voice_tasks_left() -> bool:
    return not [task for task in asyncio.all_tasks()
                if (task.get_name() or "").startswith("voice") and not task.done()]


@pytest.mark.parametrize("mode", [AES_GCM, XCHACHA])
async def test_a_tone_sent_every_20_ms_is_heard_at_50_packets_a_second(mode: str) -> None:
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn(modes=[mode]) as standin:
        voice = VoiceConnection(credentials(standin))
        await voice.connect()
        assert voice.state is VoiceConnectionState.CONNECTED
        assert voice.mode is EncryptionMode(mode)
        sent = await play(voice, TONE)
        await standin.wait_for_packets(sent)
        await voice.close()
    assert sent == len(TONE)
    assert_heard_tone(standin)
    sequences = [packet.sequence for packet in standin.packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(sequences))
    timestamps = [packet.timestamp for packet in standin.packets]
    assert all((b - a) % 2**32 == 960 for a, b in itertools.pairwise(timestamps))
    assert standin.speaking[-1]["speaking"] == 1
    assert not any(packet.e2ee for packet in standin.packets)
    assert voice.state is VoiceConnectionState.CLOSED and voice.closed_with is None
    assert no_voice_tasks_left()


async def test_aes_gcm_is_chosen_when_both_modes_are_offered() -> None:
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn(
            modes=[XCHACHA, AES_GCM]) as standin, VoiceConnection(credentials(standin)) as voice:
        assert voice.mode is EncryptionMode.AEAD_AES256_GCM_RTPSIZE
        assert standin.selected[0]["data"]["mode"] == AES_GCM
        assert standin.selected[0]["data"]["address"] == "127.0.0.1"
        assert standin.identifies[0]["max_dave_protocol_version"] == 1


@pytest.mark.parametrize("mode", [AES_GCM, XCHACHA])
async def test_with_dave_every_frame_is_end_to_end_encrypted(mode: str) -> None:
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn(
            modes=[mode], dave=True) as standin:
        voice = VoiceConnection(credentials(standin))
        await voice.connect()
        await standin.dave_ready.wait()  # commit, welcome, transition executed
        assert voice.dave_active
        sent = await play(voice, TONE)
        await standin.wait_for_packets(sent)
        await voice.close()
    assert_heard_tone(standin)
    assert standin.e2ee_packets == len(standin.packets) == len(TONE)


async def test_without_a_channel_id_dave_is_not_offered_and_audio_stays_plain() -> None:
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn(dave=True) as standin:
        async with VoiceConnection(credentials(standin, channel=False)) as voice:
            assert standin.identifies[0]["max_dave_protocol_version"] == 0
            sent = await play(voice, TONE[:50])
            await standin.wait_for_packets(sent)
    assert standin.e2ee_packets == 0 and not standin.dave_ready.is_set()


async def test_a_crashed_voice_server_4015_is_resumed_and_audio_goes_on() -> None:
    closes: list[VoiceClosed] = []
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn() as standin:
        voice = VoiceConnection(credentials(standin), on_close=closes.append)
        await voice.connect()
        ssrc = (await _first_packet_ssrc(voice, standin))
        standin.packets.clear()
        seq_before_close: list[int] = []

        async def crash_the_server() -> None:
            await standin.wait_for_packets(50)  # a second of audio first
            assert standin._session is not None
            seq_before_close.append(standin._session.seq)
            await standin.close_connection(4015, "voice server crashed")

        async with asyncio.TaskGroup() as group:
            group.create_task(crash_the_server())
            sent = await play(voice, TONE)
        await standin.wait_for_packets(sent)
        await voice.close()
    assert len(standin.identifies) == 1 and standin.connections == 2
    assert standin.resumes == [{"server_id": str(standin.server_id),
                                "session_id": standin.session_id, "token": standin.token,
                                "seq_ack": seq_before_close[0]}]
    assert voice.resumes == 1 and closes == []
    assert {packet.ssrc for packet in standin.packets} == {ssrc}  # the same session
    assert sent >= len(TONE) - 10  # at most a few frames fell into the resume
    assert voice.stats.frames_dropped_disconnected == len(TONE) - sent
    assert abs(standin.dominant_frequency() - 440.0) < 5.0


async def test_a_timed_out_session_4009_is_identified_anew() -> None:
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn() as standin:
        async with VoiceConnection(credentials(standin)) as voice:
            first = await _first_packet_ssrc(voice, standin)
            await standin.close_connection(4009, "session timeout")
            await standin.wait_for_connections(2)  # the new attempt has begun
            await voice.connect()  # ...and now it is usable
            standin.packets.clear()
            second = await _first_packet_ssrc(voice, standin)
    assert len(standin.identifies) == 2 and standin.resumes == []
    assert first != second and voice.reidentifies == 1


async def test_a_disconnect_4014_is_final_reported_once_and_nothing_keeps_running() -> None:
    closes: list[VoiceClosed] = []
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn() as standin:
        voice = VoiceConnection(credentials(standin), on_close=closes.append)
        await voice.connect()
        await standin.close_connection(4014, "Disconnected")
        closed = await voice.wait_closed()
        assert closed == VoiceClosed(4014, "Disconnected", by_remote=True)
        assert closes == [closed] and voice.closed_with == closed
        assert voice.state is VoiceConnectionState.CLOSED
        assert no_voice_tasks_left()
        assert not voice.send_opus(TONE[0])
        await voice.close()  # idempotent, and no second report
    assert closes == [closed] and standin.connections == 1


async def test_a_connection_closed_before_it_started_never_connects() -> None:
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn() as standin:
        voice = VoiceConnection(credentials(standin))
        await voice.close()
        with pytest.raises(VoiceConnectError):
            await voice.connect()
    assert standin.connections == 0 and voice.state is VoiceConnectionState.CLOSED


async def test_a_wrong_token_fails_connect_with_discords_code() -> None:
    closes: list[VoiceClosed] = []
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn() as standin:
        voice = VoiceConnection(credentials(standin, token="stale"), on_close=closes.append)
        with pytest.raises(VoiceConnectError) as info:
            await voice.connect()
    assert info.value.closed.code == 4004 and closes == [info.value.closed]
    assert standin.connections == 1


async def test_heartbeats_carry_seq_ack_and_an_unanswered_one_leads_to_a_resume() -> None:
    async with asyncio.timeout(TEST_DEADLINE), DiscordVoiceStandIn(
            heartbeat_interval=0.1) as standin:
        async with VoiceConnection(credentials(standin)) as voice:
            await standin.wait_until(lambda: len(standin.heartbeats) >= 2)
            assert standin._session is not None
            assert standin.heartbeats[-1]["seq_ack"] == standin._session.seq
            assert voice.ping_ms >= 0
            standin.ack_heartbeats = False
            await standin.wait_for_connections(2)
            standin.ack_heartbeats = True
            await standin.wait_until(lambda: bool(standin.resumes))
    assert len(standin.identifies) == 1 and voice.resumes == 1


async def _first_packet_ssrc(voice: VoiceConnection, standin: DiscordVoiceStandIn) -> int:
    """Send silence on the 20 ms clock until the stand-in decrypts a packet; its SSRC."""
    while not standin.packets:
        voice.send_opus(OPUS_SILENCE_FRAME)
        await asyncio.sleep(0.02)
    return standin.packets[-1].ssrc
