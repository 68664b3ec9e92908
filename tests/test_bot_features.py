"""The bot's newer commands through discord.py's own command tree, interactions and views,
against the real gateway and engine processes: /join and /leave, /voteskip, /playnext,
/history, /forward and /rewind, /removedupes, /volume, saved playlists, the buttons,
custom filters, uploads, per-guild settings, /lyrics and autoplay.

Discord's servers are the loopback stand-in (tests/support/discord_api.py); LRCLIB is a
stand-in on 127.0.0.1 (tests/support/lrclib.py); YouTube, for autoplay, is a stand-in
inside the engine's own yt-dlp (tests/support/engine_hooks). Nothing else is replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from gateway.player import LoopMode, PlayerStatus
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess

from .conftest import TONES
from .support.discord_api import DiscordWorld, Member
from .support.discord_api import snowflake as new_id
from .support.discord_standins import RecordingVoiceClient
from .support.gateway_harness import running_gateway, settings_for
from .support.hooks import hook_env, youtube_catalogue
from .support.lrclib import LrclibStandIn, record
from .support.media import write_tone
from .support.waiting import poll_until_async
from .test_bot import (
    MANAGE_GUILD,
    announcements,
    button,
    discord_bot,
    everything_said,
    hears,
    leaks,
    the_announcement,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def titles(tracks: Any) -> list[str]:
    return [t.title for t in tracks]


async def test_join_and_leave_keep_the_queue(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice, bob = Member(new_id(), "alice"), Member(new_id(), "bob")
    async with (running_gateway(settings_for(engine)) as gateway,
                discord_bot(gateway, clients, [alice, bob]) as (bot, world, api)):
        await gateway.socket.connected.wait()
        guild = world.guild_id
        bridge = bot.voice_bridge
        refused = await world.command(alice, "join")
        assert refused.ephemeral and "Join a voice channel first" in refused.content
        world.move(alice, world.voice_a)
        joined = await world.command(alice, "join")
        assert joined.content == "Joined **Voice A**." and not joined.ephemeral
        assert bridge.channel(guild) is not None
        again = await world.command(alice, "join")
        assert again.ephemeral and "already in **Voice A**" in again.content

        await world.command(alice, "play", query=media_server.url("long_a.mp3"))
        await world.command(alice, "play", query=media_server.url("long_b.mp3"))
        player = gateway.players.get(str(guild))
        await hears(clients[world.voice_a], "a")
        left = await world.command(alice, "leave")
        assert left.content == ("Left **Voice A**; the queue is kept (2 tracks): /resume "
                                "brings me back.")
        assert bridge.channel(guild) is None and not clients[world.voice_a].is_connected()
        view = player.view()
        assert view.paused and view.current is not None and view.current.title == "long_a"
        assert titles(view.upcoming) == ["long_b"]
        await wait_until(lambda: "the queue is kept" in the_announcement(api, world).text)
        assert the_announcement(api, world).buttons == []
        refused = await world.command(alice, "leave")
        assert refused.ephemeral and "not in a voice channel" in refused.content

        # /join brings it back without playing; the reply says what waits.
        world.move(alice, world.voice_b)
        back = await world.command(alice, "join")
        assert back.content == "Joined **Voice B**. **long_a** is waiting: /resume plays it."
        assert player.view().paused
        assert (await world.command(alice, "resume")).content == "Resumed."
        await hears(clients[world.voice_b], "a")

        # Moving it away from someone listening needs a DJ; from an empty channel, not.
        world.move(bob, world.voice_a)
        refused = await world.command(bob, "join")
        assert refused.ephemeral and "only a DJ can move me" in refused.content
        world.move(alice, None)
        moved = await world.command(bob, "join")
        assert moved.content == "Joined **Voice A**."
        assert bridge.channel_id(guild) == world.voice_a
        await world.command(bob, "stop")


async def test_voteskip_needs_more_than_half_and_a_dj_skips_at_once(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    admin = Member(new_id(), "admin", permissions=MANAGE_GUILD)
    alice, bob, carol = Member(new_id(), "alice"), Member(new_id(), "bob"), Member(
        new_id(), "carol")
    outsider = Member(new_id(), "outsider")
    async with (running_gateway(settings_for(engine)) as gateway,
                discord_bot(gateway, clients, [admin, alice, bob, carol, outsider])
                as (_, world, _api)):
        dj = Member(new_id(), "dj", roles=[world.dj_role])
        await gateway.socket.connected.wait()
        await world.command(admin, "settings dj", role=("role", world.dj_role))
        for member in (alice, bob, carol):
            world.move(member, world.voice_a)
        world.move(outsider, world.voice_b)
        for name in ("long_a.mp3", "long_b.mp3", "c.mp3", "d.webm"):
            await world.command(alice, "play", query=media_server.url(name))
        player = gateway.players.get(str(world.guild_id))
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING)

        first = await world.command(bob, "voteskip")
        assert first.content == ("bob votes to skip **long_a**: 1 of 2 votes needed "
                                 "(/voteskip to vote).") and not first.ephemeral
        twice = await world.command(bob, "voteskip")
        assert twice.ephemeral and "already voted" in twice.content
        elsewhere = await world.command(outsider, "voteskip")
        assert elsewhere.ephemeral and "my voice channel" in elsewhere.content
        assert player.view().current is not None and player.view().current.title == "long_a"
        passed = await world.command(carol, "voteskip")
        assert passed.content == "Vote passed (2 of 3 listening): skipped **long_a**."
        assert player.view().current is not None and player.view().current.title == "long_b"

        # A vote is for one track: bob's earlier vote does not count for long_b.
        again = await world.command(bob, "voteskip")
        assert "1 of 2 votes needed" in again.content
        # A DJ skips at once, even from another channel.
        world.move(dj, world.voice_b)
        at_once = await world.command(dj, "voteskip")
        assert at_once.content == "Skipped **long_b**."
        assert player.view().current is not None and player.view().current.title == "c"
        await hears(clients[world.voice_a], "c")
        await world.command(admin, "stop")


async def test_playnext_history_forward_rewind_removedupes_and_volume(
    engine: EngineProcess, media_server: MediaServer, media_dir: Path
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice = Member(new_id(), "alice")
    async with (running_gateway(settings_for(engine)) as gateway,
                discord_bot(gateway, clients, [alice]) as (_, world, api)):
        await gateway.socket.connected.wait()
        world.move(alice, world.voice_a)
        shown = await world.command(alice, "volume")
        assert shown.content == "The volume is 100 %."
        nothing = await world.command(alice, "history")
        assert nothing.ephemeral and "Nothing has played here yet." in nothing.content

        for name in ("long_a.mp3", "b.mp3", "c.mp3"):
            await world.command(alice, "play", query=media_server.url(name))
        nxt = await world.command(alice, "playnext", query=media_server.url("d.webm"))
        assert nxt.content == "**d** plays next."
        player = gateway.players.get(str(world.guild_id))
        assert titles(player.view().upcoming) == ["d", "b", "c"]

        await world.command(alice, "play", query=media_server.url("b.mp3"))
        await world.command(alice, "play", query=media_server.url("long_a.mp3"))
        deduped = await world.command(alice, "removedupes")
        assert deduped.content == "Removed 2 repeated tracks from the queue."
        assert titles(player.view().upcoming) == ["d", "b", "c"]
        none_left = await world.command(alice, "removedupes")
        assert none_left.ephemeral and "no repeated tracks" in none_left.content

        await hears(clients[world.voice_a], "a")
        forward = await world.command(alice, "forward", seconds=20)
        assert forward.content.startswith("Forward 20 s: playing from 0:2"), forward.content
        assert player.view().position >= 20
        rewind = await world.command(alice, "rewind", seconds=300)
        assert rewind.content == "Back 300 s: playing from 0:00."
        too_far = await world.command(alice, "forward", seconds=600)
        assert too_far.ephemeral and "of the track is left" in too_far.content

        volume = await world.command(alice, "volume", percent=35)
        assert volume.content == "Volume set to 35 %."
        assert (await world.command(alice, "volume")).content == "The volume is 35 %."

        await world.command(alice, "skip")
        await world.command(alice, "skip")
        history = await world.command(alice, "history")
        lines = history.embeds[0]["description"].splitlines()
        assert lines[0].startswith("`1.` d") and lines[1].startswith("`2.` long_a")
        assert "alice" in lines[0]
        assert "the latest first" in history.embeds[0]["footer"]["text"]
        await world.command(alice, "stop")
        assert not leaks(everything_said(api), engine, media_dir)


async def test_saved_playlists_load_in_another_server_and_are_each_users_own(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice, bob = Member(new_id(), "alice"), Member(new_id(), "bob")
    async with (running_gateway(settings_for(engine)) as gateway,
                discord_bot(gateway, clients, [alice, bob]) as (bot, world, api)):
        await gateway.socket.connected.wait()
        world.move(alice, world.voice_a)
        empty = await world.command(alice, "playlist save", name="Nothing")
        assert empty.ephemeral and "the queue is empty" in empty.content
        for name in ("long_a.mp3", "b.mp3", "c.mp3"):
            await world.command(alice, "play", query=media_server.url(name))
        saved = await world.command(alice, "playlist save", name="Road  trip")
        assert saved.ephemeral
        assert saved.content == ("Saved **Road trip**: 3 tracks. Load it anywhere with "
                                 "/playlist load.")
        listed = await world.command(alice, "playlist list")
        assert listed.ephemeral and "**Road trip** (3 tracks)" in listed.content
        choices = await world.autocomplete(alice, "playlist load", "name", "road")
        assert [c["value"] for c in choices] == ["Road trip"]
        assert await world.autocomplete(bob, "playlist load", "name", "road") == []
        await world.command(alice, "stop")

        # Another server the bot is in: alice's playlist is hers there too.
        other = DiscordWorld(bot, api, new_id())
        other.create_guild([alice, bob])
        other.move(alice, other.voice_a)
        other.move(bob, other.voice_a)
        nope = await other.command(bob, "playlist load", name="road trip")
        assert nope.ephemeral and "no playlist called **road trip**" in nope.content
        loaded = await other.command(alice, "playlist load", name="ROAD TRIP")
        assert loaded.content == ("Queued 3 tracks from your playlist **Road trip**; "
                                  "**long_a** starts now.")
        player = gateway.players.get(str(other.guild_id))
        view = player.view()
        assert view.current is not None and view.current.title == "long_a"
        assert view.current.requested_by == "alice"
        assert titles(view.upcoming) == ["b", "c"]
        await hears(clients[other.voice_a], "a")
        assert announcements(api, other)  # the announcement is in that server's channel

        deleted = await other.command(alice, "playlist delete", name="road trip")
        assert deleted.ephemeral and deleted.content == "Deleted your playlist **Road trip**."
        gone = await other.command(alice, "playlist load", name="road trip")
        assert gone.ephemeral and "no playlist called" in gone.content
        await other.command(alice, "stop")


async def test_buttons_previous_loop_shuffle_and_queue(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice, bob = Member(new_id(), "alice"), Member(new_id(), "bob")
    async with (running_gateway(settings_for(engine)) as gateway,
                discord_bot(gateway, clients, [alice, bob]) as (bot, world, api)):
        bot.handlers._rng.seed(7)
        await gateway.socket.connected.wait()
        world.move(alice, world.voice_a)
        for name in ("long_a.mp3", "long_b.mp3", "a.mp3", "b.mp3", "c.mp3"):
            await world.command(alice, "play", query=media_server.url(name))
        player = gateway.players.get(str(world.guild_id))
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING
                         and "Now playing" in the_announcement(api, world).text)
        message = the_announcement(api, world)
        assert [b["custom_id"].split(":")[1] for b in message.buttons] == [
            "previous", "pause", "skip", "stop", "loop", "shuffle", "queue"]

        await world.press(alice, message, button(message, "skip"))
        assert player.view().current is not None and player.view().current.title == "long_b"
        pressed = await world.press(alice, message, button(message, "previous"))
        assert pressed.kind == 6  # acknowledged: the message shows it
        assert player.view().current is not None and player.view().current.title == "long_a"
        await hears(clients[world.voice_a], "a")

        await world.press(alice, message, button(message, "loop"))
        assert player.view().loop is LoopMode.TRACK
        await wait_until(lambda: any(b.get("label") == "Loop: track"
                                     for b in the_announcement(api, world).buttons))
        await world.press(alice, message, button(message, "loop"))
        assert player.view().loop is LoopMode.QUEUE

        before = titles(player.view().upcoming)
        await world.press(alice, message, button(message, "shuffle"))
        after = titles(player.view().upcoming)
        assert sorted(after) == sorted(before) and after != before

        queue = await world.press(bob, message, button(message, "queue"))
        assert queue.ephemeral  # anyone may look, privately
        assert queue.embeds[0]["fields"][0]["value"] == "long_a"
        assert f"`1.` {after[0]}" in queue.embeds[0]["fields"][1]["value"]
        await world.press(alice, message, button(message, "stop"))


async def test_custom_filters_reach_the_engine(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice = Member(new_id(), "alice")
    async with (running_gateway(settings_for(engine)) as gateway,
                discord_bot(gateway, clients, [alice]) as (_, world, api)):
        await gateway.socket.connected.wait()
        await wait_until(lambda: gateway.link.discovered)
        world.move(alice, world.voice_a)
        key = str(world.guild_id)
        await world.command(alice, "play", query=media_server.url("long_a.mp3"))
        player = gateway.players.get(key)
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING)

        done = await world.command(alice, "filter", equalizer="63hz:0.2 4k:-3db", speed=1.25)
        assert done.content == ("Filters set: equalizer 63 Hz +0.2, 4 kHz -0.073 · "
                                "speed x1.25."), done.content
        assert player.view().filter_name == "custom"
        pitched = await world.command(alice, "filter", pitch=0.8)
        assert "equalizer 63 Hz +0.2" in pitched.content and "pitch x0.8" in pitched.content
        await player.settled()

        async def active() -> list[str]:
            return (await gateway.engine.filters(key)).active

        async def both() -> bool:
            return {"equalizer", "timescale"} <= set(await active())

        await poll_until_async(both, timeout=10)
        await wait_until(lambda: "filter: custom" in the_announcement(api, world).text)

        for options, words in (({}, "choose a preset"),
                               ({"equalizer": "loud"}, "could not read 'loud'"),
                               ({"equalizer": "0:3"}, "gain")):
            refused = await world.command(alice, "filter", **options)
            assert refused.ephemeral and words in refused.content, (options, refused)
        preset = await world.command(alice, "filter", preset="reset")
        assert preset.content == "Filters off: the track sounds as it was made."
        await world.command(alice, "stop")


async def test_an_uploaded_audio_file_plays_and_others_are_refused_in_words(
    engine: EngineProcess, media_server: MediaServer, media_dir: Path
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice = Member(new_id(), "alice")
    settings = settings_for(engine, bot_max_upload_mb=2)
    async with (running_gateway(settings) as gateway,
                discord_bot(gateway, clients, [alice]) as (_, world, api)):
        await gateway.socket.connected.wait()
        world.move(alice, world.voice_a)

        def upload(name: str, kind: str | None, size: int = 200_000) -> tuple[str, Any]:
            # The media server plays Discord's CDN: a link with its signature.
            return ("attachment", {"url": media_server.url(name, ex="6f1a", hm="abc"),
                                   "filename": name, "size": size, "content_type": kind})

        for options, words in (
            ({"file": upload("clip.mp4", "video/mp4")}, "**clip.mp4** is not an audio file "
                                                        "(video/mp4)"),
            ({"file": upload("c.mp3", None)}, "I can't tell what kind of file **c.mp3** is"),
            ({"file": upload("c.mp3", "audio/mpeg", size=3_500_000)},
             "**c.mp3** is 3.5 MB; I play uploads of up to 2 MB."),
            ({"file": upload("c.mp3", "audio/mpeg"), "query": "words"}, "not both"),
            ({}, "Tell me what to play"),
        ):
            refused = await world.command(alice, "play", **options)
            assert refused.ephemeral and words in refused.content, (options, refused.content)
        assert not clients

        played = await world.command(alice, "play", file=upload("c.mp3", "audio/mpeg"))
        assert played.content == "Now playing **c**."
        await hears(clients[world.voice_a], "c")
        player = gateway.players.get(str(world.guild_id))
        view = player.view()
        assert view.current is not None and view.current.url.startswith(media_server.url("c.mp3"))
        await world.command(alice, "stop")
        assert not leaks(everything_said(api), engine, media_dir)


async def test_default_volume_and_announcement_channel(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    admin = Member(new_id(), "admin", permissions=MANAGE_GUILD)
    alice = Member(new_id(), "alice")
    async with (running_gateway(settings_for(engine)) as gateway,
                discord_bot(gateway, clients, [admin, alice]) as (bot, world, api)):
        await gateway.socket.connected.wait()
        await wait_until(lambda: gateway.link.discovered)
        refused = await world.command(alice, "settings volume", percent=40)
        assert refused.ephemeral and "Manage Server" in refused.content
        volume = await world.command(admin, "settings volume", percent=40)
        assert "Default volume set to 40 %" in volume.content
        announce = await world.command(admin, "settings announce",
                                       channel=("channel", world.text_b))
        assert announce.content.startswith(f"Now-playing messages go to <#{world.text_b}>")
        shown = await world.command(admin, "settings show")
        assert "default volume: 40 %" in shown.text
        assert f"announcements: <#{world.text_b}>" in shown.text

        world.move(alice, world.voice_a)
        await world.command(alice, "play", query=media_server.url("long_a.mp3"))
        player = gateway.players.get(str(world.guild_id))
        assert player.view().volume == pytest.approx(0.4)
        await player.settled()
        sessions = await gateway.engine.sessions()
        assert next(s.volume for s in sessions
                    if s.session_id == str(world.guild_id)) == pytest.approx(0.4)
        await wait_until(lambda: api.channel_messages(world.text_b))
        assert not announcements(api, world)  # nothing in the command's channel
        assert "long_a" in api.channel_messages(world.text_b)[0].text

        # A queue restored or waiting keeps its own volume; an empty start gets 40 %.
        await world.command(alice, "volume", percent=90)
        await world.command(alice, "leave")
        await world.command(alice, "join")
        assert player.view().volume == pytest.approx(0.9)
        await world.command(alice, "stop")
        await world.command(alice, "play", query=media_server.url("c.mp3"))
        assert player.view().volume == pytest.approx(0.4)
        cleared = await world.command(admin, "settings announce")
        assert "where playback was started" in cleared.content
        assert (await bot.guild_settings.get(world.guild_id)).announce_channel_id is None
        await world.command(alice, "stop")


SYNCED = "".join(f"[00:{i:02d}.50]line {i} of long a\n" for i in range(0, 40, 2))


async def test_lyrics_answer_and_the_now_playing_line(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice = Member(new_id(), "alice")
    records = [record("long_a", "Tone Band", 40.0, synced=SYNCED),
               record("b", "Instrumentalists", 12.0, instrumental=True)]
    async with LrclibStandIn(records) as lrclib:
        settings = settings_for(engine, lyrics_url=lrclib.url)
        async with (running_gateway(settings) as gateway,
                    discord_bot(gateway, clients, [alice]) as (_, world, api)):
            await gateway.socket.connected.wait()
            world.move(alice, world.voice_a)
            idle = await world.command(alice, "lyrics")
            assert idle.ephemeral and "Nothing is playing." in idle.content
            await world.command(alice, "play", query=media_server.url("long_a.mp3"))
            player = gateway.players.get(str(world.guild_id))
            await hears(clients[world.voice_a], "a")

            answer = await world.command(alice, "lyrics")
            embed = answer.embeds[0]
            assert embed["title"] == "Lyrics: long_a — Tone Band"
            assert "▶ **line " in embed["description"]
            assert "LRCLIB" in embed["footer"]["text"]
            # The card follows the lines as they are sung.
            await wait_until(lambda: len({line for line in _sung(api, world)}) >= 3,
                             within=30)
            assert lrclib.paths().count("/api/search") == 1  # looked up once, cached

            await world.command(alice, "play", query=media_server.url("b.mp3"), now=True)
            instrumental = await world.command(alice, "lyrics")
            assert instrumental.content == "**b** is an instrumental: there are no words to show."
            await world.command(alice, "play", query=media_server.url("c.mp3"), now=True)
            none = await world.command(alice, "lyrics")
            assert none.ephemeral and none.content == "I found no lyrics for **c**."
            lrclib.status = 503
            await world.command(alice, "play", query=media_server.url("d.webm"), now=True)
            down = await world.command(alice, "lyrics")
            assert down.ephemeral and "can't be reached right now" in down.content
            await world.command(alice, "stop")
            assert player.view().current is None
            assert all(path.startswith("/api/") for path in lrclib.paths())


def _sung(api: Any, world: DiscordWorld) -> list[str]:
    """The lyrics lines the now-playing message showed, over all its edits."""
    out = []
    for message in announcements(api, world):
        for payload in [*message.history, message.payload]:
            for embed in payload.get("embeds") or []:
                for line in str(embed.get("description") or "").splitlines():
                    if line.startswith("🎤"):
                        out.append(line)
    return out


@pytest.fixture
def youtube_engine(media_dir: Path, media_server: MediaServer, tmp_path: Path,
                   engine_factory: Callable[..., AbstractContextManager[EngineProcess]]
                   ) -> Iterator[EngineProcess]:
    """An engine whose yt-dlp finds YouTube videos and mixes in a stand-in catalogue."""
    if not (media_dir / "auto_c.mp3").exists():
        write_tone(media_dir / "auto_c.mp3", TONES["c"], 3.0)
    videos = {"seedToneC01": (media_server.url("auto_c.mp3"), "Seed - Tone C", 3.0),
              "mixToneA001": (media_server.url("long_a.mp3"), "Mix - Tone A", 40.0),
              "mixToneB001": (media_server.url("long_b.mp3"), "Mix - Tone B", 40.0),
              "loneVideo01": (media_server.url("auto_c.mp3"), "Lone - Tone C", 3.0)}
    mixes = {"seedToneC01": ["mixToneA001", "seedToneC01", "mixToneB001"],
             "loneVideo01": []}
    catalogue = youtube_catalogue(tmp_path / "youtube.json", videos, mixes)
    with engine_factory(**hook_env(youtube=catalogue)) as process:
        yield process


async def test_autoplay_continues_with_the_mix_of_the_last_track(
    youtube_engine: EngineProcess, media_server: MediaServer, media_dir: Path
) -> None:
    clients: dict[int, RecordingVoiceClient] = {}
    alice = Member(new_id(), "alice")
    async with (running_gateway(settings_for(youtube_engine)) as gateway,
                discord_bot(gateway, clients, [alice]) as (bot, world, api)):
        await gateway.socket.connected.wait()
        world.move(alice, world.voice_a)
        on = await world.command(alice, "autoplay", mode="on")
        assert on.content.startswith("Autoplay is on: when the queue runs out, I add tracks "
                                     "related to the last one (YouTube).")
        seed = "https://www.youtube.com/watch?v=seedToneC01"
        played = await world.command(alice, "play", query=seed)
        assert played.content == "Now playing **Seed - Tone C**."
        player = gateway.players.get(str(world.guild_id))
        # While the last track plays, its mix is queued after it (without itself).
        await wait_until(lambda: titles(player.view().upcoming) == [
            "Mix - Tone A", "Mix - Tone B"], within=60)
        assert all(t.requested_by == "autoplay" for t in player.view().upcoming)
        await hears(clients[world.voice_a], "c", frames=20)
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "Mix - Tone A", within=30)
        await hears(clients[world.voice_a], "a")
        assert bot.handlers.autoplay.added == 2

        # A mix with nothing new: said on the card, and the queue ends.
        await world.command(alice, "stop")
        world.move(alice, world.voice_a)
        await world.command(alice, "play", query="https://www.youtube.com/watch?v=loneVideo01")
        await wait_until(lambda: "Autoplay found nothing new related to **Lone - Tone C**."
                         in announcements(api, world)[-1].text, within=60)
        await wait_until(lambda: "The queue has ended." in announcements(api, world)[-1].text,
                         within=30)
        # A track of another site: autoplay says it cannot help.
        await world.command(alice, "play", query=media_server.url("short_c.mp3"))
        await wait_until(lambda: any(
            "Autoplay finds related tracks for YouTube tracks only; **short_c** is not one."
            in m.text for m in announcements(api, world)), within=30)
        off = await world.command(alice, "autoplay", mode="off")
        assert off.content == "Autoplay is off: the queue ends after its last track."
        await world.command(alice, "stop")
        assert not leaks(everything_said(api), youtube_engine, media_dir)
