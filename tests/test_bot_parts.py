"""The bot's new pure parts: skip votes, custom filters, uploads, the lyrics answer, the
buttons, the card's lyrics line, related YouTube tracks and the guild settings' fields."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import pytest

from bot.attachments import upload_url
from bot.controls import Action, controls_view, next_loop
from bot.guild_settings import GuildSettings
from bot.lyrics_card import MAX_DESCRIPTION, lyrics_embed
from bot.nowplaying import Timeline, render
from bot.sound import custom_filters, describe_filters, parse_equalizer
from bot.tracks import NotPlayable
from bot.votes import SkipVotes, needed
from gateway.engine_client import EngineError, PlaylistEntry, PlaylistResult
from gateway.lyrics import Lyrics, parse_lrc
from gateway.player import (
    CommandError,
    EngineEvent,
    Enqueue,
    LoopMode,
    PlayerCore,
    SetLoop,
    Track,
)
from gateway.related import AUTOPLAY, RelatedTracks, RelatedUnavailable, YouTubeMix, youtube_id
from protocol import EventType
from protocol.filter_presets import Preset, preset
from protocol.filters import Filters, parse_filters

# -- votes -------------------------------------------------------------------------------


def test_a_majority_of_those_listening_skips() -> None:
    assert [needed(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    votes = SkipVotes()
    room = {1, 2, 3, 4}
    first = votes.vote(9, "t1", 1, room)
    assert (first.votes, first.needed, first.passed, first.again) == (1, 3, False, False)
    again = votes.vote(9, "t1", 1, room)
    assert again.again and again.votes == 1
    assert not votes.vote(9, "t1", 2, room).passed
    assert votes.vote(9, "t1", 3, room).passed
    assert len(votes) == 0  # a passed vote is cleared


def test_votes_follow_the_track_and_the_people_present() -> None:
    votes = SkipVotes()
    votes.vote(9, "t1", 1, {1, 2, 3, 4, 5})
    votes.vote(9, "t1", 2, {1, 2, 3, 4, 5})
    # Voter 2 left; the room is now four: 1 vote of 3.
    tally = votes.vote(9, "t1", 3, {1, 3, 4, 5})
    assert (tally.votes, tally.needed, tally.passed) == (2, 3, False)
    # A new track starts a new count.
    fresh = votes.vote(9, "t2", 1, {1, 3, 4, 5})
    assert fresh.votes == 1
    # The room emptied around the vote: those left carry it.
    assert votes.vote(9, "t2", 3, {1, 3}).passed
    votes.vote(8, "x", 1, {1, 2, 3})
    votes.clear(8)
    assert len(votes) == 0


# -- custom filters ----------------------------------------------------------------------


def test_equalizer_bands_by_number_frequency_and_decibels() -> None:
    assert parse_equalizer("0:0.2, 63hz=0.1 1k:-0.1 16khz:+6db") == {
        0: 0.2, 2: 0.1, 8: -0.1, 14: pytest.approx(0.2488, abs=1e-3)}  # +6 dB: about double
    assert parse_equalizer("flat") is None
    for bad, words in (("", "give equalizer bands"), ("63hz", "BAND:GAIN"),
                       ("50hz:0.1", "no equalizer band at 50hz"), ("15:0.1", "band at 15")):
        with pytest.raises(CommandError, match=words):
            parse_equalizer(bad)


def test_custom_filters_layer_on_what_plays_or_on_a_preset() -> None:
    command = custom_filters(Filters(), equalizer="63hz:0.2 100:0.1", speed=1.25)
    assert command.name == "custom"
    assert command.filters.gains()[2:4] == (0.2, 0.1)
    assert command.filters.timescale is not None and command.filters.timescale.speed == 1.25
    # The next change keeps what is there.
    pitched = custom_filters(command.filters, pitch=0.9)
    assert pitched.filters.gains()[2] == 0.2
    timescale = pitched.filters.timescale
    assert timescale is not None and (timescale.speed, timescale.pitch) == (1.25, 0.9)
    flat = custom_filters(pitched.filters, equalizer="flat")
    assert not any(flat.filters.gains()) and flat.filters.timescale is not None
    on_preset = custom_filters(command.filters, preset=Preset.NIGHTCORE, equalizer="0:0.3")
    assert on_preset.filters.gains()[0] == 0.3 and on_preset.filters.gains()[2] == 0.0
    assert custom_filters(Filters(), preset=Preset.BASSBOOST).name == "bassboost"
    assert describe_filters(command.filters) == "equalizer 63 Hz +0.2, 100 Hz +0.1 · speed x1.25"
    assert describe_filters(preset(Preset.SOFT)) == "lowPass"
    assert describe_filters(Filters()) == "none"


def test_custom_filters_are_checked_by_the_filter_model() -> None:
    with pytest.raises(CommandError, match="choose a preset"):
        custom_filters(Filters())
    with pytest.raises(CommandError, match="gain"):
        custom_filters(Filters(), equalizer="0:2")
    with pytest.raises(CommandError, match="speed times rate"):
        custom_filters(parse_filters({"timescale": {"rate": 3.0}}), speed=2.0)


# -- uploads -----------------------------------------------------------------------------


@dataclass
class Upload:
    filename: str = "song.mp3"
    content_type: str | None = "audio/mpeg"
    size: int = 1_000_000
    url: str = "https://cdn.discordapp.com/attachments/1/2/song.mp3?ex=1"


def test_uploads_must_be_audio_and_small_enough() -> None:
    assert upload_url(Upload(), max_bytes=25_000_000) == Upload.url
    assert upload_url(Upload(content_type="application/ogg; charset=binary"),
                      max_bytes=25_000_000)
    for upload, words in (
        (Upload(content_type="video/mp4", filename="clip.mp4"),
         "**clip.mp4** is not an audio file (video/mp4)"),
        (Upload(content_type=None), "I can't tell what kind of file **song.mp3** is"),
        (Upload(size=31_200_000), "**song.mp3** is 31.2 MB; I play uploads of up to 25 MB"),
        (Upload(url=""), "no address"),
    ):
        with pytest.raises(NotPlayable, match=words.replace("*", r"\*").replace("(", r"\(")
                           .replace(")", r"\)")):
            upload_url(upload, max_bytes=25_000_000)


# -- the lyrics answer -------------------------------------------------------------------


def test_the_lyrics_embed_marks_the_line_sung_now() -> None:
    synced = Lyrics("Song", "Someone", "a\nb", parse_lrc("[00:01.00]one *bold*\n[00:05.00]two"))
    embed = lyrics_embed(synced, title="Someone - Song", position=6.0)
    assert embed.title == "Lyrics: Song — Someone"
    assert embed.description == "one \\*bold\\*\n▶ **two**"
    assert embed.footer.text is not None and "LRCLIB" in embed.footer.text
    plain = lyrics_embed(Lyrics("", "", "first\n\nsecond"), title="Title", position=None)
    assert plain.title == "Lyrics: Title" and plain.description == "first\n\nsecond"


def test_long_lyrics_are_cut_around_the_line_sung_now() -> None:
    text = "".join(f"[{i // 60:02d}:{i % 60:02d}.00]line number {i} " + "la " * 20 + "\n"
                   for i in range(400))
    long = Lyrics("Long", "Band", "", parse_lrc(text))
    embed = lyrics_embed(long, title="Long", position=300.5)
    assert embed.description is not None and len(embed.description) <= MAX_DESCRIPTION
    assert embed.description.startswith("…\n") and embed.description.endswith("\n…")
    assert "▶ **line number 300 " in embed.description


# -- buttons and the card ----------------------------------------------------------------


def test_the_buttons_and_the_loop_cycle() -> None:
    view = controls_view(7, paused=True, loop=LoopMode.TRACK)
    ids = [item.item.custom_id for item in view.children]  # type: ignore[attr-defined]
    assert ids == [f"ag:{a}:7" for a in ("previous", "resume", "skip", "stop", "loop",
                                          "shuffle", "queue")]
    labels = [item.item.label for item in view.children]  # type: ignore[attr-defined]
    assert labels[4] == "Loop: track"
    rows = [item.item.row for item in view.children]  # type: ignore[attr-defined]
    assert rows == [0, 0, 0, 0, 1, 1, 1]
    assert [next_loop(m) for m in LoopMode] == [LoopMode.TRACK, LoopMode.QUEUE, LoopMode.OFF]
    assert {a.value for a in Action} >= {"previous", "loop", "shuffle", "queue"}


def test_the_card_shows_the_lyrics_line_and_the_loop() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(Track("http://x/a.mp3", "a", 100.0)), 0.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, 1, 0.0)
    core.on_event(EngineEvent(EventType.READY, 1), 0.0)
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    view = core.view(1.0)
    timeline = Timeline(view)
    card = render(view, timeline, line="la *la* `la`")
    assert "🎤 *la la la*" in (card.embed.description or "")
    assert card.loop is LoopMode.QUEUE
    assert card.key() != render(view, timeline, line="other").key()
    timeline.note("Autoplay found nothing new related to **a**.")
    assert "Autoplay found nothing new" in (render(view, timeline).embed.description or "")


# -- related tracks ----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "video"), [
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "dQw4w9WgXcQ"),
    ("https://youtu.be/dQw4w9WgXcQ?t=10", "dQw4w9WgXcQ"),
    ("https://music.youtube.com/watch?v=dQw4w9WgXcQ&list=x", "dQw4w9WgXcQ"),
    ("https://m.youtube.com/shorts/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
    ("https://www.youtube.com/embed/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
    ("https://www.youtube.com/playlist?list=PL123", None),
    ("https://example.com/watch?v=dQw4w9WgXcQ", None),
    ("https://www.youtube.com/watch?v=bad id", None),
    ("not a link", None),
])
def test_youtube_video_ids(url: str, video: str | None) -> None:
    assert youtube_id(url) == video


class Catalogue:
    """The engine's ``/playlist`` as a value (the seam ``YouTubeMix`` is given); the
    real engine answers it in tests/test_bot_features.py."""

    def __init__(self, entries: Collection[tuple[str, str]], fail: bool = False) -> None:
        self.entries = entries
        self.fail = fail
        self.asked: list[str] = []

    async def playlist(self, url: str) -> PlaylistResult:
        self.asked.append(url)
        if self.fail:
            raise EngineError("extraction failed: HTTP Error 429", 500)
        return PlaylistResult(url=url, count=len(self.entries), entries=[
            PlaylistEntry(url=u, title=t, duration=60.0, thumbnail="") for u, t in self.entries])


async def test_the_mix_without_the_seed_repeats_or_what_was_played() -> None:
    watch = "https://www.youtube.com/watch?v="
    catalogue = Catalogue([(f"{watch}seedVideo01", "seed"), (f"{watch}otherVideo1", "one"),
                           ("https://youtu.be/otherVideo1", "one again"),
                           (f"{watch}playedVideo", "played"), (f"{watch}otherVideo2", "two"),
                           (f"{watch}otherVideo3", "three")])
    mix = YouTubeMix(catalogue)
    seed = Track(f"{watch}seedVideo01", "seed")
    assert mix.handles(seed) and not mix.handles(Track("http://x/a.mp3"))
    found = await mix.related(seed, limit=2, exclude={"https://youtu.be/playedVideo"})
    assert catalogue.asked == [f"{watch}seedVideo01&list=RDseedVideo01"]
    assert [(t.url, t.title, t.requested_by) for t in found] == [
        (f"{watch}otherVideo1", "one", AUTOPLAY), (f"{watch}otherVideo2", "two", AUTOPLAY)]
    assert await mix.related(Track("http://x/a.mp3"), limit=5, exclude=()) == []
    with pytest.raises(RelatedUnavailable, match="429"):
        await YouTubeMix(Catalogue([], fail=True)).related(seed, limit=5, exclude=())
    providers = RelatedTracks([mix])
    assert providers.provider_for(seed) is mix
    assert providers.provider_for(Track("http://x/a.mp3")) is None
    assert providers.names == "YouTube"


# -- guild settings ----------------------------------------------------------------------


def test_guild_settings_read_their_new_fields_and_refuse_nonsense() -> None:
    settings = GuildSettings(dj_role_id=5, stay=True, volume=40, announce_channel_id=9,
                             autoplay=True)
    assert GuildSettings.from_dict(settings.as_dict()) == settings
    assert GuildSettings.from_dict({"volume": 900, "announce_channel_id": "9",
                                    "autoplay": "yes", "dj_role_id": True}) == GuildSettings()
    assert GuildSettings.from_dict({}) == GuildSettings()
