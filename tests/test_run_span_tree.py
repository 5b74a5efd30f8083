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
        run.add_llm_usage(tokens_in=120, tokens_out=30, cost_usd=0.000036, cached_tokens_in=20)
        run.add_llm_usage(tokens_in=80, tokens_out=10, cost_usd=None)
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
        "agent.run_id": "run-1",
        "agent.run.as_of": "2018-03-01",
        "agent.run.outcome": "ok",
        "agent.run.llm_calls": 2,
        "agent.run.input_tokens": 200,
        "agent.run.output_tokens": 40,
        "agent.run.cached_input_tokens": 20,
        "agent.run.cost_usd": 0.000036,
        "agent.run.unpriced_llm_calls": 1,
        "agent.run.alpha_signals": 0,
        "alphatrace.run.tool_calls": 0,
    }


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
    assert span.attributes["agent.run.outcome"] == "error"
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
    assert span.attributes["agent.run.outcome"] == "killed"
    assert span.attributes["agent.kill.reason"] == "drawdown over 5% (alice)"
    assert span.attributes["agent.run.llm_calls"] == 0


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
