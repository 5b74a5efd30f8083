"""Live runs on data that ended long ago: refused with the reason on the span, or (when configured)
run on the last bar and said so on every signal and to the model; never stamped as today. Replay
is unaffected (tests/test_scheduler.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import httpx2
import pytest

import scheduler
from otel import semconv
from services.clock import ReplayClock
from services.config_error import ConfigError
from services.data_freshness import FreshnessPolicy, parse_freshness_policy
from services.simulated_llm import SimulatedLLMTransport
from tests.fleet_fixtures import build_test_fleet, root_spans

LATER = date(2026, 12, 4)  # the data of the test world ends in 2018


class _PromptRecorder(SimulatedLLMTransport):
    """The simulated model, keeping the user prompts it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.prompts.append(json.loads(request.content)["messages"][1]["content"])
        return super().handle_request(request)


def test_live_run_on_stale_data_is_refused_with_the_reason_on_its_span(world, telemetry, span_exporter, sequential_run_ids):
    transport = _PromptRecorder()
    fleet = build_test_fleet(world, telemetry, transport, clock=ReplayClock(LATER), run_ids=sequential_run_ids)
    fleet.run_cycle()  # live: the clock's date
    fleet.shutdown()

    roots = root_spans(span_exporter)
    assert len(roots) == 4 and len(span_exporter.get_finished_spans()) == 4  # no LLM span
    assert transport.prompts == []
    last_bar = world["calendar"][-1]
    momentum = next(s for s in roots if s.attributes["gen_ai.agent.name"] == "momentum")
    attributes = dict(momentum.attributes)
    assert attributes.pop(semconv.AGENT_RUN_ID).startswith("run-")
    assert attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "momentum",
        semconv.AGENT_RUN_AS_OF: LATER.isoformat(),
        semconv.AGENT_STATUS: "live",
        semconv.AGENT_RUN_OUTCOME: "stale_data",
        semconv.DATA_STALE: True,
        semconv.DATA_LAST_BAR: last_bar.isoformat(),
        semconv.DATA_AGE_DAYS: (LATER - last_bar).days,
        semconv.DATA_MAX_AGE_DAYS: 4,
        semconv.DATA_ON_STALE: "refuse",
        semconv.STALE_REASON: f"latest bar {last_bar} is {(LATER - last_bar).days} days before {LATER} (max_data_age_days=4)",
        semconv.RUN_LLM_CALLS: 0,
        semconv.RUN_INPUT_TOKENS: 0,
        semconv.RUN_OUTPUT_TOKENS: 0,
        semconv.RUN_CACHED_INPUT_TOKENS: 0,
        semconv.RUN_COST_USD: 0.0,
        semconv.RUN_UNPRICED_LLM_CALLS: 0,
        semconv.RUN_ALPHA_SIGNALS: 0,
        semconv.RUN_TOOL_CALLS: 0,
        "alphatrace.telemetry.spans_dropped": 0,
        "alphatrace.telemetry.spans_export_failed": 0,
    }
    assert momentum.events == ()
    assert Counter(s.attributes[semconv.AGENT_RUN_OUTCOME] for s in roots) == {"stale_data": 4}


def test_live_run_on_last_bar_says_so_on_every_signal_and_tells_the_model_that_date(world, telemetry, span_exporter):
    transport = _PromptRecorder()
    fleet = build_test_fleet(world, telemetry, transport, clock=ReplayClock(LATER), freshness=FreshnessPolicy(4, "last_bar"))
    fleet.run_cycle()
    fleet.shutdown()

    last_bar = world["calendar"][-1].isoformat()
    roots = root_spans(span_exporter)
    assert {s.attributes[semconv.AGENT_RUN_OUTCOME] for s in roots} == {"ok"}
    assert {s.attributes[semconv.AGENT_RUN_AS_OF] for s in roots} == {last_bar}
    assert {s.attributes[semconv.DATA_STALE] for s in roots} == {True}
    signals = [e for s in roots for e in s.events if e.name == semconv.EVENT_ALPHA_SIGNAL]
    assert len(signals) == 8  # 4 agents x 2 symbols
    assert {e.attributes[semconv.ALPHA_AS_OF] for e in signals} == {last_bar}
    assert {e.attributes[semconv.ALPHA_STALE] for e in signals} == {True}
    assert {e.attributes[semconv.ALPHA_TRADABLE] for e in signals} == {False}  # stale data is not tradable
    assert len(transport.prompts) == 1 and transport.prompts[0].startswith(f"As-of date: {last_bar}.")


def test_live_run_on_fresh_data_is_unchanged(world, telemetry, span_exporter):
    friday = world["calendar"][-1]
    fleet = build_test_fleet(world, telemetry, clock=ReplayClock(date.fromordinal(friday.toordinal() + 4)))
    fleet.run_cycle()
    fleet.shutdown()
    roots = root_spans(span_exporter)
    assert {s.attributes[semconv.AGENT_RUN_OUTCOME] for s in roots} == {"ok"}
    assert all(semconv.DATA_STALE not in s.attributes for s in roots)
    signals = [e for s in roots for e in s.events if e.name == semconv.EVENT_ALPHA_SIGNAL]
    assert len(signals) == 8 and all(semconv.ALPHA_STALE not in e.attributes for e in signals)


def test_once_from_the_command_line_never_stamps_old_history_as_today(world, monkeypatch):
    trace_file = world["tmp"] / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))

    assert scheduler.main(["--once", "--config", str(world["config"])]) == 0

    roots = []
    for line in trace_file.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                roots += [s for s in ss["spans"] if s["name"].startswith("invoke_agent")]
    attrs = [{a["key"]: next(iter(a["value"].values())) for a in s["attributes"]} for s in roots]
    assert len(attrs) == 4
    assert {a[semconv.AGENT_RUN_OUTCOME] for a in attrs} == {"stale_data"}
    assert {a[semconv.DATA_LAST_BAR] for a in attrs} == {world["calendar"][-1].isoformat()}
    assert all(not s.get("events") for s in roots)


def test_staleness_settings_come_from_the_fleet_table_and_the_environment_wins():
    assert parse_freshness_policy({}, "f", env={}) == FreshnessPolicy(4, "refuse")
    assert parse_freshness_policy({"max_data_age_days": 7, "on_stale": "last_bar"}, "f", env={}) == FreshnessPolicy(7, "last_bar")
    env = {"ALPHATRACE_MAX_DATA_AGE_DAYS": "10", "ALPHATRACE_ON_STALE": "last_bar"}
    assert parse_freshness_policy({"max_data_age_days": 7}, "f", env=env) == FreshnessPolicy(10, "last_bar")


@pytest.mark.parametrize(
    ("fleet", "env", "message"),
    [
        ({"max_data_age_days": -1}, {}, r"f: fleet.max_data_age_days must be a whole number of days in \[0, 3660\]"),
        ({"max_data_age_days": "4"}, {}, "fleet.max_data_age_days must be a whole number"),
        ({"max_data_age_days": True}, {}, "fleet.max_data_age_days must be a whole number"),
        ({"on_stale": "ignore"}, {}, "f: fleet.on_stale must be one of refuse, last_bar, got 'ignore'"),
        ({}, {"ALPHATRACE_MAX_DATA_AGE_DAYS": "soon"}, "ALPHATRACE_MAX_DATA_AGE_DAYS must be a whole number"),
        ({}, {"ALPHATRACE_ON_STALE": "today"}, "ALPHATRACE_ON_STALE must be one of refuse, last_bar"),
    ],
)
def test_bad_staleness_settings_are_a_clear_error(fleet, env, message):
    with pytest.raises(ConfigError, match=message):
        parse_freshness_policy(fleet, "f", env=env)


def test_no_bar_at_all_is_refused_even_with_last_bar(world):
    from services.data_freshness import check_freshness
    from services.market_data import CsvMarketData

    before = date(2017, 12, 1)  # the test world's data starts in 2018
    found = check_freshness(CsvMarketData(), ("SPX", "WTI"), before, FreshnessPolicy(4, "last_bar"))
    assert (found.stale, found.refused, found.last_bar, found.as_of) == (True, True, None, before)
    assert found.reason() == "no market data on or before 2017-12-01"
    assert semconv.DATA_LAST_BAR not in found.attributes()
    friday = world["calendar"][-1]
    fresh = check_freshness(CsvMarketData(), ("SPX", "WTI"), date.fromordinal(friday.toordinal() + 4), FreshnessPolicy())
    assert (fresh.stale, fresh.refused, fresh.age_days) == (False, False, 4)
