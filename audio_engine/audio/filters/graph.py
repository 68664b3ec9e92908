"""From a filter set to an FFmpeg audio filter graph (PyAV ``av.filter.Graph``).

``plan(filters)`` turns validated ``Filters`` into a ``GraphPlan``: a comparable,
hashable description of the FFmpeg filters to run, in Lavalink's order (lowPass,
channelMix, rotation, distortion, vibrato, tremolo, timescale, karaoke, equalizer,
volume), then our loudness limiter. ``build(plan)`` makes the PyAV graph: float stereo
48 kHz in and out, so nothing clips between filters; the chain converts to s16 at the end.

How each Lavalink filter maps onto FFmpeg, and how exactly:

- **equalizer**: Lavalink's equalizer (lavaplayer's) is not a chain of peaking filters but
  a parallel sum: ``out = x + 4 · Σ gain_b · BP_b(x)``, where ``BP_b`` is a 2/3-octave
  band-pass with unity gain at its centre (25 Hz ... 16 kHz). We run exactly that in
  FFmpeg: ``asplit``, one ``biquad`` per non-zero band with the band-pass coefficients
  derived below (the band's gain folded into the numerator), and ``amix`` with
  ``normalize=0`` to add them. So a gain g scales the band's centre by 1 + 4g: -0.25
  mutes it, 0.25 doubles it, 1.0 is 5 times (+14 dB), and neighbouring bands overlap the way
  they do in Lavalink.
- **lowPass**: Lavalink's ``y += (x - y) / smoothing`` is a one-pole IIR; FFmpeg's
  ``biquad`` runs it with b0 = 1/smoothing, a1 = -(1 - 1/smoothing).
- **karaoke**: ``L - level·R`` and ``R - level·L`` (``pan``) plus the mono mix through
  Lavalink's two-pole resonator at ``filterBand``/``filterWidth`` (``biquad`` with its
  coefficients) times ``monoLevel·level``, added back (``amix``).
- **channelMix**: ``pan`` with the four factors.
- **rotation**: ``apulsator`` with amount 1 and the right channel half a cycle behind:
  left * (1 + sin)/2, right * (1 - sin)/2, Lavalink's formula. apulsator's lowest rate is
  0.01 Hz, so slower rotations run at 0.01 Hz.
- **tremolo**: ``tremolo`` (gain 1 - depth/2 + depth/2 · sin, as Lavalink). FFmpeg's
  lowest frequency is 0.1 Hz; slower settings run at 0.1 Hz.
- **vibrato**: ``vibrato``. Lavalink's delay swings over depth * 2 ms, FFmpeg's over
  depth * 5 ms, so the depth is scaled by 96/239 (samples at 48 kHz). FFmpeg's delay line
  starts uninitialised (the first 5 ms of output can be garbage or NaN) and adds a fixed
  5 ms, so the filter is fed 5 ms of silence first (``concat`` with ``anullsrc``) and
  its output is trimmed (``atrim``) to swing around no delay at all. Frequencies under
  0.1 Hz run at 0.1 Hz.
- **distortion**: the one filter computed in numpy (``Shaper``), between two FFmpeg
  graphs. FFmpeg's only equivalent, ``aeval``, evaluates the expression per sample through
  its interpreter: measured 2.1 ms per 20 ms frame (10 % of a core per session) against
  tens of µs for the same formula vectorised. It is stateless, so splitting the graph
  around it changes nothing else.
- **timescale**: pitch * rate via ``asetrate`` + ``aresample`` (resampling changes
  pitch and tempo together), then ``atempo`` (tempo without pitch) by
  speed / pitch, split into stages of 0.5 to 4 each. Lavalink uses SoundTouch; FFmpeg
  has no SoundTouch (and this build has no rubberband), atempo is its WSOLA equivalent.
  atempo's output leads the time map by about half its window; each stage is primed with
  that much silence (kept), so positions and crossfades line up within a few ms.
- **volume**: ``volume``.
- **loudness** (ours): the gain is set outside the graph (``loudness.py``); the graph
  ends with ``alimiter`` (auto-level off, latency compensated) at ``peak`` dBFS.

Apart from the distortion formula, nothing here processes samples by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Final

import av
import av.filter
import numpy as np
import numpy.typing as npt

from protocol import SAMPLE_RATE
from protocol.filters import (
    BAND_COUNT,
    Distortion,
    Filters,
    Karaoke,
    Loudness,
    Timescale,
)

__all__ = [
    "BAND_FREQUENCIES",
    "REQUIRED_FILTERS",
    "GraphPlan",
    "Node",
    "Primed",
    "Shaper",
    "Stage",
    "Sum",
    "band_coefficients",
    "build",
    "missing_filters",
    "plan",
]

#: Centre frequencies (Hz) of Lavalink's 15 equalizer bands.
BAND_FREQUENCIES: Final = (
    25, 40, 63, 100, 160, 250, 400, 630, 1000, 1600, 2500, 4000, 6300, 10000, 16000,
)  # fmt: skip
assert len(BAND_FREQUENCIES) == BAND_COUNT

#: Each band is 2/3 of an octave wide: -3 dB at f / 2^(1/3) and f · 2^(1/3).
_BAND_OCTAVES: Final = 2.0 / 3.0

#: FFmpeg's vibrato delay line is 5 ms (240 samples at 48 kHz, largest delay 239);
#: Lavalink's swings over 2 ms (96 samples).
_VIBRATO_LINE: Final = 240
_VIBRATO_SCALE: Final = 96.0 / 239.0

#: Lowest LFO rates FFmpeg's filters accept.
_TREMOLO_MIN_HZ: Final = 0.1
_VIBRATO_MIN_HZ: Final = 0.1
_ROTATION_MIN_HZ: Final = 0.01

#: atempo accepts 0.5 to 100 per stage, but this FFmpeg build aborts the whole process
#: (an internal assertion) at 7 and more on input frames of 24000 samples or more; 4 and
#: under ran clean on frames of every size tried. Larger factors take several stages.
_ATEMPO_MIN: Final = 0.5
_ATEMPO_MAX: Final = 4.0

#: atempo's output runs ahead of the linear time map by part of its window (WSOLA picks
#: the best-matching segment near each spot). Measured mean lead in input samples over
#: many positions: ~620 when slowing down (0.5-0.8), ~900 when speeding up (1.1-2);
#: that much silence in front, kept in the output, centres the error on zero (±5 ms).
_ATEMPO_LEAD_SLOWER: Final = 620
_ATEMPO_LEAD_FASTER: Final = 900


#: Every FFmpeg filter a plan can use (checked against this PyAV build's FFmpeg by
#: ``missing_filters()``; the build has no ``rubberband``, nothing here needs it).
REQUIRED_FILTERS: Final = frozenset({
    "abuffer", "abuffersink", "aformat", "alimiter", "amix", "anullsrc", "apulsator",
    "aresample", "asetrate", "asplit", "atempo", "atrim", "biquad", "concat", "ebur128",
    "pan", "tremolo", "vibrato", "volume",
})  # fmt: skip


def missing_filters() -> frozenset[str]:
    """The required FFmpeg filters this build of PyAV lacks (empty when filters work)."""
    return REQUIRED_FILTERS - av.filter.filters_available


@dataclass(frozen=True, slots=True)
class Node:
    """One FFmpeg filter with its options (values as FFmpeg reads them)."""

    name: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Sum:
    """Branches fed the same input, their outputs added sample by sample. An empty
    branch is the input itself."""

    branches: tuple[tuple[Step, ...], ...]


@dataclass(frozen=True, slots=True)
class Primed:
    """A filter fed ``lead`` samples of silence before the audio, with the first ``trim``
    samples of its output cut: for a filter whose state starts uninitialised, or whose
    output lags or leads its input by a known amount, so the step stays aligned."""

    node: Node
    lead: int
    trim: int


@dataclass(frozen=True, slots=True)
class Shaper:
    """Lavalink's distortion formula, applied to float samples in numpy (see above)."""

    distortion: Distortion

    def __call__(self, block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        d = self.distortion
        x = block.astype(np.float64)
        shaped = d.offset + d.scale * (d.sin_offset + np.sin(x * d.sin_scale)) * (
            d.cos_offset + np.cos(x * d.cos_scale)
        ) * (d.tan_offset + np.tan(x * d.tan_scale))
        return np.clip(shaped, -1.0, 1.0).astype(np.float32)


Step = Node | Sum | Primed | Shaper


@dataclass(frozen=True, slots=True)
class GraphPlan:
    """What a filter set runs: FFmpeg steps, the tempo they produce, the loudness target.

    Two plans compare equal exactly when they process audio the same way, which is how
    the chain knows a reconfiguration is a no-op.
    """

    steps: tuple[Step, ...] = ()
    #: Seconds of track per second of output.
    tempo: float = 1.0
    loudness: Loudness | None = None

    @property
    def identity(self) -> bool:
        """Output equals input: no graph is needed."""
        return not self.steps and self.loudness is None


def _num(value: float) -> str:
    """A float as FFmpeg's option parser reads it, with full precision."""
    return repr(float(value))


def _node(name: str, **options: float | int | str) -> Node:
    return Node(
        name,
        tuple(
            (
                key,
                value
                if isinstance(value, str)
                else _num(value)
                if isinstance(value, float)
                else str(value),
            )
            for key, value in options.items()
        ),
    )


def _band_pass_response(beta: float, theta0: float, theta: float) -> float:
    """|H|² of the unity-peak band-pass (1-β)/2 · (1 - z⁻²) / (1 - (1+β)cosθ₀ z⁻¹ + βz⁻²)."""
    z = complex(math.cos(theta), math.sin(theta))
    numerator = (1.0 - beta) / 2.0 * (1.0 - z**-2)
    denominator = 1.0 - (1.0 + beta) * math.cos(theta0) / z + beta * z**-2
    return abs(numerator / denominator) ** 2


@cache
def band_coefficients(sample_rate: int = SAMPLE_RATE) -> tuple[tuple[float, float, float], ...]:
    """(beta, alpha, gamma) of each band's band-pass at ``sample_rate``.

    The filter is ``y = alpha·(x - x₋₂) + gamma·y₋₁ - beta·y₋₂``: unity gain at the centre
    f, -3 dB at the band's lower edge f / 2^(1/3). beta is found by bisection on that edge
    condition (a larger beta is a narrower band), alpha = (1 - beta)/2 and
    gamma = (1 + beta)·cos θ₀ follow.
    """
    result = []
    for frequency in BAND_FREQUENCIES:
        theta0 = 2.0 * math.pi * frequency / sample_rate
        theta_edge = theta0 / 2.0 ** (_BAND_OCTAVES / 2.0)
        low, high = 0.0, 1.0
        for _ in range(60):
            middle = (low + high) / 2.0
            if _band_pass_response(middle, theta0, theta_edge) > 0.5:
                low = middle
            else:
                high = middle
        beta = (low + high) / 2.0
        result.append((beta, (1.0 - beta) / 2.0, (1.0 + beta) * math.cos(theta0)))
    return tuple(result)


def _equalizer(gains: tuple[float, ...]) -> Step:
    branches: list[tuple[Step, ...]] = [()]
    for (beta, alpha, gamma), gain in zip(band_coefficients(), gains, strict=True):
        if gain == 0.0:
            continue
        scale = 4.0 * gain * alpha
        branches.append((_node("biquad", b0=scale, b1=0.0, b2=-scale, a0=1.0, a1=-gamma, a2=beta),))
    return Sum(tuple(branches))


def _karaoke(karaoke: Karaoke) -> Step:
    level = karaoke.level
    cut = _node("pan", args=f"stereo|c0=c0-{level:.9f}*c1|c1=c1-{level:.9f}*c0")
    mono_gain = karaoke.mono_level * level
    if mono_gain == 0.0:
        return cut
    # Lavalink's resonator: y = A·x - B·y₋₁ - C·y₋₂ on the mono mix.
    c = math.exp(-2.0 * math.pi * karaoke.filter_width / SAMPLE_RATE)
    b = -4.0 * c / (1.0 + c) * math.cos(2.0 * math.pi * karaoke.filter_band / SAMPLE_RATE)
    a = math.sqrt(1.0 - b * b / (4.0 * c)) * (1.0 - c)
    bass = (
        _node("pan", args="mono|c0=0.5*c0+0.5*c1"),
        _node("biquad", b0=a * mono_gain, b1=0.0, b2=0.0, a0=1.0, a1=b, a2=c),
        _node("pan", args="stereo|c0=c0|c1=c0"),
    )
    return Sum(((cut,), bass))


def _timescale(timescale: Timescale) -> list[Step]:
    steps: list[Step] = []
    pitch = timescale.pitch_factor
    if pitch != 1.0:
        rate = round(SAMPLE_RATE * pitch)
        pitch = rate / SAMPLE_RATE
        steps.append(_node("asetrate", sample_rate=rate))
        steps.append(_node("aresample", sample_rate=SAMPLE_RATE))
    stretch = timescale.tempo / pitch
    if abs(stretch - 1.0) > 1e-9:
        stages = 1
        while not _ATEMPO_MIN <= stretch ** (1.0 / stages) <= _ATEMPO_MAX:
            stages += 1
        factor = stretch ** (1.0 / stages)
        atempo = _node("atempo", tempo=factor)
        lead = _ATEMPO_LEAD_SLOWER if factor < 1.0 else _ATEMPO_LEAD_FASTER
        steps.extend(Primed(atempo, lead, 0) for _ in range(stages))
    return steps


def plan(filters: Filters) -> GraphPlan:
    """The FFmpeg steps for ``filters`` (assumed valid: it is a validated model)."""
    steps: list[Step] = []
    if (low_pass := filters.low_pass) is not None and low_pass.enabled:
        k = 1.0 / low_pass.smoothing
        steps.append(_node("biquad", b0=k, b1=0.0, b2=0.0, a0=1.0, a1=-(1.0 - k), a2=0.0))
    if (mix := filters.channel_mix) is not None and mix.enabled:
        steps.append(
            _node(
                "pan",
                args=(
                    f"stereo|c0={mix.left_to_left:.9f}*c0+{mix.right_to_left:.9f}*c1"
                    f"|c1={mix.left_to_right:.9f}*c0+{mix.right_to_right:.9f}*c1"
                ),
            )
        )
    if (rotation := filters.rotation) is not None and rotation.enabled:
        hz = max(abs(rotation.rotation_hz), _ROTATION_MIN_HZ)
        ahead, behind = ("0", "0.5") if rotation.rotation_hz > 0 else ("0.5", "0")
        steps.append(
            _node("apulsator", hz=hz, amount=1.0, offset_l=ahead, offset_r=behind, mode="sine")
        )
    if (distortion := filters.distortion) is not None and distortion.enabled:
        steps.append(Shaper(distortion))
    if (vibrato := filters.vibrato) is not None and vibrato.enabled:
        depth = vibrato.depth * _VIBRATO_SCALE
        node = _node("vibrato", f=max(vibrato.frequency, _VIBRATO_MIN_HZ), d=depth)
        # Its delay is (240 - depth·wave) samples, wave 0-239: trim the silence, the
        # 240, and give back half the swing, so the delay swings around zero.
        trim = 2 * _VIBRATO_LINE - round(depth * (_VIBRATO_LINE - 1) / 2)
        steps.append(Primed(node, _VIBRATO_LINE, trim))
    if (tremolo := filters.tremolo) is not None and tremolo.enabled:
        steps.append(_node("tremolo", f=max(tremolo.frequency, _TREMOLO_MIN_HZ), d=tremolo.depth))
    tempo = 1.0
    if (timescale := filters.timescale) is not None and timescale.enabled:
        steps.extend(_timescale(timescale))
        tempo = timescale.tempo
    if (karaoke := filters.karaoke) is not None and karaoke.enabled:
        steps.append(_karaoke(karaoke))
    gains = filters.gains()
    if any(gains):
        steps.append(_equalizer(gains))
    if filters.volume is not None and filters.volume != 1.0:
        steps.append(_node("volume", volume=filters.volume, precision="float"))
    if (loudness := filters.loudness) is not None:
        steps.append(
            _node(
                "alimiter",
                limit=max(10.0 ** (loudness.peak / 20.0), 0.0625),
                level="0",
                latency="1",
                attack=5.0,
                release=50.0,
                asc="0",
            )
        )
    return GraphPlan(tuple(steps), tempo, loudness)


#: Lanes and the chain hand FFmpeg packed float stereo at 48 kHz, and take the same back.
SAMPLE_FORMAT: Final = "flt"
_OUTPUT_FORMAT: Final = (
    f"sample_fmts={SAMPLE_FORMAT}:channel_layouts=stereo:sample_rates={SAMPLE_RATE}"
)


class _Builder:
    """Adds plan steps to a graph, keeping track of the open output (context, pad)."""

    def __init__(self) -> None:
        self.graph = av.filter.Graph()
        # FFmpeg's slice threads cost more in hand-offs than 20 ms of audio is worth;
        # sessions run in parallel on the engine's codec pool instead.
        self.graph.threads = 1
        self.source = self.graph.add_abuffer(
            sample_rate=SAMPLE_RATE,
            format=SAMPLE_FORMAT,
            layout="stereo",
            time_base=Fraction(1, SAMPLE_RATE),
        )
        self.tail: tuple[av.filter.FilterContext, int] = (self.source, 0)

    def add(self, node: Node) -> av.filter.FilterContext:
        return self.graph.add(node.name, **dict(node.options))

    def link(self, target: av.filter.FilterContext, pad: int = 0) -> None:
        context, output = self.tail
        context.link_to(target, output, pad)
        self.tail = (target, 0)

    def step(self, step: Step) -> None:
        match step:
            case Node():
                self.link(self.add(step))
            case Shaper():
                raise AssertionError("build() splits graphs at shapers")
            case Primed(node=node, lead=lead, trim=trim):
                silence = self.graph.add(
                    "anullsrc", channel_layout="stereo", sample_rate=str(SAMPLE_RATE)
                )
                head = self.graph.add("atrim", end_sample=str(lead))
                same = self.graph.add("aformat", _OUTPUT_FORMAT)
                silence.link_to(head)
                head.link_to(same)
                joined = self.graph.add("concat", n="2", v="0", a="1")
                same.link_to(joined, 0, 0)
                self.link(joined, 1)
                self.link(self.add(node))
                self.link(self.graph.add("atrim", start_sample=str(trim)))
            case Sum(branches=branches):
                split = self.graph.add("asplit", str(len(branches)))
                self.link(split)
                mix = self.graph.add("amix", inputs=str(len(branches)), normalize="0")
                for index, branch in enumerate(branches):
                    self.tail = (split, index)
                    for inner in branch:
                        self.step(inner)
                    self.link(mix, index)
                self.tail = (mix, 0)

    def finish(self) -> av.filter.Graph:
        self.link(self.graph.add("aformat", _OUTPUT_FORMAT))
        self.link(self.graph.add("abuffersink"))
        self.graph.configure()
        return self.graph


Stage = av.filter.Graph | Shaper


def build(plan: GraphPlan) -> list[Stage]:
    """The stages running ``plan``, in order: configured PyAV graphs (push packed float
    stereo 48 kHz frames with ``pts`` in samples, pull the same format) and, between
    them, ``Shaper`` steps. An identity plan has no stages.

    Raises:
        av.FFmpegError: FFmpeg refused a graph (a bug: plans come from validated filters).
    """
    stages: list[Stage] = []
    builder: _Builder | None = None
    for step in plan.steps:
        if isinstance(step, Shaper):
            if builder is not None:
                stages.append(builder.finish())
                builder = None
            stages.append(step)
            continue
        if builder is None:
            builder = _Builder()
        builder.step(step)
    if builder is not None:
        stages.append(builder.finish())
    return stages
