"""The filter chain on generated tones and noise, checked by spectrum and level:
each Lavalink filter does what Lavalink documents, timescale keeps track time, loudness
levels tracks, live changes land within 300 ms without a click, nothing is lost at the end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import pytest

from audio_engine.audio.filters import (
    BAND_FREQUENCIES,
    FilterChain,
    FilteredFrame,
    Filters,
    RewindError,
    parse_filters,
    preset,
)
from tests.support.media import dominant_frequency
from tests.support.signals import (
    RATE,
    Signal,
    band_level_db,
    from_pcm,
    integrated_lufs,
    noise,
    run_chain,
    scale_to_lufs,
    to_pcm,
    tone,
    tones,
)


def output(frames: list[FilteredFrame]) -> Signal:
    return from_pcm(b"".join(frame.pcm for frame in frames))


def render(filters: Mapping[str, object], signal: Signal) -> Signal:
    return output(run_chain(FilterChain(parse_filters(filters)), signal))


def max_step(signal: Signal) -> float:
    """Largest jump between consecutive samples, over both channels."""
    return float(np.abs(np.diff(signal, axis=0)).max())


# -- identity ----------------------------------------------------------------------------


def test_no_filters_is_an_exact_passthrough() -> None:
    signal = noise(1.0, 0.1)
    chain = FilterChain()
    assert chain.passthrough
    frames = run_chain(chain, signal)
    assert len(frames) == 50
    assert b"".join(f.pcm for f in frames) == to_pcm(signal)
    assert [f.index for f in frames] == list(range(50))
    assert [f.position for f in frames] == pytest.approx([n * 0.02 for n in range(50)])


def test_framing_is_sample_exact_whatever_the_block_sizes() -> None:
    signal = noise(0.5, 0.1)
    data = to_pcm(signal)
    chain = FilterChain(preset("bassboost"), position=3.0)
    frames: list[FilteredFrame] = []
    for samples in (1, 100, 959, 7, 5_000):  # odd sample counts on purpose
        frames += chain.push(data[: samples * 4])
        data = data[samples * 4 :]
    frames += chain.push(data) + chain.flush()
    assert all(len(f.pcm) == 3840 for f in frames)
    assert len(frames) == 25
    assert frames[0].position == 3.0 and frames[-1].position == pytest.approx(3.48)


def test_bad_pcm_is_refused() -> None:
    chain = FilterChain()
    with pytest.raises(ValueError, match="whole s16 stereo samples"):
        chain.push(b"\x00\x01\x02")


# -- equalizer ---------------------------------------------------------------------------


@pytest.mark.parametrize("band", [0, 7, 14])
def test_equalizer_band_changes_its_band_only(band: int) -> None:
    signal = tones(BAND_FREQUENCIES, 2.0, 0.03)
    before = [band_level_db(signal, f) for f in BAND_FREQUENCIES]
    after_signal = render({"equalizer": [{"band": band, "gain": 0.5}]}, signal)
    change = [
        band_level_db(after_signal, f) - b for f, b in zip(BAND_FREQUENCIES, before, strict=True)
    ]
    # Lavalink's gain g scales its band by 1 + 4g: 0.5 is x3, +9.5 dB.
    assert change[band] == pytest.approx(20 * np.log10(3), abs=0.5)
    for other, delta in enumerate(change):
        distance = abs(other - band)
        # Lavalink's band-passes overlap their neighbours (more at the top, where
        # 2/3 octave is a wide stretch of a 48 kHz spectrum); further away, nothing.
        if distance >= 5:
            assert abs(delta) < 0.2, (other, delta)
        elif distance >= 3:
            assert abs(delta) < 0.8, (other, delta)
        elif distance == 2:
            assert abs(delta) < 2.0, (other, delta)
        elif distance == 1:
            assert 2.0 < delta < 5.0, (other, delta)


def test_equalizer_minus_a_quarter_mutes_the_band() -> None:
    signal = tones([1000.0, 100.0, 10_000.0], 2.0, 0.1)
    out = render({"equalizer": [{"band": 8, "gain": -0.25}]}, signal)
    assert band_level_db(out, 1000) - band_level_db(signal, 1000) < -30
    assert abs(band_level_db(out, 100) - band_level_db(signal, 100)) < 0.3
    assert abs(band_level_db(out, 10_000) - band_level_db(signal, 10_000)) < 0.3


def test_bassboost_raises_the_bass_and_leaves_the_mids() -> None:
    frequencies = [40.0, 100.0, 1000.0, 4000.0]
    signal = tones(frequencies, 2.0, 0.05)
    out = output(run_chain(FilterChain(preset("bassboost")), signal))
    change = {f: band_level_db(out, f) - band_level_db(signal, f) for f in frequencies}
    assert change[40.0] > 5.0 and change[100.0] > 3.0
    assert abs(change[1000.0]) < 0.3 and abs(change[4000.0]) < 0.3


# -- low pass, karaoke, channel mix, rotation, tremolo, vibrato, distortion, volume -------


def test_low_pass_removes_10_khz_and_keeps_200_hz() -> None:
    signal = tones([200.0, 10_000.0], 2.0, 0.2)
    out = render({"lowPass": {"smoothing": 20.0}}, signal)
    assert band_level_db(out, 200) - band_level_db(signal, 200) > -1.5
    assert band_level_db(out, 10_000) - band_level_db(signal, 10_000) < -25


def test_karaoke_lowers_a_centred_tone_and_keeps_a_side_one() -> None:
    centre = tone(1000, 2.0, 0.3)
    side = tone(1000, 2.0, 0.3, right=False)
    settings = {"level": 1.0, "monoLevel": 1.0, "filterBand": 220.0, "filterWidth": 100.0}
    karaoke = {"karaoke": settings}
    out_centre = render(karaoke, centre)
    out_side = render(karaoke, side)
    assert band_level_db(out_centre, 1000) - band_level_db(centre, 1000) < -20
    assert abs(band_level_db(out_side, 1000) - band_level_db(side, 1000)) < 1.0


def test_karaoke_keeps_the_bass_of_the_centre() -> None:
    centre = tone(220, 2.0, 0.3)
    out = render({"karaoke": {}}, centre)
    # L - R cancels it, the resonator at 220 Hz adds it back.
    assert band_level_db(out, 220) - band_level_db(centre, 220) > -1.0


def test_channel_mix_half_makes_mono() -> None:
    signal = tone(300, 1.0, 0.3, right=False) + tone(700, 1.0, 0.3, left=False)
    half = {"leftToLeft": 0.5, "leftToRight": 0.5, "rightToLeft": 0.5, "rightToRight": 0.5}
    out = render({"channelMix": half}, signal)
    assert np.abs(out[:, 0] - out[:, 1]).max() < 2 / 32768
    assert band_level_db(out, 300, 1) == pytest.approx(band_level_db(signal, 300) - 6.02, abs=0.2)


def test_rotation_moves_energy_between_channels_at_its_rate() -> None:
    signal = tone(1000, 8.0, 0.3)
    out = render({"rotation": {"rotationHz": 0.5}}, signal)
    window = RATE // 20  # 50 ms
    count = len(out) // window
    rms = np.sqrt((out[: count * window] ** 2).reshape(count, window, 2).mean(axis=1))
    left, right = rms[:, 0], rms[:, 1]
    assert np.corrcoef(left, right)[0, 1] < -0.95
    # The left envelope rises and falls at 0.5 Hz: 4 cycles in 8 s.
    spectrum = np.abs(np.fft.rfft(left - left.mean()))
    assert np.argmax(spectrum) * 20 / count == pytest.approx(0.5, abs=0.05)
    # Lavalink's gains: (1 ± sin)/2, so each side swings from silence to full level.
    assert left.max() > 0.9 * 0.3 / np.sqrt(2) and left.min() < 0.05 * 0.3


def test_tremolo_modulates_the_level_at_its_frequency() -> None:
    out = render({"tremolo": {"frequency": 4.0, "depth": 1.0}}, tone(1000, 4.0, 0.3))
    window = RATE // 100
    count = len(out) // window
    rms = np.sqrt((out[: count * window, 0] ** 2).reshape(count, window).mean(axis=1))
    spectrum = np.abs(np.fft.rfft(rms - rms.mean()))
    assert np.argmax(spectrum) * 100 / count == pytest.approx(4.0, abs=0.3)
    assert rms.min() < 0.1 * rms.max()


def test_vibrato_wobbles_the_pitch_and_keeps_the_level() -> None:
    signal = tone(1000, 4.0, 0.3)
    out = render({"vibrato": {"frequency": 5.0, "depth": 1.0}}, signal)
    assert np.isfinite(out).all()
    assert np.sqrt((out**2).mean()) == pytest.approx(np.sqrt((signal**2).mean()), rel=0.05)
    # Frequency modulation spreads the tone into sidebands 5 Hz apart.
    assert band_level_db(out, 1005) - band_level_db(signal, 1005) > 10


def test_distortion_follows_lavalinks_formula() -> None:
    settings = {"sinOffset": 0.1, "sinScale": 2.0, "cosOffset": 0.0, "cosScale": 1.0,
                "tanOffset": 0.0, "tanScale": 1.0, "offset": 0.0, "scale": 1.5}  # fmt: skip
    signal = tone(440, 0.5, 0.5)
    out = render({"distortion": settings}, signal)
    x = from_pcm(to_pcm(signal))
    expected = np.clip(1.5 * (0.1 + np.sin(2 * x)) * np.cos(x) * np.tan(x), -1, 1)
    assert np.abs(out - expected).max() < 2 / 32768


def test_volume_scales_and_clips_like_lavalink() -> None:
    signal = tone(440, 0.5, 0.3)
    out = render({"volume": 2.0}, signal)
    assert band_level_db(out, 440) - band_level_db(signal, 440) == pytest.approx(6.02, abs=0.1)
    loud = render({"volume": 5.0}, signal)
    assert np.abs(loud).max() <= 1.0


# -- timescale ---------------------------------------------------------------------------


def test_speed_plays_20_seconds_in_16_and_reports_track_time() -> None:
    chain = FilterChain(parse_filters({"timescale": {"speed": 1.25}}))
    frames = run_chain(chain, tone(440, 20.0, 0.3), block=0.5)
    assert len(frames) * 0.02 == pytest.approx(16.0)
    positions = [frame.position for frame in frames]
    assert positions == pytest.approx([n * 0.025 for n in range(len(frames))])
    assert chain.positions.track_time(16 * RATE) == pytest.approx(20.0)
    assert chain.positions.output_index(10.0) == 8 * RATE
    out = output(frames)
    assert dominant_frequency(out[RATE:-RATE]) == pytest.approx(440, abs=2)  # pitch kept


def test_pitch_moves_440_to_660_and_keeps_the_duration() -> None:
    frames = run_chain(FilterChain(parse_filters({"timescale": {"pitch": 1.5}})), tone(440, 4.0))
    assert len(frames) == 200
    assert dominant_frequency(output(frames)[RATE:-RATE]) == pytest.approx(660, abs=2)
    assert frames[-1].position == pytest.approx(3.98)


def test_rate_changes_speed_and_pitch_together() -> None:
    frames = run_chain(FilterChain(parse_filters({"timescale": {"rate": 1.25}})), tone(440, 4.0))
    assert len(frames) == 160
    assert dominant_frequency(output(frames)[RATE:-RATE]) == pytest.approx(550, abs=2)


def test_slow_timescale_loses_no_tail() -> None:
    # The track ends with a 2 kHz burst: it must all be in the output, stretched.
    signal = np.concatenate([tone(440, 2.0, 0.3), tone(2000, 0.05, 0.3)])
    filters = {"timescale": {"speed": 0.8}, "loudness": {}, "equalizer": [{"band": 3, "gain": 0.2}]}
    out = render(filters, signal)
    assert len(out) == math.ceil(len(signal) / 0.8 / 960) * 960
    tail = out[-round(0.05 / 0.8 * RATE) :]
    assert band_level_db(tail, 2000) > band_level_db(tail, 440)


# -- loudness ----------------------------------------------------------------------------


def test_loudness_brings_quiet_and_loud_tracks_within_1_lu() -> None:
    quiet = scale_to_lufs(noise(12.0, 0.1, seed=1), -30.0)
    loud = scale_to_lufs(noise(12.0, 0.1, seed=2), -10.0)
    assert integrated_lufs(quiet) == pytest.approx(-30.0, abs=0.2)
    assert integrated_lufs(loud) == pytest.approx(-10.0, abs=0.2)
    settings = {"loudness": {"target": -14.0}}
    quiet_out = render(settings, quiet)
    loud_out = render(settings, loud)
    measured_quiet, measured_loud = integrated_lufs(quiet_out), integrated_lufs(loud_out)
    assert abs(measured_quiet - measured_loud) < 1.0
    assert measured_quiet == pytest.approx(-14.0, abs=1.0)
    assert measured_loud == pytest.approx(-14.0, abs=1.0)
    assert np.abs(loud_out).max() <= 10 ** (-1 / 20) + 1e-3  # the limiter's ceiling


def test_loudness_is_right_from_the_first_frame() -> None:
    loud = scale_to_lufs(noise(3.0, 0.1, seed=3), -8.0)
    out = render({"loudness": {"target": -14.0}}, loud)
    first = out[: RATE // 2]
    assert integrated_lufs(first) == pytest.approx(-14.0, abs=1.5)


# -- live changes ------------------------------------------------------------------------


def feed(
    chain: FilterChain, signal: Signal, seconds: float, block: float = 0.1
) -> list[FilteredFrame]:
    data = to_pcm(signal)
    step = round(block * RATE) * 4
    frames: list[FilteredFrame] = []
    for start in range(0, min(len(data), round(seconds * RATE) * 4), step):
        frames += chain.push(data[start : start + step])
    return frames


def frame_levels(frames: list[FilteredFrame], frequency: float) -> list[float]:
    return [band_level_db(from_pcm(f.pcm), frequency) for f in frames]


def test_live_change_takes_effect_at_once_without_a_click() -> None:
    signal = tone(440, 6.0, 0.2)
    chain = FilterChain()
    frames = feed(chain, signal, 2.0)
    chain.configure(parse_filters({"volume": 3.0}))
    rest = run_chain(chain, signal[2 * RATE :])
    changed_at = len(frames)
    assert rest[0].index == changed_at
    levels = frame_levels(rest, 440)
    # The first frame is the crossfade, everything after is 3x (+9.5 dB).
    assert all(abs(level - levels[-1]) < 0.1 for level in levels[1:-1])
    assert levels[-1] - frame_levels(frames, 440)[-1] == pytest.approx(9.54, abs=0.1)
    whole = output(frames + rest)
    natural = 0.6 * 2 * np.pi * 440 / RATE  # the steepest slope of the louder tone
    assert max_step(whole) <= natural * 1.05


def test_rewind_and_change_is_heard_within_300_ms_and_stays_continuous() -> None:
    # The engine's ring holds 0.5 s of frames ahead of the listener: it drops them,
    # rewinds the chain to the first dropped frame and sets the new filters.
    signal = tone(440, 6.0, 0.2)
    chain = FilterChain()
    frames = feed(chain, signal, 3.0)
    heard = frames[:-25]
    first_dropped = frames[-25].index
    chain.rewind(first_dropped)
    chain.configure(parse_filters({"equalizer": [{"band": 6, "gain": 0.5}]}))
    redone = run_chain(chain, signal[3 * RATE :])
    assert [f.index for f in redone[:3]] == [first_dropped, first_dropped + 1, first_dropped + 2]
    assert redone[0].position == pytest.approx(frames[-25].position)
    base = frame_levels(heard[-5:], 440)[-1]
    levels = frame_levels(redone[:30], 440)
    boosted = next(n for n, level in enumerate(levels) if level - base > 6.0)
    assert boosted * 0.02 <= 0.3  # within 300 ms of output
    gain = 10 ** ((max(levels) - base) / 20)
    steps = np.abs(np.diff(output(heard + redone)[:, 0]))
    # No sample jumps further than the boosted tone itself moves from one sample to the next.
    assert steps.max() <= 0.2 * gain * 2 * np.pi * 440 / RATE * 1.05


def test_switching_loudness_on_is_heard_within_300_ms() -> None:
    signal = scale_to_lufs(noise(6.0, 0.1, seed=4), -8.0)
    chain = FilterChain()
    frames = feed(chain, signal, 3.0)
    heard, first_dropped = frames[:-25], frames[-25].index
    chain.rewind(first_dropped)
    chain.configure(parse_filters({"loudness": {"target": -14.0}}))
    redone = run_chain(chain, signal[3 * RATE :])
    assert redone[0].index == first_dropped
    # The kept second of input primed the meter: the gain is right at once.
    assert integrated_lufs(output(redone[1:21])) == pytest.approx(-14.0, abs=1.0)
    assert integrated_lufs(output(heard[-20:])) == pytest.approx(-8.0, abs=1.0)


def test_live_timescale_change_keeps_positions_in_track_time() -> None:
    signal = tone(440, 8.0, 0.2)
    chain = FilterChain()
    frames = feed(chain, signal, 2.0)
    chain.configure(preset("nightcore"))
    rest = run_chain(chain, signal[2 * RATE :])
    positions = [f.position for f in frames + rest]
    steps = np.diff(positions)
    assert steps[: len(frames) - 1] == pytest.approx(0.02)
    assert steps[len(frames) + 1 :] == pytest.approx(0.025, abs=1e-6)
    assert positions[-1] == pytest.approx(8.0 - 0.025, abs=0.03)
    assert dominant_frequency(output(rest[5:-5])) == pytest.approx(550, abs=3)
    assert max_step(output(frames + rest)) <= 0.2 * 2 * np.pi * 550 / RATE * 1.1


def test_clearing_filters_returns_to_passthrough() -> None:
    signal = noise(3.0, 0.1)
    chain = FilterChain(preset("bassboost"))
    assert not chain.passthrough
    frames = feed(chain, signal, 1.0)
    chain.configure(Filters())
    assert not chain.passthrough  # until the crossfade has played
    frames += run_chain(chain, signal[RATE:], flush=False)
    assert chain.passthrough
    assert len(frames) == 150  # nothing lost or repeated
    tail = b"".join(f.pcm for f in frames[-50:])
    assert tail == to_pcm(signal)[-50 * 3840 :]


def test_same_filters_again_is_a_no_op() -> None:
    signal = noise(2.0, 0.1)
    untouched = run_chain(FilterChain(preset("bassboost")), signal)
    chain = FilterChain(preset("bassboost"))
    frames = feed(chain, signal, 1.0)
    chain.configure(parse_filters(preset("bassboost").to_lavalink()))
    frames += run_chain(chain, signal[RATE:])
    assert [f.pcm for f in frames] == [f.pcm for f in untouched]


def test_filters_set_before_any_audio_apply_from_the_first_sample() -> None:
    chain = FilterChain(position=5.0)
    chain.configure(parse_filters({"volume": 2.0}))
    frames = run_chain(chain, tone(440, 0.5, 0.2))
    assert frames[0].position == 5.0
    assert np.abs(output(frames)[:960]).max() == pytest.approx(0.4, abs=0.01)


def test_changes_in_quick_succession_keep_the_stream_whole() -> None:
    signal = tone(330, 6.0, 0.2)
    signal[-480:] *= np.linspace(1, 0, 480)[:, None]  # the track itself ends without a click
    chain = FilterChain()
    frames: list[FilteredFrame] = []
    data = to_pcm(signal)
    step = 960 * 4 * 2
    choices = [preset("nightcore"), preset("bassboost"), Filters(), preset("8d"),
               parse_filters({"loudness": {}}), preset("vaporwave"), preset("karaoke")]  # fmt: skip
    for n, start in enumerate(range(0, len(data), step)):
        if n % 7 == 3:
            chain.configure(choices[(n // 7) % len(choices)])
        if n % 11 == 5 and frames:
            chain.rewind(frames[-1].index)
            frames.pop()
        frames += chain.push(data[start : start + step])
    frames += chain.flush()
    assert [f.index for f in frames] == list(range(len(frames)))
    positions = [f.position for f in frames]
    assert all(b > a for a, b in itertools.pairwise(positions))
    # No click at any of the splices: a jump would be of the order of the amplitude
    # (0.2); the steepest filter here (x1.25 pitch, a few dB of gain) stays far below.
    assert max_step(output(frames)) < 3 * 1.25 * 0.2 * 2 * np.pi * 330 / RATE


def test_rewind_past_the_history_is_refused() -> None:
    chain = FilterChain(history=0.2)
    frames = feed(chain, noise(1.0, 0.1), 1.0)
    with pytest.raises(RewindError, match="older than the kept history"):
        chain.rewind(frames[0].index)
    with pytest.raises(RewindError, match="not been returned"):
        chain.rewind(frames[-1].index + 2)
    chain.rewind(frames[-3].index)
    again = chain.push()
    assert [f.index for f in again] == [f.index for f in frames[-3:]]
    assert [f.pcm for f in again] == [f.pcm for f in frames[-3:]]


def test_seek_restarts_in_track_time_and_numbering_goes_on() -> None:
    chain = FilterChain(preset("nightcore"))
    frames = feed(chain, tone(440, 2.0), 1.0)
    chain.seek(60.0)
    after = run_chain(chain, tone(440, 1.0))
    assert after[0].index == frames[-1].index + 1
    assert after[0].position == 60.0
    assert after[-1].position == pytest.approx(60.0 + (len(after) - 1) * 0.025)
    with pytest.raises(RuntimeError, match="flushed"):
        chain.push(b"\x00" * 4)


def test_a_change_after_the_end_redoes_the_last_frames() -> None:
    signal = tone(440, 1.0, 0.2)
    chain = FilterChain()
    frames = run_chain(chain, signal)
    assert chain.flush() == []
    chain.rewind(frames[-10].index)
    chain.configure(parse_filters({"volume": 2.0}))
    redone = chain.flush()
    assert [f.index for f in redone] == [f.index for f in frames[-10:]]
    levels = frame_levels(redone[1:], 440)
    assert levels[0] - frame_levels(frames[-9:], 440)[0] == pytest.approx(6.02, abs=0.1)
