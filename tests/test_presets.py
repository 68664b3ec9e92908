"""The filter presets are written once (``protocol.filter_presets``): the bot's choices,
its replies and help, and the playground page's buttons all come from that table."""

from __future__ import annotations

import json
from pathlib import Path

from bot.commands import HELP
from playground_ws import routes
from protocol.filter_presets import (
    EQUALIZER_BANDS,
    PRESET_FILTERS,
    PRESET_WORDS,
    Preset,
    preset,
    preset_catalogue,
    preset_choices,
    preset_words,
)
from protocol.filters import Filters

STATIC = Path(routes.__file__).parent / "static"


def test_every_preset_has_its_filters_and_words_and_validates() -> None:
    assert set(PRESET_FILTERS) == set(PRESET_WORDS) == set(Preset)
    for name in Preset:
        assert isinstance(preset(name), Filters)
    assert preset(Preset.RESET) == Filters()
    assert preset_words(Preset.NIGHTCORE) == "Nightcore on: faster and higher."
    assert preset_words(Preset.RESET) == "Filters off: the track sounds as it was made."
    assert [p["name"] for p in preset_catalogue()] == [p.value for p in Preset]


def test_the_bot_help_names_every_preset() -> None:
    (line,) = [what for name, what in HELP if name == "/filter preset"]
    assert line == preset_choices()
    assert all(p.value in line for p in Preset)


def test_the_page_gets_the_presets_and_bands_from_the_server() -> None:
    page = (STATIC / "index.html").read_text()
    assert "{{SOUND_CATALOGUE}}" in page
    served = json.loads(routes._SOUND_CATALOGUE.replace("\\u003c", "<"))
    assert served == {"presets": preset_catalogue(), "bands": list(EQUALIZER_BANDS)}
    script = (STATIC / "filters.js").read_text()
    for name in Preset:  # no hand copy left in the page's script
        assert f'"{name.value}"' not in script or name is Preset.RESET
        assert PRESET_WORDS[name].label not in script or name is Preset.RESET
