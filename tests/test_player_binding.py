"""The play binding alone: its transition table, its named error, and the matching of
engine events to plays (with play ids, and by counting without them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.player import TRANSITIONS, EngineEvent, Phase, PhaseError, Trigger
from gateway.player.binding import STALE_STREAM_PACKETS, PlayBinding
from protocol import EventType, FinishReason

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def bound(play_id: int | None = 1) -> PlayBinding:
    binding = PlayBinding()
    binding.new_play()
    binding.send(binding.nonce)
    assert binding.answer(binding.nonce, play_id) == []
    return binding


def test_the_table_covers_every_phase_and_commands_apply_in_every_phase() -> None:
    assert set(TRANSITIONS) == set(Phase)
    for phase, moves in TRANSITIONS.items():
        assert moves[Trigger.PLAY] is Phase.WANTED, phase
        assert moves[Trigger.PARK] is Phase.PARKED, phase
        assert moves[Trigger.CLEAR] is Phase.IDLE, phase
    # Engine events reach only a play the engine has.
    for trigger in (Trigger.READY, Trigger.FINISH, Trigger.ERROR, Trigger.LOSE):
        assert {p for p, moves in TRANSITIONS.items() if trigger in moves} == {
            Phase.STARTING, Phase.JOINING, Phase.STREAMING}


def test_an_impossible_input_is_a_named_error_and_changes_nothing() -> None:
    binding = PlayBinding()
    for trigger in (Trigger.ANSWER, Trigger.READY, Trigger.REFUSE, Trigger.JOIN):
        with pytest.raises(PhaseError, match=f"{trigger.value} is impossible while the play "
                                             "is idle"):
            binding.fire(trigger)
        assert binding.phase is Phase.IDLE
    binding.new_play()
    with pytest.raises(PhaseError, match="play 7 is sent but play 1 is current"):
        binding.send(7)


def test_the_documented_table_is_the_table() -> None:
    """docs/architecture.md shows the phases with their moves: every cell agrees with
    ``TRANSITIONS`` (a blank cell: impossible)."""
    lines = [line for line in DOC.read_text().splitlines()
             if line.startswith("| phase | what it means |")]
    assert len(lines) == 1
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    triggers = [Trigger(name.lower()) for name in header[2:]]
    assert set(triggers) == set(Trigger)
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == len(header) and cells[0] and cells[0] not in ("phase", "---"):
            for name in cells[0].split(", "):
                rows[Phase(name.lower())] = cells[2:]
    assert set(rows) == set(Phase)
    for phase, cells in rows.items():
        for trigger, cell in zip(triggers, cells, strict=True):
            shown = re.sub(r"\s*\(.*\)", "", cell)
            expected = TRANSITIONS[phase].get(trigger)
            assert shown == (expected.value.upper() if expected else ""), (phase, trigger)


def test_events_of_a_play_on_its_way_are_kept_and_others_ignored() -> None:
    binding = PlayBinding()
    binding.new_play()
    binding.send(binding.nonce)
    ready = EngineEvent(EventType.READY, play_id=5)
    assert binding.match(ready) is None  # the answer has not come: kept
    assert binding.answer(binding.nonce, 5) == [ready]
    assert binding.match(EngineEvent(EventType.FINISHED, play_id=4)) is None  # another play
    assert binding.match(EngineEvent(EventType.FINISHED, play_id=5,
                                     reason=FinishReason.END)) is Trigger.FINISH
    assert binding.match(EngineEvent(EventType.FINISHED, play_id=5,
                                     reason=FinishReason.SHUTDOWN)) is Trigger.LOSE
    assert binding.answer(binding.nonce, 6) is None  # stale: not sent now


def test_without_play_ids_a_replaced_stream_end_is_expected_and_absorbed() -> None:
    binding = bound(None)
    assert binding.match(EngineEvent(EventType.READY)) is Trigger.READY
    binding.fire(Trigger.READY)
    binding.new_play()  # replaces the streaming play
    binding.send(binding.nonce)
    assert binding.expected_terminals == 1
    assert binding.match(EngineEvent(EventType.FINISHED)) is None  # ours: absorbed
    assert binding.expected_terminals == 0
    # A replaced stream that had not started may still send its ready, then its end.
    binding.answer(binding.nonce, None)
    binding.new_play()
    binding.send(binding.nonce)
    assert binding.unconfirmed_replaced == 1
    binding.answer(binding.nonce, None)
    assert binding.match(EngineEvent(EventType.READY)) is Trigger.READY
    binding.fire(Trigger.READY)
    stale = EngineEvent(EventType.FINISHED, packets_since_ready=STALE_STREAM_PACKETS - 1)
    assert binding.match(stale) is Trigger.UNREADY
    assert binding.fire(Trigger.UNREADY) is Phase.STARTING


def test_parking_forgets_every_stream_and_keeps_the_nonce() -> None:
    binding = bound(3)
    binding.fire(Trigger.READY)
    nonce = binding.nonce
    binding.park()
    assert binding.phase is Phase.PARKED and binding.nonce == nonce
    assert binding.play_id is None and binding.next is None
    assert binding.match(EngineEvent(EventType.FINISHED, play_id=3)) is None
