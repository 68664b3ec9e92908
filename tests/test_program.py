"""A session's ``Program`` on real sources (PyAV, libopus), without the engine process:
splices measured against the uninterrupted stream, redoing frames across a join, seeks
with a next track pending, PCM output; and the splice helpers on their own.

A small driver plays the producer's part: it reads what the program wants, hands it
over, and says which frames the listener has been sent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio_engine.audio.codec import OpuslibEncoder, create_encoder
from audio_engine.audio.filters import Filters, parse_filters
from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.program import Program
from audio_engine.audio.splice import PacketLog, postfilter_on
from audio_engine.audio.track import Mode, Track
from audio_engine.sources.media import MediaSource, SourceOptions
from audio_engine.sources.resolver import MediaTarget
from audio_engine.wire.ring import Frame
from protocol import NEED_DATA, OggPage, OggPageReader

from .support.media import decode_opus_packets, dominant_frequency, write_opus_tone, write_tone
from .support.signals import noise, to_pcm, tone

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("program")
    write_opus_tone(root / "a440.ogg", 440.0, 4.0, serial=5, flush=True)  # post-filter off
    write_opus_tone(root / "a440_cx10.ogg", 440.0, 4.0, serial=6, complexity=10, flush=True)
    write_opus_tone(root / "b660.ogg", 660.0, 4.0, serial=7, complexity=10, flush=True)
    write_tone(root / "c550.mp3", 550.0, 4.0)
    return root


def _source(media: Path, name: str, output: OutputFormat) -> MediaSource:
    source = MediaSource(MediaTarget(str(media / name), title=name, is_local=True),
                         SourceOptions(output))
    source.open()
    return source


class Driver:
    """The producer's part, synchronously."""

    def __init__(self, media: Path, output: OutputFormat = OutputFormat.OPUS) -> None:
        self.media = media
        self.output = output
        factory = (lambda: create_encoder("opuslib", output.bitrate, 10)) if output.is_opus \
            else None
        self.program = Program("test", output, 4321, factory)
        #: The next track handed to the program, until it has joined.
        self.next: Track | None = None

    def track(self, name: str, filters: Filters | None = None, play: object = None) -> Track:
        return Track(play, _source(self.media, name, self.output), filters or Filters(),
                     lookahead=self.program.lookahead, passthrough_ok=self.output.is_opus)

    def run(self, limit: int = 10**6, *, sent: bool = True) -> list[Frame]:
        """Produce until the stream ends (or *limit* frames); with *sent*, every frame
        counts as sent at once."""
        program = self.program
        frames: list[Frame] = []
        while not program.finished and len(frames) < limit:
            # As the producer: a next track is expected until it has joined.
            program.expect_next = self.next is not None and not self.next.placed
            reads = []
            for track in program.wants():
                packets, at_end = track.source.read(0.5)
                reads.append((track, packets, at_end))
            made = program.produce(reads)
            if not made and not reads:
                break
            frames += made
            if sent and frames:
                program.emitted = frames[-1].number
        return frames


def pages(frames: list[Frame]) -> list[OggPage]:
    reader = OggPageReader()
    for frame in frames:
        reader.receive_data(frame.packet[28:])
    out = []
    while (page := reader.next_page()) is not NEED_DATA:
        assert isinstance(page, OggPage)
        out.append(page)
    return out


def decoded(frames: list[Frame]) -> np.ndarray:
    packets = [p for page in pages(frames) for p in page.packets()]
    return decode_opus_packets(packets)


def continuous(frames: list[Frame]) -> None:
    assert [f.number for f in frames] == list(range(len(frames)))
    audio = [p for p in pages(frames) if p.packets()]
    assert len({p.serial for p in audio}) == 1
    granules = [p.granule_position for p in audio]
    assert granules[:-1] == [960 * (i + 1) for i in range(len(granules) - 1)]


def redo_at(driver: Driver, frames: list[Frame], cut: int, filters: Filters,
            limit: int = 10**6) -> list[Frame]:
    """What the manager and the producer do for a live change: drop the frames from
    *cut* on (the listener has frames up to ``cut - 8``), redo them (*limit* frames)."""
    driver.program.emitted = cut - 8
    driver.program.set_filters(filters)
    driver.program.restart(cut)
    return [f for f in frames if f.number < cut] + driver.run(limit, sent=False)


# -- splices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a440.ogg", "a440_cx10.ogg", "c550.mp3"])
def test_a_redo_with_the_same_sound_is_the_uninterrupted_stream(media: Path, name: str) -> None:
    # A change that changes (almost) nothing: the audio after the splice must be the
    # uninterrupted stream's, within the codec's own noise, whatever encoder made the
    # frames before it (the source's, with or without its post-filter, or ours).
    reference = Driver(media)
    reference.program.start(reference.track(name))
    expected = decoded(reference.run())
    driver = Driver(media)
    driver.program.start(driver.track(name))
    frames = redo_at(driver, driver.run(100, sent=False), 68, parse_filters({"volume": 0.999}))
    continuous(frames)
    got = decoded(frames)
    length = min(got.shape[1], expected.shape[1])
    difference = np.abs(got[:, :length] - expected[:, :length])
    error = difference[:, 68 * 960 : 72 * 960].max()
    steady = difference[:, 120 * 960 : 150 * 960].max()
    assert error < max(2 * steady, 700), (error, steady)


def test_a_live_change_in_passthrough_then_back_is_one_clean_stream(media: Path) -> None:
    driver = Driver(media)
    driver.program.start(driver.track("a440.ogg"))
    assert driver.program.passthrough
    frames = redo_at(driver, driver.run(100, sent=False), 68, parse_filters({"volume": 0.5}),
                     limit=80)
    assert not driver.program.passthrough
    frames = redo_at(driver, frames, 130, Filters())
    assert driver.program.passthrough  # back, at a frame of the source's grid
    continuous(frames)
    signal = decoded(frames)
    levels = np.sqrt((signal[0, : 190 * 960].reshape(190, 960) ** 2).mean(axis=1))
    assert levels[40:66].min() > 0.9 * levels[150:190].min()  # full level before
    assert levels[75:125].max() < 0.55 * levels[150:190].min()  # half while changed
    steps = np.abs(np.diff(signal[0]))
    natural = 0.5 * 32768 * 2 * np.pi * 440 / 48_000
    assert steps[60 * 960 : 190 * 960].max() < 1.1 * natural  # no click at either splice


def test_a_pitch_change_keeps_the_rest_transcoded_and_positions_in_track_time(
        media: Path) -> None:
    driver = Driver(media)
    driver.program.start(driver.track("a440.ogg"))
    frames = redo_at(driver, driver.run(60, sent=False), 50,
                     parse_filters({"timescale": {"speed": 2.0}}))
    frames = redo_at(driver, frames[:100], 90, Filters())
    # After a tempo change the frames no longer line up with the source's packets:
    # the track stays transcoded (with no filter) to its end.
    assert not driver.program.passthrough
    continuous(frames)
    positions = [f.position for f in frames if not f.last]
    assert positions[49] == pytest.approx(0.98, abs=0.001)
    assert positions[60] - positions[59] == pytest.approx(0.04, abs=0.002)
    assert positions[-1] == pytest.approx(3.98, abs=0.03)


# -- joining tracks --------------------------------------------------------------------------


def _join(driver: Driver, first: str, second: str, crossfade: float = 0.0
          ) -> tuple[list[Frame], Track]:
    program = driver.program
    program.start(driver.track(first))
    nxt = driver.track(second, play="next")
    driver.next = program.pending = nxt
    program.crossfade = round(crossfade * 48_000)
    return driver.run(), nxt


@pytest.mark.parametrize(("first", "second"), [
    ("a440.ogg", "b660.ogg"), ("c550.mp3", "b660.ogg"), ("b660.ogg", "c550.mp3"),
])
def test_joined_tracks_are_one_stream_with_nothing_between(media: Path, first: str,
                                                           second: str) -> None:
    driver = Driver(media)
    frames, _ = _join(driver, first, second)
    continuous(frames)
    starts = [f.number for f in frames if f.start is not None]
    assert starts == [200] and frames[200].start == "next"
    signal = decoded(frames)
    levels = np.sqrt((signal[0, : 398 * 960].reshape(398, 960) ** 2).mean(axis=1))
    assert levels[2:].min() > 0.3 * 0.5 * 32768 / np.sqrt(2)
    # The next track starts at position 0 of its own time.
    assert frames[201].position == pytest.approx(0.02, abs=0.03)
    assert driver.program.passthrough is (second.endswith(".ogg"))


def test_a_crossfade_mixes_the_end_of_one_and_the_start_of_the_next(media: Path) -> None:
    driver = Driver(media)
    frames, _ = _join(driver, "a440.ogg", "b660.ogg", crossfade=1.0)
    continuous(frames)
    assert [f.number for f in frames if f.start is not None] == [150]
    signal = decoded(frames).T / 32768
    middle = signal[int(3.4 * 48_000) : int(3.6 * 48_000)]
    assert {round(dominant_frequency(middle[:4800].T))} <= {440, 660}
    spectrum = np.abs(np.fft.rfft(middle[:, 0] * np.hanning(len(middle))))
    freqs = np.fft.rfftfreq(len(middle), 1 / 48_000)
    peak = {f: spectrum[np.abs(freqs - f) < 10].max() for f in (440, 660)}
    assert 0.5 < peak[440] / peak[660] < 2.0
    assert len(signal) == pytest.approx(7 * 48_000, abs=2 * 960)


def test_a_redo_before_the_join_takes_the_next_track_back_and_joins_it_again(
        media: Path) -> None:
    driver = Driver(media)
    program = driver.program
    program.start(driver.track("c550.mp3"))
    driver.next = program.pending = driver.track("b660.ogg", play="next")
    made = driver.run(215, sent=False)
    assert [f.number for f in made if f.start is not None] == [200]
    # A change at frame 195: the join (at 200) is undone, then made again after the
    # first track's new frames.
    frames = redo_at(driver, made, 195, parse_filters({"volume": 0.5}))
    continuous(frames)
    assert [f.number for f in frames if f.start is not None] == [200]
    assert dominant_frequency(decoded(frames)[0, 205 * 960 : 260 * 960]) == pytest.approx(
        660, abs=3)


def test_a_seek_with_a_next_track_pending_keeps_it(media: Path) -> None:
    driver = Driver(media)
    program = driver.program
    first = driver.track("c550.mp3")
    program.start(first)
    driver.next = program.pending = driver.track("b660.ogg", play="next")
    frames = driver.run(60, sent=False)
    program.emitted = 40
    first.source.seek(3.0)
    program.seek(41, first)
    frames = [f for f in frames if f.number < 41] + driver.run()
    continuous(frames)
    # 0.82 s, then the last second of the first track, then the next one.
    starts = [f.number for f in frames if f.start is not None]
    assert len(starts) == 1 and 90 <= starts[0] <= 94, starts
    assert frames[42].position == pytest.approx(3.0, abs=0.05)


def test_pcm_output_joins_tracks_sample_exactly(media: Path) -> None:
    driver = Driver(media, OutputFormat.PCM)
    frames, _ = _join(driver, "c550.mp3", "c550.mp3")
    pcm = np.frombuffer(b"".join(f.packet[28:] for f in frames), dtype="<i2").reshape(-1, 2)
    assert len(pcm) == pytest.approx(8 * 48_000, abs=960)
    steps = np.abs(np.diff(pcm[:, 0].astype(float)))
    assert steps.max() < 1.1 * 0.5 * 32768 * 2 * np.pi * 550 / 48_000 + 400


# -- voice output: Opus packets without Ogg pages -----------------------------------------------


@pytest.mark.parametrize("name", ["a440.ogg", "c550.mp3"])
def test_voice_output_is_the_opus_stream_without_its_pages(media: Path, name: str) -> None:
    # The same encoder on the same audio: a voice session's frames are exactly the
    # packets an Ogg session carries in its pages (an Opus source's own packets when
    # it passes through), bare, and nothing else (no header pages, no socket framing).
    ogg = Driver(media)
    ogg.program.start(ogg.track(name))
    expected = [p for page in pages(ogg.run()) for p in page.packets()]
    voice = Driver(media, OutputFormat.VOICE)
    voice.program.start(voice.track(name))
    assert voice.program.passthrough is name.endswith(".ogg")
    assert voice.program.stream.header_pages == b""
    frames = voice.run()
    assert [f.number for f in frames] == list(range(len(frames)))
    assert [f.packet for f in frames] == expected
    assert all(f.payload_size == len(f.packet) and f.granule == 0 for f in frames)
    assert frames[-1].last


def test_a_live_change_on_a_voice_stream_splices_like_an_ogg_one(media: Path) -> None:
    # Passthrough, a volume change (primed encoder), and back: the packets decode as
    # one clean stream, at half the level while the change holds.
    driver = Driver(media, OutputFormat.VOICE)
    driver.program.start(driver.track("a440.ogg"))
    frames = redo_at(driver, driver.run(100, sent=False), 68, parse_filters({"volume": 0.5}),
                     limit=80)
    frames = redo_at(driver, frames, 130, Filters())
    assert driver.program.passthrough
    assert [f.number for f in frames] == list(range(len(frames)))
    signal = decode_opus_packets([f.packet for f in frames])
    levels = np.sqrt((signal[0, : 190 * 960].reshape(190, 960) ** 2).mean(axis=1))
    assert levels[75:125].max() < 0.55 * levels[150:190].min()
    steps = np.abs(np.diff(signal[0]))
    assert steps[60 * 960 : 190 * 960].max() < 1.1 * 0.5 * 32768 * 2 * np.pi * 440 / 48_000


# -- the helpers -----------------------------------------------------------------------------


def test_the_post_filter_flag_is_read_from_celt_packets() -> None:
    for complexity, signal, expected in ((0, tone(440, 0.4, 0.5), False),
                                         (10, tone(440, 0.4, 0.5), True),
                                         (10, noise(0.4, 0.1), False)):
        encoder = OpuslibEncoder(128_000, complexity)
        pcm = to_pcm(signal)
        flags = {postfilter_on(encoder.encode(pcm[i : i + 3840]))
                 for i in range(3840 * 5, len(pcm) - 3839, 3840)}
        assert flags == {expected}
    assert postfilter_on(b"") is None
    assert postfilter_on(bytes([0x08, 1, 2, 3])) is None  # SILK


def test_the_packet_log_is_bounded_and_indexed_by_frame() -> None:
    log = PacketLog(capacity=4)
    for n in range(6):
        log.add(n, bytes([n]), n * 0.02)
    assert len(log) == 4 and log.get(1) is None and log.get(5) == (b"\x05", 0.1)
    assert [f.data for f in log.span(0, 10)] == [b"\x02", b"\x03", b"\x04", b"\x05"]
    log.drop_from(4)
    assert log.end == 4
    log.trim_before(3)
    assert [f.data for f in log.span(0, 10)] == [b"\x03"]
    log.add(9, b"\x09", 0.18)  # not the next frame: the log starts over
    assert log.span(0, 10) == [(b"\x09", 0.18)]


def test_tracks_report_their_mode(media: Path) -> None:
    driver = Driver(media)
    track = driver.track("a440.ogg")
    driver.program.start(track)
    assert track.mode is Mode.PASSTHROUGH
    driver = Driver(media)
    track = driver.track("c550.mp3")
    driver.program.start(track)
    assert track.mode is Mode.TRANSCODING


def test_a_redo_before_a_track_left_passthrough_takes_its_packets_back(media: Path) -> None:
    # The first track left passthrough for its last two frames (to join the next one);
    # a change at frame 190 redoes frames it had passed through and the ones after.
    driver = Driver(media)
    program = driver.program
    first = driver.track("a440.ogg")
    program.start(first)
    driver.next = driver.track("b660.ogg", play="next")
    made = driver.run(199, sent=False)
    assert first.mode is Mode.TRANSCODING and first.codec_frame > 190
    frames = redo_at(driver, made, 190, parse_filters({"volume": 0.5}), limit=30)
    program.pending = driver.next
    frames += driver.run(sent=False)
    continuous(frames)
    assert [f.number for f in frames if f.start is not None] == [200]
    signal = decoded(frames)
    levels = np.sqrt((signal[0, : 240 * 960].reshape(240, 960) ** 2).mean(axis=1))
    assert levels[150:188].min() > 1.8 * levels[192:198].max()  # halved from frame 190 on
    steps = np.abs(np.diff(signal[0]))
    assert steps[185 * 960 : 205 * 960].max() < 1.1 * 0.5 * 32768 * 2 * np.pi * 660 / 48_000
