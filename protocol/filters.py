"""Lavalink v4's ``filters`` object, validated, plus our ``loudness`` normalization.

The JSON shape is Lavalink v4's, key for key, so a preset written for a Lavalink
client (wavelink, mafic, lavalink.py, lavalink-client, shoukaku) works unchanged::

    {"volume": 1.0,
     "equalizer": [{"band": 0, "gain": 0.2}, ...],          # 15 bands, 0-14
     "karaoke": {"level": 1.0, "monoLevel": 1.0, "filterBand": 220.0, "filterWidth": 100.0},
     "timescale": {"speed": 1.0, "pitch": 1.0, "rate": 1.0},
     "tremolo": {"frequency": 2.0, "depth": 0.5},
     "vibrato": {"frequency": 2.0, "depth": 0.5},
     "rotation": {"rotationHz": 0.0},
     "distortion": {"sinOffset": 0.0, "sinScale": 1.0, "cosOffset": 0.0, "cosScale": 1.0,
                    "tanOffset": 0.0, "tanScale": 1.0, "offset": 0.0, "scale": 1.0},
     "channelMix": {"leftToLeft": 1.0, "leftToRight": 0.0, "rightToLeft": 0.0, "rightToRight": 1.0},
     "lowPass": {"smoothing": 20.0},
     "loudness": {"target": -14.0, "peak": -1.0, "maxGain": 20.0}}   # ours, off when absent

A missing or ``null`` key means that filter is off; the object as a whole replaces the
previous one (Lavalink's semantics). Inside a filter, omitted keys take Lavalink's defaults.

Ranges are Lavalink's documented ones. Where Lavalink sets no bound, we set one that keeps
the work per frame bounded and says so in the error: timescale factors 0.25-4 (and the
overall tempo and pitch 0.25-4, so one input second never becomes more than four output
seconds), rotation up to 100 Hz, karaoke frequencies below the Nyquist frequency,
distortion's eight numbers within ±1000 (its formula's products stay exact and finite;
presets use single digits) and lowPass smoothing 0-10000 (at 10000 nothing above 1 Hz
is left; a larger one only drives FFmpeg's filter towards denormal numbers).
Numbers must be finite JSON numbers (``true`` and ``"1.5"`` are refused).

``parse_filters`` is the entry point: it raises ``FilterError`` with one sentence per
problem, naming the key the way the user wrote it (``equalizer[2].gain``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

__all__ = [
    "BAND_COUNT",
    "Band",
    "ChannelMix",
    "Distortion",
    "FilterError",
    "Filters",
    "Karaoke",
    "Loudness",
    "LowPass",
    "Rotation",
    "Timescale",
    "Tremolo",
    "Vibrato",
    "parse_filters",
]

#: Lavalink's equalizer has 15 bands, numbered 0-14.
BAND_COUNT: Final = 15

#: Highest frequency a 48 kHz stream can carry.
_NYQUIST: Final = 24_000.0

#: Bound of each of distortion's numbers (Lavalink sets none): the formula multiplies
#: four of them, and 1e308 overflowed to infinity.
_DISTORTION_LIMIT: Final = 1000.0
#: Largest lowPass smoothing (Lavalink sets none): 10000 already keeps only what is below
#: about 1 Hz, and FFmpeg's biquad fed 1/smoothing near 1e-308 works in denormals.
_SMOOTHING_MAX: Final = 10_000.0

#: Timescale factors and their products stay within [1/4, 4]: beyond that a batch of input
#: turns into an unbounded amount of output (or almost none), and FFmpeg's atempo needs
#: more than two stages.
_TIMESCALE_MIN: Final = 0.25
_TIMESCALE_MAX: Final = 4.0


class FilterError(ValueError):
    """The filters object is not valid. ``str(exc)`` is a message for the user: one
    sentence per problem, naming the offending key, with no internal detail."""


class _Strict(BaseModel):
    """Shared config: Lavalink's camelCase keys, unknown keys refused, frozen, strict
    numbers (an int is a number, a bool or a string is not), no NaN or infinity."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
    )


class Band(_Strict):
    """One equalizer band: ``gain`` is Lavalink's multiplier, -0.25 (the band muted) to
    1.0; 0 leaves the band as it is and 0.25 doubles it."""

    band: Annotated[int, Field(ge=0, le=BAND_COUNT - 1)]
    gain: Annotated[float, Field(ge=-0.25, le=1.0)]


class Karaoke(_Strict):
    """Cancels what is mixed in the centre (usually the voice), keeping the band around
    ``filterBand`` (Hz, ``filterWidth`` wide) of the mono mix."""

    level: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    mono_level: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    filter_band: Annotated[float, Field(gt=0.0, lt=_NYQUIST)] = 220.0
    filter_width: Annotated[float, Field(gt=0.0, lt=_NYQUIST)] = 100.0

    @property
    def enabled(self) -> bool:
        """Lavalink applies karaoke whenever the object is present; level 0 is a no-op."""
        return self.level != 0.0


class Timescale(_Strict):
    """``speed`` changes the tempo only, ``pitch`` the pitch only, ``rate`` both."""

    speed: Annotated[float, Field(ge=_TIMESCALE_MIN, le=_TIMESCALE_MAX)] = 1.0
    pitch: Annotated[float, Field(ge=_TIMESCALE_MIN, le=_TIMESCALE_MAX)] = 1.0
    rate: Annotated[float, Field(ge=_TIMESCALE_MIN, le=_TIMESCALE_MAX)] = 1.0

    @model_validator(mode="after")
    def _bounded_products(self) -> Timescale:
        tempo = self.speed * self.rate
        if not _TIMESCALE_MIN <= tempo <= _TIMESCALE_MAX:
            raise ValueError(
                f"speed times rate must be between {_TIMESCALE_MIN:g} and {_TIMESCALE_MAX:g} "
                f"(got {tempo:g})"
            )
        pitch = self.pitch * self.rate
        if not _TIMESCALE_MIN <= pitch <= _TIMESCALE_MAX:
            raise ValueError(
                f"pitch times rate must be between {_TIMESCALE_MIN:g} and {_TIMESCALE_MAX:g} "
                f"(got {pitch:g})"
            )
        return self

    @property
    def enabled(self) -> bool:
        return (self.speed, self.pitch, self.rate) != (1.0, 1.0, 1.0)

    @property
    def tempo(self) -> float:
        """Seconds of track per second of output."""
        return self.speed * self.rate

    @property
    def pitch_factor(self) -> float:
        """Frequency multiplier: 1.5 moves 440 Hz to 660 Hz."""
        return self.pitch * self.rate


class Tremolo(_Strict):
    """Volume oscillating ``frequency`` times a second; ``depth`` 0-1 (0 is off)."""

    frequency: Annotated[float, Field(gt=0.0, le=20_000.0)] = 2.0
    depth: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5

    @property
    def enabled(self) -> bool:
        return self.depth != 0.0


class Vibrato(_Strict):
    """Pitch oscillating ``frequency`` times a second (at most 14); ``depth`` 0-1."""

    frequency: Annotated[float, Field(gt=0.0, le=14.0)] = 2.0
    depth: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5

    @property
    def enabled(self) -> bool:
        return self.depth != 0.0


class Rotation(_Strict):
    """The sound circling the listener ``rotationHz`` times a second ("8D"); 0 is off,
    a negative value turns the other way."""

    rotation_hz: Annotated[float, Field(ge=-100.0, le=100.0)] = 0.0

    @property
    def enabled(self) -> bool:
        return self.rotation_hz != 0.0


_DistortionNumber = Annotated[float, Field(ge=-_DISTORTION_LIMIT, le=_DISTORTION_LIMIT)]


class Distortion(_Strict):
    """Lavalink's waveshaper: ``offset + scale · (sinOffset + sin(x·sinScale)) ·
    (cosOffset + cos(x·cosScale)) · (tanOffset + tan(x·tanScale))``, clipped to ±1."""

    sin_offset: _DistortionNumber = 0.0
    sin_scale: _DistortionNumber = 1.0
    cos_offset: _DistortionNumber = 0.0
    cos_scale: _DistortionNumber = 1.0
    tan_offset: _DistortionNumber = 0.0
    tan_scale: _DistortionNumber = 1.0
    offset: _DistortionNumber = 0.0
    scale: _DistortionNumber = 1.0

    @property
    def enabled(self) -> bool:
        """Lavalink's rule: on as soon as one value differs from its default."""
        return self != Distortion()


class ChannelMix(_Strict):
    """How much of each input channel goes to each output channel (0-1 each)."""

    left_to_left: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    left_to_right: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    right_to_left: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    right_to_right: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0

    @property
    def enabled(self) -> bool:
        return self != ChannelMix()


class LowPass(_Strict):
    """Lavalink's one-pole smoothing: each output moves 1/``smoothing`` of the way to the
    input. 1 or less is off; the default 20 cuts above roughly 390 Hz."""

    smoothing: Annotated[float, Field(ge=0.0, le=_SMOOTHING_MAX)] = 20.0

    @property
    def enabled(self) -> bool:
        return self.smoothing > 1.0


class Loudness(_Strict):
    """Ours, not Lavalink's: bring the track to ``target`` LUFS (EBU R128 integrated
    loudness, measured as it plays), never boosting by more than ``maxGain`` dB, with a
    limiter holding sample peaks under ``peak`` dBFS."""

    target: Annotated[float, Field(ge=-40.0, le=-5.0)] = -14.0
    peak: Annotated[float, Field(ge=-9.0, le=0.0)] = -1.0
    max_gain: Annotated[float, Field(ge=0.0, le=30.0)] = 20.0


class Filters(_Strict):
    """A complete filter set. The default instance (``Filters()``) changes nothing."""

    volume: Annotated[float, Field(ge=0.0, le=5.0)] | None = None
    equalizer: Annotated[list[Band], Field(max_length=BAND_COUNT)] | None = None
    karaoke: Karaoke | None = None
    timescale: Timescale | None = None
    tremolo: Tremolo | None = None
    vibrato: Vibrato | None = None
    rotation: Rotation | None = None
    distortion: Distortion | None = None
    channel_mix: ChannelMix | None = None
    low_pass: LowPass | None = None
    loudness: Loudness | None = None
    plugin_filters: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _no_plugins(self) -> Filters:
        if self.plugin_filters:
            names = ", ".join(sorted(self.plugin_filters))
            raise ValueError(f"plugin filters are not supported by this engine ({names})")
        return self

    def gains(self) -> tuple[float, ...]:
        """The 15 equalizer multipliers (a band listed twice: the last one wins, as in
        Lavalink)."""
        gains = [0.0] * BAND_COUNT
        for band in self.equalizer or ():
            gains[band.band] = band.gain
        return tuple(gains)

    def active(self) -> tuple[str, ...]:
        """Names (Lavalink's keys) of the filters that change the audio, in the order
        they are applied."""
        names: list[str] = []
        if self.loudness is not None:
            names.append("loudness")
        for name, part in (
            ("lowPass", self.low_pass),
            ("channelMix", self.channel_mix),
            ("rotation", self.rotation),
            ("distortion", self.distortion),
            ("vibrato", self.vibrato),
            ("tremolo", self.tremolo),
            ("timescale", self.timescale),
            ("karaoke", self.karaoke),
        ):
            if part is not None and part.enabled:
                names.append(name)
        if any(self.gains()):
            names.append("equalizer")
        if self.volume is not None and self.volume != 1.0:
            names.append("volume")
        return tuple(names)

    @property
    def neutral(self) -> bool:
        """True when nothing alters the samples (the audio may pass through untouched)."""
        return not self.active()

    @property
    def tempo(self) -> float:
        """Seconds of track per second of output (speed * rate; 1 without timescale)."""
        if self.timescale is None or not self.timescale.enabled:
            return 1.0
        return self.timescale.tempo

    def output_seconds(self, track_seconds: float) -> float:
        """How long ``track_seconds`` of the track take to play with these filters."""
        return track_seconds / self.tempo

    def to_lavalink(self) -> dict[str, Any]:
        """The JSON object (Lavalink's keys, filters that are off left out)."""
        return self.model_dump(mode="json", exclude_none=True)


_PARTS: Final[Mapping[str, type[BaseModel]]] = {
    "equalizer": Band,
    "karaoke": Karaoke,
    "timescale": Timescale,
    "tremolo": Tremolo,
    "vibrato": Vibrato,
    "rotation": Rotation,
    "distortion": Distortion,
    "channelMix": ChannelMix,
    "lowPass": LowPass,
    "loudness": Loudness,
}

_MESSAGES: Final[Mapping[str, str]] = {
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "finite_number": "must be a finite number",
    "missing": "is required",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
}


def _where(loc: tuple[int | str, ...]) -> str:
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        else:
            where += f".{part}" if where else part
    return where or "filters"


def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return f"{value:g}"
    text = json.dumps(value) if isinstance(value, str | int | float | bool) else ""
    return text if len(text) <= 40 else text[:37] + "..."


def _known_keys(loc: tuple[int | str, ...]) -> str:
    """The keys accepted where an unknown one was found (for a helpful message)."""
    model: type[BaseModel] = Filters
    parents = [part for part in loc[:-1] if isinstance(part, str)]
    for part in parents[:1]:
        model = _PARTS.get(part, Filters)
    names = [field.alias or name for name, field in model.model_fields.items()]
    return ", ".join(names)


def _sentence(error: ErrorDetails) -> str:
    where = _where(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = _shown(error.get("input"))
    suffix = f" (got {got})" if got else ""
    match kind:
        case "greater_than_equal":
            return f"{where} must be at least {ctx['ge']}{suffix}"
        case "greater_than":
            return f"{where} must be more than {ctx['gt']}{suffix}"
        case "less_than_equal":
            return f"{where} must be at most {ctx['le']}{suffix}"
        case "less_than":
            return f"{where} must be less than {ctx['lt']}{suffix}"
        case "too_long":
            return f"{where} can list at most {ctx['max_length']} bands"
        case "extra_forbidden":
            return (
                f"{where} is not a setting this engine knows (known: {_known_keys(error['loc'])})"
            )
        case "value_error":
            return f"{where}: {ctx['error']}" if where != "filters" else str(ctx["error"])
        case _ if kind in _MESSAGES:
            return f"{where} {_MESSAGES[kind]}{suffix if kind != 'missing' else ''}"
        case _:
            return f"{where} is not valid{suffix}"


def parse_filters(data: object) -> Filters:
    """Validate a Lavalink ``filters`` object (a parsed JSON value, or JSON text/bytes).

    Raises:
        FilterError: with a message that names every invalid key and says what it must be.
    """
    if isinstance(data, str | bytes | bytearray):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FilterError("filters must be a JSON object") from exc
    if not isinstance(data, Mapping):
        raise FilterError("filters must be a JSON object")
    try:
        return Filters.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise FilterError("; ".join(_sentence(e) for e in exc.errors())) from exc
