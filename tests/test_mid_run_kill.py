"""The kill switch stops a run mid-way: consulted before every LLM call (``otel.run_context.checkpoint``),
not only at the start, so a kill written while a run is going stops it before its next call.
Issue 16: "a run killed mid-way stops before its next call, records where it stopped, and ends with the
killed outcome and the reason; no further LLM call is made"."""

from __future__ import annotations

import json
import logging

from opentelemetry.trace import StatusCode

from otel import semconv
from otel.run_context import RunStopped, checkpoint
from services.fleet_config import AgentSpec
from services.simulated_llm import SimulatedLLMTransport
from tests.fleet_fixtures import build_test_fleet, root_spans

FEATURES = {"SPX": {"momentum_20d": 0.01, "momentum_60d": 0.02, "zscore_20d": 0.1, "regime": "trend"}}


class _TwoCalls:
    """Calls the model, then (as if a person edited the kill file meanwhile) kills itself, then
    asks the model again: the second call must never reach the server."""

    name = "two_calls"

    def __init__(self, kill_file) -> None:
        self._kill_file = kill_file

    def run(self, context):
        context.llm.analyze(FEATURES, context.as_of.isoformat(), 5)
        self._kill_file.write_text(json.dumps({self.name: {"reason": "runaway spend", "by": "alice", "at": ""}}))
        context.llm.analyze(FEATURES, context.as_of.isoformat(), 5)
        raise AssertionError("the run went on after the kill")


def test_a_kill_between_two_llm_calls_stops_the_run_before_the_second(world, telemetry, span_exporter, caplog):
    transport = SimulatedLLMTransport()
    agent = _TwoCalls(world["kill_file"])
    fleet = build_test_fleet(world, telemetry, transport, agents={"two_calls": agent})
    fleet.fleet.agents["two_calls"] = AgentSpec("two_calls", "tests", 0.05)
    with caplog.at_level(logging.WARNING):
        fleet.run_cycle(world["calendar"][70])
    fleet.shutdown()

    chats = [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat ")]
    # every request that reached the server is a chat span; two_calls' second call is not among them
    assert transport.requests == len(chats) == 2  # llm_analyst's call and two_calls' first
    (root,) = [s for s in root_spans(span_exporter) if s.attributes[semconv.GEN_AI_AGENT_NAME] == "two_calls"]
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_KILLED
    assert root.attributes[semconv.RUN_STOPPED_BEFORE] == semconv.STEP_LLM_CALL
    assert root.attributes[semconv.RUN_STOP_REASON] == "runaway spend"
    assert root.attributes[semconv.KILL_REASON] == "runaway spend"
    assert root.attributes[semconv.RUN_LLM_CALLS] == 1
    assert root.status.status_code is StatusCode.UNSET  # a stop is not an error of the agent
    assert [e.name for e in root.events] == []  # no exception event: nothing failed
    children = [s for s in span_exporter.get_finished_spans() if s.parent and s.parent.span_id == root.context.span_id]
    assert [s.name for s in children] == ["chat gpt-4o-mini"]
    assert "agent two_calls stopped before a llm_call (killed); its schedule goes on" in caplog.text
    # the other agents of the cycle ran as usual
    assert {s.attributes[semconv.AGENT_RUN_OUTCOME] for s in root_spans(span_exporter) if s is not root} == {semconv.OUTCOME_OK}


def test_the_next_run_of_a_killed_agent_does_not_start(world, telemetry, span_exporter):
    agent = _TwoCalls(world["kill_file"])
    transport = SimulatedLLMTransport()
    fleet = build_test_fleet(world, telemetry, transport, agents={"two_calls": agent})
    fleet.fleet.agents["two_calls"] = AgentSpec("two_calls", "tests", 0.05)
    fleet.run_cycle(world["calendar"][70])
    fleet.run_cycle(world["calendar"][71])
    fleet.shutdown()
    runs = sorted(
        (s for s in root_spans(span_exporter) if s.attributes[semconv.GEN_AI_AGENT_NAME] == "two_calls"),
        key=lambda s: s.attributes[semconv.AGENT_RUN_AS_OF],
    )
    assert [s.attributes.get(semconv.RUN_STOPPED_BEFORE) for s in runs] == [semconv.STEP_LLM_CALL, None]
    assert [s.attributes[semconv.AGENT_RUN_OUTCOME] for s in runs] == [semconv.OUTCOME_KILLED] * 2
    # one call of two_calls in all, and llm_analyst's call in each cycle
    assert transport.requests == 3


def test_checkpoint_outside_a_run_checks_nothing_and_a_stop_carries_its_step():
    checkpoint(semconv.STEP_TOOL_STEP)  # no current run: nothing to check, no error
    stop = RunStopped(semconv.OUTCOME_BUDGET_EXCEEDED, semconv.STEP_LLM_CALL, "day cost 2.00 of 2.00 USD")
    assert (stop.outcome, stop.step, stop.reason) == ("budget_exceeded", "llm_call", "day cost 2.00 of 2.00 USD")
    assert "before llm_call" in str(stop)
