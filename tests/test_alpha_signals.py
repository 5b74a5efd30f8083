"""Alpha signals become events on the run's root span; invalid ones are recorded with the reason and
never fail the run."""

from __future__ import annotations

import math

import pytest

from alpha.emit import emit_alpha_signal
from services.agent_run_wrapper import AgentRunWrapper

GOOD = {
    "symbol": "SPX",
    "direction": "up",
    "prob_up": 0.62,
    "confidence": 0.4,
    "ensemble_score_final": 0.31,
    "regime": "trend_up",
    "horizon": 5,
    "as_of": "2018-03-01",
}


def _emit(telemetry, span_exporter, result, as_of="2018-03-01"):
    counted = {}

    def agent():
        counted["valid"] = emit_alpha_signal(result, "momentum")

    AgentRunWrapper(telemetry.tracer(), new_run_id=lambda: "run-1").run("momentum", agent, as_of=as_of)
    (root,) = span_exporter.get_finished_spans()
    return root, counted["valid"]


def test_one_signal_is_one_event_with_every_field(telemetry, span_exporter):
    root, valid = _emit(telemetry, span_exporter, GOOD)
    assert valid == 1
    (event,) = root.events
    assert event.name == "alpha.signal"
    assert dict(event.attributes) == {
        "alpha.symbol": "SPX",
        "alpha.direction": "up",
        "alpha.prob_up": 0.62,
        "alpha.confidence": 0.4,
        "alpha.score_final": 0.31,
        "alpha.regime": "trend_up",
        "alpha.horizon": 5,
        "alpha.as_of": "2018-03-01",
    }
    assert root.attributes["agent.run.alpha_signals"] == 1
    assert root.attributes["agent.run.outcome"] == "ok"


def test_a_list_gives_one_event_each_and_as_of_defaults_to_the_run(telemetry, span_exporter):
    second = {k: v for k, v in GOOD.items() if k not in ("as_of", "horizon")} | {"symbol": "NDX", "direction": "flat"}
    root, valid = _emit(telemetry, span_exporter, [GOOD, second], as_of="2018-03-02")
    assert valid == 2
    assert [e.attributes["alpha.symbol"] for e in root.events] == ["SPX", "NDX"]
    assert root.events[1].attributes["alpha.as_of"] == "2018-03-02"
    assert root.events[1].attributes["alpha.horizon"] == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"prob_up": None}, "missing field(s): prob_up"),
        ({"prob_up": 1.2}, "prob_up=1.2 is outside [0.0, 1.0]"),
        ({"prob_up": -0.01}, "prob_up=-0.01 is outside [0.0, 1.0]"),
        ({"prob_up": math.nan}, "prob_up must be finite"),
        ({"ensemble_score_final": math.inf}, "ensemble_score_final must be finite"),
        ({"direction": "sideways"}, "direction must be one of up|down|flat"),
        ({"direction": ["up"]}, "direction must be one of up|down|flat"),
        ({"confidence": "high"}, "confidence must be a number, got str"),
        ({"prob_up": True}, "prob_up must be a number, got bool"),
        ({"symbol": " "}, "symbol must be a non-empty string"),
        ({"regime": "x" * 500}, "regime is longer than 128 characters"),
        ({"horizon": 0}, "horizon must be a positive whole number"),
        ({"as_of": "yesterday"}, "as_of must be an ISO date"),
    ],
)
def test_invalid_signal_is_an_invalid_event_with_the_reason(telemetry, span_exporter, change, reason):
    bad = GOOD | change
    root, valid = _emit(telemetry, span_exporter, [bad, GOOD])
    assert valid == 1
    invalid, good = root.events
    assert invalid.name == "alpha.signal.invalid"
    assert reason in invalid.attributes["alpha.invalid.reason"]
    assert good.name == "alpha.signal"
    assert root.attributes["agent.run.outcome"] == "ok"
    assert root.attributes["agent.run.alpha_signals"] == 1


def test_not_a_mapping_is_invalid_not_a_crash(telemetry, span_exporter):
    root, valid = _emit(telemetry, span_exporter, ["SPX up", 42, None])
    assert valid == 0
    assert [e.name for e in root.events] == ["alpha.signal.invalid"] * 3
    assert root.events[0].attributes["alpha.invalid.reason"] == "a signal must be a mapping, got str"


def test_missing_fields_are_all_named(telemetry, span_exporter):
    root, _ = _emit(telemetry, span_exporter, {"symbol": "SPX"})
    (event,) = root.events
    assert event.attributes["alpha.invalid.reason"] == ("missing field(s): direction, prob_up, confidence, ensemble_score_final, regime")
    assert event.attributes["alpha.symbol"] == "SPX"


def test_outside_a_run_nothing_is_recorded_and_nothing_raises(span_exporter):
    assert emit_alpha_signal(GOOD, "momentum") == 0
