"""Alpha signals become events on the run's root span; invalid ones are recorded with the reason and
never fail the run."""

from __future__ import annotations

import math

import pytest

from alpha.emit import emit_alpha_signal
from otel import semconv
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
    assert event.name == semconv.EVENT_ALPHA_SIGNAL
    assert dict(event.attributes) == {
        semconv.ALPHA_SYMBOL: "SPX",
        semconv.ALPHA_DIRECTION: "up",
        semconv.ALPHA_PROB_UP: 0.62,
        semconv.ALPHA_CONFIDENCE: 0.4,
        semconv.ALPHA_SCORE_FINAL: 0.31,
        semconv.ALPHA_REGIME: "trend_up",
        semconv.ALPHA_HORIZON: 5,
        semconv.ALPHA_AS_OF: "2018-03-01",
    }
    assert root.attributes[semconv.RUN_ALPHA_SIGNALS] == 1
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "ok"


def test_a_list_gives_one_event_each_and_as_of_defaults_to_the_run(telemetry, span_exporter):
    second = {k: v for k, v in GOOD.items() if k not in ("as_of", "horizon")} | {"symbol": "NDX", "direction": "flat"}
    root, valid = _emit(telemetry, span_exporter, [GOOD, second], as_of="2018-03-02")
    assert valid == 2
    assert [e.attributes[semconv.ALPHA_SYMBOL] for e in root.events] == ["SPX", "NDX"]
    assert root.events[1].attributes[semconv.ALPHA_AS_OF] == "2018-03-02"
    assert root.events[1].attributes[semconv.ALPHA_HORIZON] == 1


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
    assert invalid.name == semconv.EVENT_ALPHA_SIGNAL_INVALID
    assert reason in invalid.attributes[semconv.ALPHA_INVALID_REASON]
    assert good.name == semconv.EVENT_ALPHA_SIGNAL
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "ok"
    assert root.attributes[semconv.RUN_ALPHA_SIGNALS] == 1


def test_not_a_mapping_is_invalid_not_a_crash(telemetry, span_exporter):
    root, valid = _emit(telemetry, span_exporter, ["SPX up", 42, None])
    assert valid == 0
    assert [e.name for e in root.events] == [semconv.EVENT_ALPHA_SIGNAL_INVALID] * 3
    assert root.events[0].attributes[semconv.ALPHA_INVALID_REASON] == "a signal must be a mapping, got str"


def test_missing_fields_are_all_named(telemetry, span_exporter):
    root, _ = _emit(telemetry, span_exporter, {"symbol": "SPX"})
    (event,) = root.events
    assert event.attributes[semconv.ALPHA_INVALID_REASON] == (
        "missing field(s): direction, prob_up, confidence, ensemble_score_final, regime"
    )
    assert event.attributes[semconv.ALPHA_SYMBOL] == "SPX"


def test_outside_a_run_nothing_is_recorded_and_nothing_raises(span_exporter):
    assert emit_alpha_signal(GOOD, "momentum") == 0
