"""What a session costs, whether one more fits, and which libopus complexity to use
(``audio_engine.cluster.cost``, pure)."""

from __future__ import annotations

import pytest

from audio_engine.cluster.cost import (
    FILTER_UNITS,
    PASSTHROUGH_UNITS,
    RESTORE_AFTER,
    Admission,
    CostModel,
    Load,
    complexity_factor,
    play_units,
)


def test_a_lower_complexity_costs_less_of_a_transcoding_session_only() -> None:
    assert complexity_factor(10) == 1.0
    assert complexity_factor(8) == pytest.approx(0.925)
    assert complexity_factor(5) == pytest.approx(0.81)
    transcoding = Load(*play_units(transcoding=True, filters=["equalizer", "loudness"]))
    assert transcoding.at(10) == pytest.approx(1 + FILTER_UNITS["equalizer"]
                                               + FILTER_UNITS["loudness"])
    assert transcoding.at(5) == pytest.approx(0.81 + FILTER_UNITS["equalizer"]
                                              + FILTER_UNITS["loudness"])
    passthrough = Load(*play_units(transcoding=False, filters=[]))
    assert passthrough.at(10) == passthrough.at(5) == PASSTHROUGH_UNITS


def test_the_cost_per_unit_is_learned_once_enough_sessions_play() -> None:
    model = CostModel(prior=0.02)
    model.observe(cores=0.5, units=3)  # too few to tell the engine's own work apart
    assert model.per_unit == 0.02 and not model.learned
    model.observe(cores=0.3, units=10)
    assert model.per_unit == pytest.approx(0.03) and model.learned
    model.observe(cores=0.2, units=10)  # a noisy sample moves it a little
    assert 0.02 < model.per_unit < 0.03


def _units(n: float) -> Load:
    return Load(encoding=n)


def test_a_play_steps_the_complexity_down_before_it_is_refused() -> None:
    model = CostModel(prior=0.1)
    admission = Admission(budget=1.0, max_load=0.75, top=10)
    one = _units(1)
    assert admission.decide(model, _units(6), one).accept  # 0.7 at 10
    decision = admission.decide(model, _units(7), one)  # 0.8 at 10, 0.74 at 8
    assert decision.accept and decision.complexity == 8 == admission.complexity
    decision = admission.decide(model, _units(8), one)  # 0.83 at 8, 0.73 at 5
    assert decision.accept and decision.complexity == 5
    refused = admission.decide(model, _units(9), one)  # 0.81 at 5
    assert not refused.accept and refused.retry_after == 10
    assert refused.message.startswith("the engine is at capacity (73% of its CPU budget")
    assert admission.complexity == 5


def test_a_degraded_busy_engine_refuses_with_a_short_retry() -> None:
    model = CostModel(prior=0.1)
    admission = Admission(budget=1.0, max_load=0.75, top=10)
    refused = admission.decide(model, _units(5), _units(1), degraded=True)
    assert not refused.accept and refused.retry_after == 5
    assert "falling behind" in refused.message
    # Below half its budget the engine is not the cause: take the play.
    assert admission.decide(model, _units(3), _units(1), degraded=True).accept


def test_the_complexity_comes_back_up_after_the_load_stays_low() -> None:
    model = CostModel(prior=0.1)
    admission = Admission(budget=1.0, max_load=0.75, top=10)
    assert admission.settle(model, _units(9), 0.0) == 8  # 0.9 at 10: down one step
    assert admission.settle(model, _units(9), 0.5) == 5  # 0.83 at 8: down again
    assert admission.settle(model, _units(9), 1.0) == 5  # 0.73 at 5 stays
    # At 6 units, 8 would carry 0.555 (under 0.65) since t=2: up after RESTORE_AFTER.
    assert admission.settle(model, _units(6), 2.0) == 5
    assert admission.settle(model, _units(6), 2.0 + RESTORE_AFTER - 0.1) == 5
    assert admission.settle(model, _units(6), 2.0 + RESTORE_AFTER) == 8
    # 10 would carry 0.6 (under 0.65): up again after another wait, not at once.
    assert admission.settle(model, _units(6), 2.0 + RESTORE_AFTER + 0.5) == 8
    assert admission.settle(model, _units(6), 2.5 + 2 * RESTORE_AFTER) == 10
    # A load that comes back in between restarts the wait.
    admission.settle(model, _units(9), 100.0)
    assert admission.complexity == 8


def test_max_load_one_turns_admission_off() -> None:
    model = CostModel(prior=1.0)
    admission = Admission(budget=1.0, max_load=1.0, top=10)
    assert admission.decide(model, _units(100), _units(1)).accept
    assert admission.settle(model, _units(100), 0.0) == 10


def test_a_top_complexity_below_the_steps_only_steps_further_down() -> None:
    admission = Admission(budget=1.0, max_load=0.75, top=6)
    assert admission.levels == (6, 5)
