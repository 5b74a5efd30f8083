"""The tool-calling agent (research_analyst) end to end: the real ``openai`` client over the simulated
model, the official instrumentation's ``chat`` spans and the tool loop's ``execute_tool`` spans, as a
user sees them in one trace. Issue 16, "A tool-calling agent"."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from agents import research_analyst
from agents.base import check_params
from otel import semconv
from services.config_error import ConfigError
from services.simulated_llm import SimulatedLLMTransport
from tests.llm_transports import ScriptedTransport, chat_completion, ok, tool_call_completion, verdict_json
from tests.research_fixtures import TWO_SYMBOL_RUN, RecordingModel, by_start, run_research


def test_one_run_is_a_trace_of_chat_and_execute_tool_children(world, telemetry, span_exporter, sequential_run_ids):
    model = RecordingModel()
    run_research(world, telemetry, model, run_ids=sequential_run_ids)

    root, *children = by_start(span_exporter)
    assert root.name == "invoke_agent research_analyst" and root.parent is None and root.kind is SpanKind.INTERNAL
    assert [s.name for s in children] == TWO_SYMBOL_RUN
    assert all(s.parent.span_id == root.context.span_id and s.context.trace_id == root.context.trace_id for s in children)
    chats = [s for s in children if s.name.startswith(semconv.OPERATION_CHAT)]
    tools = [s for s in children if s.name.startswith(semconv.OPERATION_EXECUTE_TOOL)]
    assert {s.kind for s in chats} == {SpanKind.CLIENT} and {s.kind for s in tools} == {SpanKind.INTERNAL}
    assert all(s.status.status_code is StatusCode.UNSET for s in children)
    # the call ids the model sent are the ones on the tool spans, in the order it asked
    asked = [call for answer in model.answers for call in answer["choices"][0]["message"].get("tool_calls") or ()]
    assert [s.attributes[semconv.GEN_AI_TOOL_CALL_ID] for s in tools] == [call["id"] for call in asked]
    assert len(set(s.attributes[semconv.GEN_AI_TOOL_CALL_ID] for s in tools)) == 4
    for span, call in zip(tools, asked, strict=True):
        assert dict(span.attributes) == {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: call["function"]["name"],
            semconv.GEN_AI_TOOL_TYPE: semconv.TOOL_TYPE_FUNCTION,
            semconv.GEN_AI_TOOL_CALL_ID: call["id"],
            semconv.GEN_AI_AGENT_NAME: "research_analyst",  # stamped like every span of a run
            semconv.AGENT_RUN_ID: "run-1",
        }
    for span in chats:
        assert span.attributes[semconv.GEN_AI_AGENT_NAME] == "research_analyst"
        assert span.attributes[semconv.AGENT_RUN_ID] == "run-1"
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in chats] == [("tool_calls",), ("tool_calls",), ("stop",)]
    # the run's totals are its spans' sums
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_OK
    assert root.attributes[semconv.RUN_LLM_CALLS] == 3
    assert root.attributes[semconv.RUN_TOOL_CALLS] == 4
    assert root.attributes[semconv.RUN_INPUT_TOKENS] == sum(s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for s in chats)
    assert root.attributes[semconv.RUN_OUTPUT_TOKENS] == sum(s.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] for s in chats)
    # the conversation grows call by call: each later call carries the input tokens of the earlier ones
    inputs = [s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for s in chats]
    assert inputs == sorted(inputs) and len(set(inputs)) == 3
    signals = [e for e in root.events if e.name == semconv.EVENT_ALPHA_SIGNAL]
    assert sorted(e.attributes[semconv.ALPHA_SYMBOL] for e in signals) == ["SPX", "WTI"]
    assert {e.attributes[semconv.ALPHA_TRADABLE] for e in signals} == {False}  # a shadow agent
    assert {e.attributes[semconv.ALPHA_HORIZON] for e in signals} == {5}
    # every request offered the three tools, as functions with JSON-schema parameters
    offered = [[t["function"]["name"] for t in body["tools"]] for body in model.bodies]
    assert offered == [["price_features", "recent_closes", "market_regime"]] * 3


def test_parallel_tool_calls_of_one_turn_are_answered_in_order_with_their_ids(world, telemetry, span_exporter):
    model = RecordingModel()
    run_research(world, telemetry, model)

    first = model.answers[0]["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    calls = first["message"]["tool_calls"]
    assert [(c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("function", "market_regime", {}),
        ("function", "price_features", {"symbol": "SPX"}),
        ("function", "price_features", {"symbol": "WTI"}),
    ]
    second = model.bodies[1]["messages"]
    assert second[2] == {"role": "assistant", "content": None, "tool_calls": calls}
    replies = second[3:]
    assert [(m["role"], m["tool_call_id"]) for m in replies] == [("tool", c["id"]) for c in calls]
    regime, spx, wti = (json.loads(m["content"]) for m in replies)
    assert regime["as_of"] == spx["as_of"] == world["calendar"][70].isoformat()
    assert set(regime) == {"as_of", "symbols", "regimes", "breadth"} and regime["symbols"] == 2
    assert (spx["symbol"], wti["symbol"]) == ("SPX", "WTI") and spx["momentum_60d"] > 0 > wti["momentum_60d"]
    # the one further call of the second turn: the last closes, none after the as-of date
    (closes_call,) = model.answers[1]["choices"][0]["message"]["tool_calls"]
    closes = json.loads(model.bodies[2]["messages"][-1]["content"])
    assert json.loads(closes_call["function"]["arguments"])["days"] == 5 and len(closes["closes"]) == 5
    assert closes["closes"][-1]["date"] == world["calendar"][70].isoformat()


def test_the_verdict_depends_on_the_tool_results(world, telemetry, span_exporter):
    run_research(world, telemetry, SimulatedLLMTransport())
    (root,) = [s for s in span_exporter.get_finished_spans() if s.parent is None]
    direction = {e.attributes[semconv.ALPHA_SYMBOL]: e.attributes[semconv.ALPHA_DIRECTION] for e in root.events}
    assert direction == {"SPX": "up", "WTI": "down"}  # SPX drifts up, WTI down in the test world


def _tool_errors_then_verdict() -> ScriptedTransport:
    return ScriptedTransport(
        ok(
            tool_call_completion(
                ("call_a", "fetch_news", "{}"),
                ("call_b", "price_features", '{"symbol": "SPX"'),
                ("call_c", "price_features", '{"symbol": "XYZ"}'),
                ("call_d", "recent_closes", '{"symbol": "SPX", "days": 500}'),
                ("call_e", "get news!", "{}"),
                ("call_f", "price_features", '{"symbol": "WTI"}'),
            )
        ),
        ok(chat_completion(verdict_json("SPX", "WTI"))),
    )


def test_a_tool_call_that_cannot_run_fails_its_span_and_the_model_is_told(world, telemetry, span_exporter):
    transport = _tool_errors_then_verdict()
    run_research(world, telemetry, transport)

    tools = [s for s in by_start(span_exporter) if s.name.startswith(semconv.OPERATION_EXECUTE_TOOL)]
    assert [(s.name, s.status.status_code, s.attributes.get(semconv.ERROR_TYPE)) for s in tools] == [
        ("execute_tool fetch_news", StatusCode.ERROR, "services.tool_loop.UnknownToolError"),
        ("execute_tool price_features", StatusCode.ERROR, "services.tool_loop.ToolArgumentsError"),
        ("execute_tool price_features", StatusCode.ERROR, "services.tool_loop.ToolError"),
        ("execute_tool recent_closes", StatusCode.ERROR, "services.tool_loop.ToolError"),
        ("execute_tool _OTHER", StatusCode.ERROR, "services.tool_loop.UnknownToolError"),
        ("execute_tool price_features", StatusCode.UNSET, None),
    ]
    assert tools[0].status.description == "unknown tool 'fetch_news'; the tools are market_regime, price_features, recent_closes"
    assert "XYZ" not in tools[2].status.description  # the model's values are content: never echoed
    replies = json.loads(transport.requests[1].content)["messages"][3:]
    assert [m["tool_call_id"] for m in replies] == ["call_a", "call_b", "call_c", "call_d", "call_e", "call_f"]
    results = [json.loads(m["content"]) for m in replies]
    assert [set(r) for r in results[:5]] == [{"error"}] * 5
    assert results[3]["error"] == "days must be a whole number from 1 to 60"
    assert results[5]["symbol"] == "WTI"
    (root,) = [s for s in span_exporter.get_finished_spans() if s.parent is None]
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_OK  # the loop went on
    assert root.attributes[semconv.RUN_TOOL_CALLS] == 6
    assert root.attributes[semconv.RUN_ALPHA_SIGNALS] == 2


def test_the_step_limit_ends_the_run_as_an_error_without_signals(world, telemetry, span_exporter):
    model = RecordingModel()
    run_research(world, telemetry, model, max_steps=2)

    root, *children = by_start(span_exporter)
    assert [s.name for s in children] == [
        "chat gpt-4o-mini",
        "execute_tool market_regime",
        "execute_tool price_features",
        "execute_tool price_features",
        "chat gpt-4o-mini",  # still asks for a tool: not run, no third call
    ]
    assert len(model.bodies) == 2
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_ERROR
    assert root.attributes[semconv.ERROR_TYPE] == "services.tool_loop.ToolLoopLimitError"
    assert "on call 2 of 2 (max_steps)" in root.status.description
    assert root.attributes[semconv.RUN_LLM_CALLS] == 2 and root.attributes[semconv.RUN_TOOL_CALLS] == 3
    assert [e.name for e in root.events] == [semconv.EVENT_EXCEPTION]  # no signal


def test_with_content_capture_the_tool_span_carries_arguments_and_result(world, telemetry, span_exporter, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    run_research(world, telemetry, SimulatedLLMTransport())
    spx = next(s for s in by_start(span_exporter) if s.name == "execute_tool price_features")
    assert json.loads(spx.attributes["gen_ai.tool.call.arguments"]) == {"symbol": "SPX"}
    assert json.loads(spx.attributes["gen_ai.tool.call.result"])["symbol"] == "SPX"


def test_the_agents_parameters_are_checked_at_start_up():
    assert check_params(research_analyst.PARAMS, {}, "agents.research_analyst.params") == {"horizon": 5, "max_steps": 6, "stream": False}
    for bad in ({"max_steps": 0}, {"max_steps": 21}, {"stream": "yes"}, {"stream": 1}, {"steps": 3}):
        with pytest.raises(ConfigError, match=r"agents\.research_analyst\.params"):
            check_params(research_analyst.PARAMS, bad, "agents.research_analyst.params")
