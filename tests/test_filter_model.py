"""The filters object: Lavalink v4's JSON accepted as it is, bad values refused in
words, the graph plans it turns into, the presets, and output ↔ track time."""

from __future__ import annotations

import math

import pytest

from audio_engine.audio.filters import (
    BAND_FREQUENCIES,
    FilterError,
    Filters,
    PositionMap,
    Preset,
    missing_filters,
    parse_filters,
    preset,
)
from audio_engine.audio.filters.graph import GraphPlan, band_coefficients, plan
from audio_engine.audio.filters.presets import PRESETS

#: A filters object as a Lavalink v4 client sends it, every filter on.
LAVALINK_EXAMPLE = {
    "volume": 1.0,
    "equalizer": [{"band": 0, "gain": 0.2}, {"band": 14, "gain": -0.25}],
    "karaoke": {"level": 1.0, "monoLevel": 1.0, "filterBand": 220.0, "filterWidth": 100.0},
    "timescale": {"speed": 1.0, "pitch": 1.2, "rate": 1.0},
    "tremolo": {"frequency": 2.0, "depth": 0.5},
    "vibrato": {"frequency": 2.0, "depth": 0.5},
    "rotation": {"rotationHz": 0.2},
    "distortion": {
        "sinOffset": 0.0, "sinScale": 1.0, "cosOffset": 0.0, "cosScale": 1.0,
        "tanOffset": 0.0, "tanScale": 1.0, "offset": 0.0, "scale": 1.0,
    },
    "channelMix": {"leftToLeft": 0.5, "leftToRight": 0.5, "rightToLeft": 0.5, "rightToRight": 0.5},
    "lowPass": {"smoothing": 20.0},
}  # fmt: skip


def test_lavalink_object_round_trips() -> None:
    filters = parse_filters(LAVALINK_EXAMPLE)
    assert filters.to_lavalink() == LAVALINK_EXAMPLE
    assert parse_filters(filters.to_lavalink()) == filters


def test_lavalink_order_and_what_counts_as_on() -> None:
    filters = parse_filters(LAVALINK_EXAMPLE)
    # volume 1.0 and the default distortion change nothing (Lavalink's own rule).
    assert filters.active() == (
        "lowPass", "channelMix", "rotation", "vibrato", "tremolo", "timescale", "karaoke",
        "equalizer",
    )  # fmt: skip
    assert parse_filters({"loudness": {}}).active() == ("loudness",)


def test_defaults_inside_a_filter_are_lavalinks() -> None:
    filters = parse_filters({"karaoke": {}, "timescale": {"speed": 1.5}, "lowPass": {}})
    assert filters.karaoke is not None and filters.karaoke.filter_band == 220.0
    assert filters.timescale is not None and filters.timescale.pitch == 1.0
    assert filters.low_pass is not None and filters.low_pass.smoothing == 20.0
    assert filters.tempo == 1.5
    assert filters.output_seconds(20.0) == pytest.approx(20.0 / 1.5)


KNOWN_KARAOKE = "(known: level, monoLevel, filterBand, filterWidth)"

REFUSED: list[tuple[object, str]] = [
    ({"equalizer": [{"band": 15, "gain": 0.1}]}, "equalizer[0].band must be at most 14 (got 15)"),
    ({"equalizer": [{"band": 2, "gain": -0.5}]}, "equalizer[0].gain must be at least -0.25"),
    ({"equalizer": [{"band": 2}]}, "equalizer[0].gain is required"),
    ({"volume": 6}, "volume must be at most 5.0 (got 6)"),
    ({"volume": "2"}, 'volume must be a number (got "2")'),
    ({"volume": True}, "volume must be a number (got true)"),
    ({"timescale": {"speed": 0}}, "timescale.speed must be at least 0.25 (got 0)"),
    (
        {"timescale": {"speed": 4, "rate": 2}},
        "timescale: speed times rate must be between 0.25 and 4 (got 8)",
    ),
    ({"vibrato": {"frequency": 20}}, "vibrato.frequency must be at most 14.0 (got 20)"),
    ({"tremolo": {"frequency": 0}}, "tremolo.frequency must be more than 0.0 (got 0)"),
    ({"channelMix": {"leftToLeft": 1.5}}, "channelMix.leftToLeft must be at most 1.0"),
    ({"karaoke": {"filterBand": 30000}}, "karaoke.filterBand must be less than 24000.0"),
    ({"karaoke": {"lvl": 1}}, f"karaoke.lvl is not a setting this engine knows {KNOWN_KARAOKE}"),
    ({"lowpass": {}}, "lowpass is not a setting this engine knows (known: volume, equalizer"),
    ({"low_pass": {}}, "low_pass is not a setting this engine knows"),
    ({"rotation": []}, "rotation must be an object"),
    ({"equalizer": {"band": 1}}, "equalizer must be a list"),
    (
        {"equalizer": [{"band": i % 15, "gain": 0} for i in range(16)]},
        "equalizer can list at most 15 bands",
    ),
    ({"pluginFilters": {"echo": {}}}, "plugin filters are not supported by this engine (echo)"),
    ({"loudness": {"target": 0}}, "loudness.target must be at most -5.0 (got 0)"),
    ({"distortion": {"scale": 1e308}}, "distortion.scale must be at most 1000.0 (got 1e+308)"),
    ({"distortion": {"sinOffset": -5e3}}, "distortion.sinOffset must be at least -1000.0"),
    ({"lowPass": {"smoothing": 1e308}}, "lowPass.smoothing must be at most 10000.0"),
    ({"lowPass": {"smoothing": -5}}, "lowPass.smoothing must be at least 0.0 (got -5)"),
    ([1, 2], "filters must be a JSON object"),
    (b"{not json", "filters must be a JSON object"),
]


@pytest.mark.parametrize(("data", "message"), REFUSED)
def test_bad_filters_are_refused_in_words(data: object, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters(data)
    assert str(caught.value).startswith(message)
    assert "pydantic" not in str(caught.value) and "/" not in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters({"volume": -1, "rotation": {"rotationHz": 500}})
    assert str(caught.value) == (
        "volume must be at least 0.0 (got -1); rotation.rotationHz must be at most 100.0 (got 500)"
    )


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(FilterError, match=r"distortion\.scale must be a finite number"):
        parse_filters(b'{"distortion": {"scale": 1e999}}')


def test_json_text_is_accepted() -> None:
    assert parse_filters(b'{"timescale": {"speed": 1.25}}').tempo == 1.25


NEUTRAL: list[dict[str, object]] = [
    {},
    {"volume": 1.0},
    {"equalizer": [{"band": 3, "gain": 0.0}]},
    {"timescale": {}},
    {"rotation": {"rotationHz": 0}},
    {"tremolo": {"depth": 0}},
    {"distortion": {}},
    {"lowPass": {"smoothing": 1}},
    {"channelMix": {}},
    {"karaoke": {"level": 0}},
]


def test_neutral_sets_plan_to_identity() -> None:
    for neutral in NEUTRAL:
        filters = parse_filters(neutral)
        assert filters.neutral, neutral
        assert plan(filters) == GraphPlan() and plan(filters).identity


def test_plans_compare_by_what_they_do() -> None:
    a = plan(parse_filters({"equalizer": [{"band": 1, "gain": 0.1}], "volume": 1.0}))
    b = plan(parse_filters({"equalizer": [{"band": 1, "gain": 0.1}]}))
    c = plan(parse_filters({"equalizer": [{"band": 1, "gain": 0.2}]}))
    assert a == b and hash(a) == hash(b)
    assert a != c


def test_equalizer_band_pass_is_two_thirds_of_an_octave() -> None:
    coefficients = band_coefficients()
    assert len(coefficients) == len(BAND_FREQUENCIES) == 15
    for frequency, (beta, alpha, gamma) in zip(BAND_FREQUENCIES, coefficients, strict=True):
        theta = 2 * math.pi * frequency / 48_000
        assert alpha == pytest.approx((1 - beta) / 2)
        assert gamma == pytest.approx((1 + beta) * math.cos(theta))

        def gain(f: float, beta: float = beta, alpha: float = alpha, gamma: float = gamma) -> float:
            z = complex(math.cos(2 * math.pi * f / 48_000), math.sin(2 * math.pi * f / 48_000))
            return abs(alpha * (1 - z**-2) / (1 - gamma / z + beta * z**-2))

        assert gain(frequency) == pytest.approx(1.0, abs=1e-6)
        assert gain(frequency / 2 ** (1 / 3)) == pytest.approx(2**-0.5, abs=1e-6)


def test_presets_are_valid_lavalink_objects() -> None:
    assert set(PRESETS) == set(Preset)
    for name in Preset:
        filters = preset(name)
        assert parse_filters(filters.to_lavalink()) == filters
    assert preset("reset").neutral
    assert preset("nightcore").tempo == 1.25
    assert preset("8d").active() == ("rotation",)
    assert preset("bassboost").active() == ("equalizer",)
    with pytest.raises(ValueError, match="unknown preset 'loud'"):
        preset("loud")


def test_position_map_segments_and_inverse() -> None:
    positions = PositionMap(10.0)
    assert positions.track_time(48_000) == pytest.approx(11.0)
    positions.add(96_000, 12.0, 1.25)
    assert positions.track_time(96_000 + 48_000) == pytest.approx(13.25)
    assert positions.tempo_at(95_999) == 1.0 and positions.tempo_at(96_000) == 1.25
    assert positions.output_index(11.0) == 48_000
    assert positions.output_index(13.25) == 144_000
    # A later segment replaces what followed its start.
    positions.add(48_000, 11.0, 0.5)
    assert positions.track_time(96_000) == pytest.approx(11.5)
    assert len(positions.segments) == 2


def test_position_map_is_bounded() -> None:
    positions = PositionMap(max_segments=4)
    for n in range(1, 20):
        positions.add(n * 960, n * 0.02, 1.0)
    assert len(positions.segments) == 4
    assert positions.track_time(19 * 960) == pytest.approx(0.38)


def test_filters_are_immutable() -> None:
    filters = Filters()
    with pytest.raises(ValueError):
        filters.volume = 2.0


def test_this_ffmpeg_has_every_filter_the_plans_use() -> None:
    assert missing_filters() == frozenset()
