"""One root span per run, with outcome, totals and errors as users see them in Jaeger."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel import semconv
from otel.run_context import get_current_run
from services.agent_run_wrapper import AgentRunWrapper


def _wrapper(telemetry, sequential_run_ids) -> AgentRunWrapper:
    return AgentRunWrapper(telemetry.tracer(), new_run_id=sequential_run_ids)


def test_ok_run_is_one_root_span_with_totals(telemetry, span_exporter, sequential_run_ids):
    def agent() -> str:
        run = get_current_run()
        first, second = {"provider": "openai", "request_model": "gpt-4o-mini"}, {"provider": "openai", "request_model": "gpt-4.1"}
        run.add_llm_usage(tokens_in=120, tokens_out=30, cost_usd=0.000036, cached_tokens_in=20, **first)
        run.add_llm_usage(tokens_in=80, tokens_out=10, cost_usd=None, **second)
        return "findings"

    result = _wrapper(telemetry, sequential_run_ids).run("momentum", agent, as_of="2018-03-01")

    assert result == "findings"
    (span,) = span_exporter.get_finished_spans()
    assert span.name == "invoke_agent momentum"
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "momentum",
        semconv.AGENT_RUN_ID: "run-1",
        semconv.AGENT_RUN_AS_OF: "2018-03-01",
        semconv.AGENT_RUN_OUTCOME: "ok",
        semconv.RUN_LLM_CALLS: 2,
        semconv.RUN_INPUT_TOKENS: 200,
        semconv.RUN_OUTPUT_TOKENS: 40,
        semconv.RUN_CACHED_INPUT_TOKENS: 20,
        semconv.RUN_COST_USD: 0.000036,
        semconv.RUN_UNPRICED_LLM_CALLS: 1,
        semconv.RUN_ALPHA_SIGNALS: 0,
        semconv.RUN_TOOL_CALLS: 0,
        # the GenAI conventions' invoke_agent attributes: the first call's provider and model, the
        # usage summed over the calls (the LLM spans carry it per call)
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        semconv.GEN_AI_USAGE_INPUT_TOKENS: 200,
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 40,
        semconv.GEN_AI_USAGE_CACHED_INPUT_TOKENS: 20,
    }


def test_a_run_that_calls_no_model_names_no_provider_model_or_usage(telemetry, span_exporter, sequential_run_ids):
    _wrapper(telemetry, sequential_run_ids).run("momentum", lambda: None, as_of="2018-03-01")

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes[semconv.RUN_LLM_CALLS] == 0
    genai_keys = (semconv.GEN_AI_PROVIDER_NAME, semconv.GEN_AI_REQUEST_MODEL, semconv.GEN_AI_USAGE_INPUT_TOKENS)
    assert [key for key in genai_keys if key in span.attributes] == []
    # the conventions advise against in-memory ids there: alphatrace has no stable agent or conversation id
    assert {"gen_ai.agent.id", "gen_ai.conversation.id"}.isdisjoint(span.attributes)


def test_failing_run_records_error_and_reraises(telemetry, span_exporter, sequential_run_ids):
    class DataGap(RuntimeError):
        pass

    def agent() -> None:
        raise DataGap("no close for WTI on 2018-03-01")

    with pytest.raises(DataGap):
        _wrapper(telemetry, sequential_run_ids).run("momentum", agent)

    (span,) = span_exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "DataGap: no close for WTI on 2018-03-01"
    assert span.attributes[semconv.AGENT_RUN_OUTCOME] == "error"
    assert span.attributes["error.type"].endswith("DataGap")
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.message"] == "no close for WTI on 2018-03-01"
    assert "Traceback" in event.attributes["exception.stacktrace"]


def test_killed_run_is_visible_with_reason_and_no_children(telemetry, span_exporter, sequential_run_ids):
    def agent() -> None:
        get_current_run().mark_killed("drawdown over 5% (alice)")

    _wrapper(telemetry, sequential_run_ids).run("llm_analyst", agent)

    (span,) = span_exporter.get_finished_spans()
    assert span.attributes[semconv.AGENT_RUN_OUTCOME] == "killed"
    assert span.attributes[semconv.KILL_REASON] == "drawdown over 5% (alice)"
    assert span.attributes[semconv.RUN_LLM_CALLS] == 0


def test_every_run_is_a_root_even_inside_another_span(telemetry, span_exporter, sequential_run_ids):
    wrapper = _wrapper(telemetry, sequential_run_ids)
    with telemetry.tracer().start_as_current_span("outer"):
        wrapper.run("momentum", lambda: None)
    by_name = {s.name: s for s in span_exporter.get_finished_spans()}
    assert by_name["invoke_agent momentum"].parent is None
    assert by_name["invoke_agent momentum"].context.trace_id != by_name["outer"].context.trace_id


def test_spans_started_inside_a_run_carry_its_agent_and_run_id(telemetry, span_exporter, sequential_run_ids):
    tracer = telemetry.tracer()

    def agent() -> None:
        with tracer.start_as_current_span("load prices"):
            with tracer.start_as_current_span("compute features"):
                pass

    _wrapper(telemetry, sequential_run_ids).run("mean_reversion", agent)
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    root = spans["invoke_agent mean_reversion"]
    assert spans["load prices"].parent.span_id == root.context.span_id
    assert spans["compute features"].parent.span_id == spans["load prices"].context.span_id
    for name in ("load prices", "compute features"):
        assert spans[name].attributes[semconv.GEN_AI_AGENT_NAME] == "mean_reversion"
        assert spans[name].attributes[semconv.AGENT_RUN_ID] == "run-1"
    # Outside a run nothing is stamped.
    with tracer.start_as_current_span("unrelated"):
        pass
    unrelated = next(s for s in span_exporter.get_finished_spans() if s.name == "unrelated")
    assert semconv.AGENT_RUN_ID not in unrelated.attributes


def test_run_context_is_cleared_after_the_run(telemetry, sequential_run_ids):
    wrapper = _wrapper(telemetry, sequential_run_ids)
    wrapper.run("momentum", lambda: None)
    with pytest.raises(ValueError):
        wrapper.run("momentum", lambda: (_ for _ in ()).throw(ValueError("x")))
    assert get_current_run() is None
