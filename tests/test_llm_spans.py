"""LLM calls through the real openai client and the official instrumentation: child spans with
GenAI attributes, usage and cost on the run, errors and retries, and nothing secret captured."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel import semconv
from otel.run_context import get_current_run
from services.agent_run_wrapper import AgentRunWrapper
from services.ai_analysis import AIAnalysis, LLMSettings, LLMVerdictError, build_openai_client
from services.pricing import PriceTable
from services.simulated_llm import SIMULATED_BASE_URL, SimulatedLLMTransport
from tests.llm_transports import ScriptedTransport, chat_completion, error, ok, verdict_json

FAKE_KEY = "sk-proj-ALPHATRACE-FAKE-KEY-4f1c9a7e"
FEATURES = {
    "SPX": {"momentum_20d": 0.02, "momentum_60d": 0.05, "zscore_20d": 1.1, "vol_20d": 0.12, "regime": "trend_up"},
    "WTI": {"momentum_20d": -0.04, "momentum_60d": -0.09, "zscore_20d": -1.5, "vol_20d": 0.31, "regime": "trend_down"},
}


def _openai_settings(**overrides) -> LLMSettings:
    values = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "max_retries": 2,
        "timeout_seconds": 5.0,
        "base_url": "https://llm.example.invalid/v1",
        "api_key": FAKE_KEY,
    }
    values.update(overrides)
    return LLMSettings(**values)


def _analysis(transport, settings=None) -> AIAnalysis:
    settings = settings or _openai_settings()
    return AIAnalysis(build_openai_client(settings, transport=transport), settings, PriceTable.load())


def _run(telemetry, sequential_run_ids, fn):
    return AgentRunWrapper(telemetry.tracer(), new_run_id=sequential_run_ids).run("llm_analyst", fn)


def _spans(span_exporter):
    spans = span_exporter.get_finished_spans()
    return next(s for s in spans if s.name.startswith("invoke_agent")), [s for s in spans if s.name.startswith("chat")]


def test_call_is_a_child_span_with_genai_usage_and_priced_cost(telemetry, span_exporter, sequential_run_ids):
    transport = ScriptedTransport(ok(chat_completion(verdict_json("SPX", "WTI"), cached_tokens=512)))
    analysis = _analysis(transport)

    verdicts = _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))

    assert set(verdicts) == {"SPX", "WTI"} and verdicts["SPX"].prob_up == 0.64
    root, (chat,) = _spans(span_exporter)
    assert chat.name == "chat gpt-4o-mini"
    assert chat.kind is SpanKind.CLIENT
    assert chat.parent.span_id == root.context.span_id
    assert chat.context.trace_id == root.context.trace_id
    attrs = dict(chat.attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.usage.input_tokens"] == 812
    assert attrs["gen_ai.usage.output_tokens"] == 64
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 512
    assert attrs["gen_ai.agent.name"] == "llm_analyst"
    assert attrs[semconv.AGENT_RUN_ID] == "run-1"
    # 300 uncached at $0.15/M + 512 cached at $0.075/M + 64 output at $0.60/M
    expected_cost = (300 * 0.15 + 512 * 0.075 + 64 * 0.60) / 1e6
    assert root.attributes[semconv.RUN_COST_USD] == pytest.approx(expected_cost)
    assert root.attributes[semconv.RUN_LLM_CALLS] == 1
    assert root.attributes[semconv.RUN_INPUT_TOKENS] == 812
    assert root.attributes[semconv.RUN_CACHED_INPUT_TOKENS] == 512
    assert root.attributes[semconv.RUN_UNPRICED_LLM_CALLS] == 0


def test_prompt_completion_and_key_are_not_captured_by_default(telemetry, span_exporter, sequential_run_ids):
    transport = ScriptedTransport(ok(chat_completion(verdict_json("SPX", "WTI"))))
    analysis = _analysis(transport)
    _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))

    assert transport.requests[0].headers["authorization"] == f"Bearer {FAKE_KEY}"  # it was really sent
    everything = repr([(s.attributes, [e.attributes for e in s.events]) for s in span_exporter.get_finished_spans()])
    assert FAKE_KEY not in everything
    assert "momentum_60d" not in everything  # the prompt's features
    assert "cautious quantitative" not in everything  # the system prompt
    assert "trend" not in everything.replace("trend_up", "")  # the completion's rationale


def test_unknown_model_is_unpriced_not_free(telemetry, span_exporter, sequential_run_ids):
    transport = ScriptedTransport(ok(chat_completion(verdict_json("SPX"), model="acme-finance-7b")))
    analysis = _analysis(transport, _openai_settings(model="acme-finance-7b"))
    _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))
    root, _ = _spans(span_exporter)
    assert root.attributes[semconv.RUN_UNPRICED_LLM_CALLS] == 1
    assert root.attributes[semconv.RUN_COST_USD] == 0.0


def test_429_then_success_is_one_ok_span_after_a_retry(telemetry, span_exporter, sequential_run_ids):
    transport = ScriptedTransport(
        error(429, "Rate limit reached", headers={"retry-after-ms": "1"}),
        ok(chat_completion(verdict_json("SPX"))),
    )
    analysis = _analysis(transport)
    _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))
    root, (chat,) = _spans(span_exporter)
    assert len(transport.requests) == 2
    assert chat.status.status_code is not StatusCode.ERROR
    assert chat.attributes["http.response.status_code"] == 200  # the last answer's
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "ok"
    assert root.attributes[semconv.RUN_LLM_CALLS] == 1


def test_server_error_after_retries_marks_span_and_run_as_errors(telemetry, span_exporter, sequential_run_ids):
    transport = ScriptedTransport(*(error(500, "upstream overloaded", headers={"retry-after-ms": "1"}) for _ in range(2)))
    analysis = _analysis(transport, _openai_settings(max_retries=1))
    with pytest.raises(openai.InternalServerError):
        _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))
    root, (chat,) = _spans(span_exporter)
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "openai.InternalServerError"
    assert chat.parent.span_id == root.context.span_id
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "error"
    assert root.attributes["error.type"] == "openai.InternalServerError"
    assert root.attributes[semconv.RUN_LLM_CALLS] == 1  # the failed call counts, and costs nothing
    assert root.attributes[semconv.RUN_COST_USD] == 0.0


def test_timeout_is_an_error_span_and_reraised(telemetry, span_exporter, sequential_run_ids):
    transport = ScriptedTransport(httpx2.ReadTimeout("timed out"))
    analysis = _analysis(transport, _openai_settings(max_retries=0))
    with pytest.raises(openai.APITimeoutError):
        _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))
    root, (chat,) = _spans(span_exporter)
    assert chat.status.status_code is StatusCode.ERROR
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "error"


def test_unusable_verdict_fails_the_run_clearly(telemetry, span_exporter, sequential_run_ids):
    transport = ScriptedTransport(ok(chat_completion("I think stocks go up")))
    analysis = _analysis(transport)
    with pytest.raises(LLMVerdictError, match="did not answer with JSON"):
        _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))
    root, (chat,) = _spans(span_exporter)
    assert chat.status.status_code is not StatusCode.ERROR  # the call itself worked
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "error"
    assert root.attributes[semconv.RUN_LLM_CALLS] == 1


def test_simulated_model_runs_the_real_client_deterministically(telemetry, span_exporter, sequential_run_ids):
    settings = LLMSettings(provider="simulated", model="gpt-4o-mini", base_url=SIMULATED_BASE_URL, api_key="simulated-no-key")
    transport = SimulatedLLMTransport()
    analysis = AIAnalysis(build_openai_client(settings, transport=transport), settings, PriceTable.load())

    first = _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))
    second = _run(telemetry, sequential_run_ids, lambda: analysis.analyze(FEATURES, "2018-03-01"))

    assert first == second and set(first) == {"SPX", "WTI"}
    assert first["SPX"].direction == "up" and first["WTI"].direction == "down"
    assert transport.requests == 2
    roots = [s for s in span_exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
    chats = [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat")]
    assert len(chats) == 2
    assert chats[0].attributes["server.address"] == "simulated-llm.alphatrace.invalid"
    assert 100 < chats[0].attributes["gen_ai.usage.input_tokens"] < 1000
    assert all(r.attributes[semconv.RUN_COST_USD] == 0.0 and r.attributes[semconv.RUN_UNPRICED_LLM_CALLS] == 0 for r in roots)
    assert telemetry.tracer_provider.resource.attributes["alphatrace.llm.simulated"] is True


def test_content_capture_is_opt_in_with_the_instrumentations_variable(monkeypatch, span_exporter, sequential_run_ids):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel.provider import configure_telemetry

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    handle = configure_telemetry(exporter=span_exporter, processor_factory=SimpleSpanProcessor)
    try:
        transport = ScriptedTransport(ok(chat_completion(verdict_json("SPX"))))
        analysis = _analysis(transport)
        AgentRunWrapper(handle.tracer(), new_run_id=sequential_run_ids).run("llm_analyst", analysis.analyze, FEATURES, "2018-03-01")
    finally:
        handle.shutdown()
    chat = next(s for s in span_exporter.get_finished_spans() if s.name.startswith("chat"))
    captured = json.dumps({k: str(v) for k, v in chat.attributes.items()})
    assert "momentum_60d" in captured
    assert FAKE_KEY not in captured


def test_usage_reaches_the_run_when_called_from_an_agent(telemetry, sequential_run_ids):
    transport = ScriptedTransport(ok(chat_completion(verdict_json("SPX"), prompt_tokens=100, completion_tokens=10)))
    analysis = _analysis(transport)
    seen = {}

    def agent():
        analysis.analyze(FEATURES, "2018-03-01")
        run = get_current_run()
        seen.update(calls=run.llm_calls, tokens=run.tokens_in + run.tokens_out)

    _run(telemetry, sequential_run_ids, agent)
    assert seen == {"calls": 1, "tokens": 110}
