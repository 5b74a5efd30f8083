"""The kill switch stops a tool-calling run between two tool steps, and no further LLM request
reaches the server: against a real OpenAI-compatible HTTP server on loopback (``OPENAI_BASE_URL``),
counted on the server's side. The API key (a canary) never reaches a span or a log line, through the
tool path or through a stream failing mid-way. Issue 16, "Stopping spend, not only the next run"."""

from __future__ import annotations

import dataclasses
import json
import logging

import openai
from opentelemetry.trace import StatusCode

import scheduler
from agents import research_analyst
from otel import semconv
from otel.redaction import RedactingFilter
from services.ai_analysis import resolve_llm_settings
from services.clock import ReplayClock
from services.fleet_config import load_fleet_config
from services.kill_switch import KillSwitch
from services.market_data import CsvMarketData
from services.research_tools import TOOL_MARKET_REGIME
from tests.openai_server import OpenAIServer
from tests.research_fixtures import by_start, research_config

CANARY_KEY = "sk-proj-TOOLCANARY4f8a2c6e1b9d3f7a5c0e8b2d"
MASKED = CANARY_KEY[:8] + "*" * 24 + CANARY_KEY[-4:]


class _KilledWhileResearching(research_analyst.Agent):
    """research_analyst, but a person kills it while its first tool step runs."""

    def __init__(self, kill_file) -> None:
        self._kill_file = kill_file

    def tools(self, context, features):
        tools = super().tools(context, features)
        original = next(t for t in tools if t.name == TOOL_MARKET_REGIME)

        def regime_then_kill(arguments):
            result = original.run(arguments)
            self._kill_file.write_text(json.dumps({"research_analyst": {"reason": "runaway spend", "by": "alice", "at": ""}}))
            return result

        return [dataclasses.replace(t, run=regime_then_kill) if t is original else t for t in tools]


def _run_against(server, world, telemetry, monkeypatch, caplog, agent=None, **params):
    """One cycle of research_analyst with the real client pointed at ``server`` by the environment."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    fleet = load_fleet_config(research_config(world, provider="auto", **params))
    settings = resolve_llm_settings(fleet.llm)
    assert (settings.provider, settings.base_url) == ("openai", server.base_url)
    clock = ReplayClock(world["calendar"][70])
    built = scheduler.build_fleet(fleet, telemetry, clock, CsvMarketData(), KillSwitch(), settings)
    if agent is not None:
        built.agents["research_analyst"] = agent
    caplog.handler.addFilter(RedactingFilter())  # as the scheduler's main() installs on its handlers
    with caplog.at_level(logging.INFO):
        built.run_cycle(world["calendar"][70])
        built.shutdown()


def _every_text(span_exporter, caplog) -> str:
    parts = [caplog.text]
    for span in span_exporter.get_finished_spans():
        parts += [span.name, str(span.status.description), *(f"{k}={v}" for k, v in span.attributes.items())]
        parts += [f"{e.name}:{k}={v}" for e in span.events for k, v in e.attributes.items()]
    return "\n".join(parts)


def test_a_kill_between_two_tool_steps_stops_the_run_before_any_further_llm_request(world, telemetry, span_exporter, monkeypatch, caplog):
    with OpenAIServer() as server:
        _run_against(server, world, telemetry, monkeypatch, caplog, agent=_KilledWhileResearching(world["kill_file"]))
        assert server.requests == 1  # the first call; its three tool calls asked, one run, then the kill
        assert server.authorizations == [f"Bearer {CANARY_KEY}"]

    root, *children = by_start(span_exporter)
    assert [s.name for s in children] == ["chat gpt-4o-mini", "execute_tool market_regime"]
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_KILLED
    assert root.attributes[semconv.RUN_STOPPED_BEFORE] == semconv.STEP_TOOL_STEP
    assert root.attributes[semconv.RUN_STOP_REASON] == root.attributes[semconv.KILL_REASON] == "runaway spend"
    assert (root.attributes[semconv.RUN_LLM_CALLS], root.attributes[semconv.RUN_TOOL_CALLS]) == (1, 1)
    assert root.attributes[semconv.RUN_COST_USD] > 0  # a real provider's model: priced from the table
    assert root.status.status_code is StatusCode.UNSET
    assert [e.name for e in root.events] == []  # no signal, no exception
    assert "agent research_analyst stopped before a tool_step (killed)" in caplog.text
    text = _every_text(span_exporter, caplog)
    assert CANARY_KEY not in text and MASKED not in text and CANARY_KEY[-10:] not in text


def test_a_full_run_through_the_server_and_a_stream_failing_mid_way_leak_no_key(world, telemetry, span_exporter, monkeypatch, caplog):
    with OpenAIServer() as server:
        _run_against(server, world, telemetry, monkeypatch, caplog, stream=True)
        assert server.requests == 3
    root = by_start(span_exporter)[0]
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_OK and root.attributes[semconv.RUN_TOOL_CALLS] == 4
    assert CANARY_KEY not in _every_text(span_exporter, caplog)

    span_exporter.clear()
    caplog.clear()
    failure = f"Incorrect API key provided: {MASKED} ({CANARY_KEY})"
    with OpenAIServer(break_streams_after=3, stream_error=failure) as server:
        _run_against(server, world, telemetry, monkeypatch, caplog, stream=True)
        assert server.requests == 1  # not retried: the stream had started
    root, chat = by_start(span_exporter)
    assert chat.status.status_code is StatusCode.ERROR and chat.attributes[semconv.ERROR_TYPE] == "openai.APIError"
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_ERROR
    assert root.attributes[semconv.ERROR_TYPE] == f"openai.{openai.APIError.__name__}"
    assert "agent research_analyst failed" in caplog.text
    text = _every_text(span_exporter, caplog)
    # capture off (the default): the server's streamed error is withheld like an error body, its size said
    assert "streamed error" in text and "is withheld: content capture is off" in text
    assert "Incorrect API key provided" not in text and CANARY_KEY not in text and MASKED not in text

    # capture on: the failure's text is visible, the key in it is not
    span_exporter.clear()
    caplog.clear()
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    with OpenAIServer(break_streams_after=3, stream_error=failure) as server:
        _run_against(server, world, telemetry, monkeypatch, caplog, stream=True)
    text = _every_text(span_exporter, caplog)
    assert "Incorrect API key provided" in text  # the failure is visible...
    assert CANARY_KEY not in text and MASKED not in text and CANARY_KEY[-10:] not in text  # ...the key is not
