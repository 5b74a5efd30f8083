"""Streamed LLM calls (``stream=True``, ``stream_options.include_usage``): the official instrumentation's
``chat`` span carries the streamed usage and ends when the stream is consumed, abandoned or fails
mid-way; the usage of the last chunk reaches the run. Issue 16, "streams its calls with usage"."""

from __future__ import annotations

import gc
import json

import httpx2
import openai
import pytest
from opentelemetry.trace import StatusCode

from otel import semconv
from services.agent_run_wrapper import AgentRunWrapper
from services.ai_analysis import AIAnalysis, LLMSettings, build_openai_client, resolve_llm_settings
from services.config_error import ConfigError
from services.pricing import PriceTable
from services.simulated_llm import SIMULATED_BASE_URL, SimulatedLLMTransport, sse_events
from tests.llm_transports import ScriptedTransport, chat_completion, verdict_json
from tests.research_fixtures import RecordingModel, by_start, run_research

MESSAGES = [{"role": "user", "content": "FEATURES_JSON:\n{}"}]
SIMULATED = LLMSettings(provider="simulated", model="gpt-4o-mini", base_url=SIMULATED_BASE_URL, api_key="simulated-no-key")
PRICED = LLMSettings(
    provider="openai", model="gpt-4o-mini", max_retries=0, base_url="https://llm.example.invalid/v1", api_key="sk-test", stream=True
)


def _events(body: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in body.decode().split("\n\n") if line.startswith("data: {")]


def _chat_spans(span_exporter):
    return [s for s in by_start(span_exporter) if s.name.startswith(semconv.OPERATION_CHAT)]


def _root(span_exporter):
    (root,) = [s for s in span_exporter.get_finished_spans() if s.parent is None]
    return root


def test_a_streamed_run_carries_the_usage_of_each_last_chunk_and_gives_the_same_verdict(world, telemetry, span_exporter):
    model = RecordingModel()
    run_research(world, telemetry, model, stream=True)
    chats = _chat_spans(span_exporter)
    root = _root(span_exporter)

    assert [body["stream"] for body in model.bodies] == [True] * 3
    assert [body["stream_options"] for body in model.bodies] == [{"include_usage": True}] * 3
    usages = [_events(body)[-1]["usage"] for body in model.streams]
    assert [_events(body)[-1]["choices"] for body in model.streams] == [[]] * 3  # the usage chunk has no choices
    assert [(s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS], s.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS]) for s in chats] == [
        (u["prompt_tokens"], u["completion_tokens"]) for u in usages
    ]
    assert all(s.attributes["gen_ai.request.stream"] is True and s.status.status_code is StatusCode.UNSET for s in chats)
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in chats] == [("tool_calls",), ("tool_calls",), ("stop",)]
    assert root.attributes[semconv.RUN_INPUT_TOKENS] == sum(u["prompt_tokens"] for u in usages)
    assert root.attributes[semconv.RUN_OUTPUT_TOKENS] == sum(u["completion_tokens"] for u in usages)
    assert root.attributes[semconv.RUN_TOOL_CALLS] == 4
    streamed = {e.attributes[semconv.ALPHA_SYMBOL]: e.attributes[semconv.ALPHA_PROB_UP] for e in root.events}

    # the same run without streaming: the same conversation, usage and verdict
    span_exporter.clear()
    run_research(world, telemetry, SimulatedLLMTransport(), stream=False)
    plain = _root(span_exporter)
    assert {e.attributes[semconv.ALPHA_SYMBOL]: e.attributes[semconv.ALPHA_PROB_UP] for e in plain.events} == streamed
    assert plain.attributes[semconv.RUN_INPUT_TOKENS] == root.attributes[semconv.RUN_INPUT_TOKENS]


def test_a_consumed_stream_ends_its_span_with_the_usage_and_the_run_counts_it_priced(telemetry, span_exporter):
    completion = chat_completion(verdict_json("SPX"), prompt_tokens=900, completion_tokens=70)
    sse = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse_events(completion, include_usage=True))
    analysis = AIAnalysis(build_openai_client(PRICED, transport=ScriptedTransport(sse)), PRICED, PriceTable.load())

    verdicts = AgentRunWrapper(telemetry.tracer()).run("llm_analyst", analysis.analyze, {"SPX": {}}, "2018-03-01")

    assert verdicts["SPX"].direction == "up"
    (chat,) = _chat_spans(span_exporter)
    root = _root(span_exporter)
    assert chat.end_time is not None and chat.status.status_code is StatusCode.UNSET
    assert (chat.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS], chat.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS]) == (900, 70)
    assert chat.end_time <= root.end_time
    expected = PriceTable.load().cost("gpt-4o-mini-2024-07-18", 900, 70, 0)
    assert expected > 0
    assert root.attributes[semconv.RUN_COST_USD] == pytest.approx(expected)
    assert (root.attributes[semconv.RUN_INPUT_TOKENS], root.attributes[semconv.RUN_UNPRICED_LLM_CALLS]) == (900, 0)


def test_a_stream_without_its_usage_chunk_counts_as_unpriced_never_free(telemetry, span_exporter):
    completion = chat_completion(verdict_json("SPX"))
    sse = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse_events(completion, include_usage=False))
    analysis = AIAnalysis(build_openai_client(PRICED, transport=ScriptedTransport(sse)), PRICED, PriceTable.load())
    AgentRunWrapper(telemetry.tracer()).run("llm_analyst", analysis.analyze, {"SPX": {}}, "2018-03-01")
    root = _root(span_exporter)
    assert (root.attributes[semconv.RUN_LLM_CALLS], root.attributes[semconv.RUN_UNPRICED_LLM_CALLS]) == (1, 1)
    assert root.attributes[semconv.RUN_COST_USD] == 0.0
    (chat,) = _chat_spans(span_exporter)
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in chat.attributes


def _open_stream():
    client = build_openai_client(SIMULATED, transport=SimulatedLLMTransport())
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})


def test_a_stream_closed_early_ends_its_span_without_usage(telemetry, span_exporter):
    def read_one_chunk_then_close():
        stream = _open_stream()
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        assert _chat_spans(span_exporter) == []  # open while the stream is
        stream.close()

    AgentRunWrapper(telemetry.tracer()).run("llm_analyst", read_one_chunk_then_close)
    (chat,) = _chat_spans(span_exporter)
    assert chat.end_time is not None and chat.end_time <= _root(span_exporter).end_time
    assert chat.status.status_code is StatusCode.UNSET  # closed by the caller: not an error
    assert chat.attributes["gen_ai.request.stream"] is True
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in chat.attributes  # the usage chunk was never read


def test_a_stream_dropped_without_closing_ends_its_span_as_abandoned(telemetry, span_exporter):
    def read_one_chunk_then_drop():
        stream = _open_stream()
        next(iter(stream))
        del stream
        gc.collect()

    AgentRunWrapper(telemetry.tracer()).run("llm_analyst", read_one_chunk_then_drop)
    (chat,) = _chat_spans(span_exporter)
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.status.description == "abandoned stream"
    assert chat.attributes[semconv.ERROR_TYPE] == "_OTHER"
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in chat.attributes


class _BreaksAfter(httpx2.SyncByteStream):
    """A response body that delivers ``head`` and then loses the connection."""

    def __init__(self, head: bytes) -> None:
        self._head = head

    def __iter__(self):
        yield self._head
        raise httpx2.ReadError("connection reset by peer")


class _InPieces(httpx2.SyncByteStream):
    """A response body delivered in pieces of ``size`` bytes, so lines are split across chunks."""

    def __init__(self, body: bytes, size: int) -> None:
        self._body, self._size = body, size

    def __iter__(self):
        for start in range(0, len(self._body), self._size):
            yield self._body[start : start + self._size]


@pytest.mark.parametrize("capture", ["off", "span_only"])
def test_an_error_sent_inside_a_stream_never_puts_the_prompt_on_a_span_unless_capture_is_on(telemetry, span_exporter, monkeypatch, capture):
    # Providers echo the request in their errors; inside a stream the SDK raises APIError with that text.
    if capture != "off":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", capture)
    events = sse_events(chat_completion(verdict_json("SPX")), include_usage=True).split(b"\n\n")
    echoed = {"error": {"message": "context too long for prompt: PROMPTCANARY momentum_20d ...", "type": "invalid_request_error"}}
    body = _InPieces(b"\n\n".join([*events[:3], b"data: " + json.dumps(echoed).encode()]) + b"\n\n", size=7)
    transport = ScriptedTransport(httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=body))
    analysis = AIAnalysis(build_openai_client(PRICED, transport=transport), PRICED, PriceTable.load())

    with pytest.raises(openai.APIError) as raised:
        AgentRunWrapper(telemetry.tracer()).run("llm_analyst", analysis.analyze, {"SPX": {}}, "2018-03-01")

    (chat,) = _chat_spans(span_exporter)
    root = _root(span_exporter)
    seen = " ".join(
        [str(raised.value), chat.status.description or "", root.status.description or ""] + [str(e.attributes) for e in root.events]
    )
    if capture == "off":
        assert "PROMPTCANARY" not in seen and "streamed error" in seen and "is withheld: content capture is off" in seen
        assert getattr(raised.value, "type", None) == "invalid_request_error"  # the identifier is kept
    else:
        assert "PROMPTCANARY" in seen  # opted in: the server's words, redacted of secrets only


@pytest.mark.parametrize("failure", ["connection lost", "error event"])
def test_a_stream_failing_mid_way_fails_its_span_and_the_run(telemetry, span_exporter, failure):
    events = sse_events(chat_completion(verdict_json("SPX")), include_usage=True).split(b"\n\n")
    if failure == "connection lost":
        body = _BreaksAfter(b"\n\n".join(events[:3]) + b"\n\n")
        expected = openai.APIConnectionError
    else:
        error = json.dumps({"error": {"message": "the upstream model failed", "type": "server_error"}}).encode()
        body = httpx2.ByteStream(b"\n\n".join([*events[:3], b"data: " + error]) + b"\n\n")
        expected = openai.APIError
    transport = ScriptedTransport(httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=body))
    analysis = AIAnalysis(build_openai_client(PRICED, transport=transport), PRICED, PriceTable.load())

    with pytest.raises(expected):
        AgentRunWrapper(telemetry.tracer()).run("llm_analyst", analysis.analyze, {"SPX": {}}, "2018-03-01")

    (chat,) = _chat_spans(span_exporter)
    root = _root(span_exporter)
    assert chat.status.status_code is StatusCode.ERROR and chat.end_time <= root.end_time
    assert chat.attributes[semconv.ERROR_TYPE] == f"openai.{expected.__name__}"
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in chat.attributes
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_ERROR
    assert root.attributes[semconv.ERROR_TYPE] == f"openai.{expected.__name__}"
    assert (root.attributes[semconv.RUN_LLM_CALLS], root.attributes[semconv.RUN_INPUT_TOKENS]) == (1, 0)  # counted, at no cost
    assert len(transport.requests) == 1  # a stream failing mid-way is not retried


def test_streaming_is_a_setting_with_an_environment_override():
    assert resolve_llm_settings({}, env={}).stream is False
    assert resolve_llm_settings({"stream": True}, env={}).stream is True
    assert resolve_llm_settings({"stream": True}, env={"ALPHATRACE_LLM_STREAM": "false"}).stream is False
    assert resolve_llm_settings({}, env={"ALPHATRACE_LLM_STREAM": " TRUE "}).stream is True
    with pytest.raises(ConfigError, match=r"llm\.stream must be true or false, got 'yes'"):
        resolve_llm_settings({"stream": "yes"}, env={})
    with pytest.raises(ConfigError, match="ALPHATRACE_LLM_STREAM='maybe' is not true or false"):
        resolve_llm_settings({}, env={"ALPHATRACE_LLM_STREAM": "maybe"})


def test_the_stream_setting_streams_the_llm_analysts_call_too(telemetry, span_exporter):
    settings = LLMSettings(**{**SIMULATED.__dict__, "stream": True})
    model = RecordingModel()
    analysis = AIAnalysis(build_openai_client(settings, transport=model), settings, PriceTable.load())
    features = {"SPX": {"momentum_20d": 0.02, "momentum_60d": 0.05, "zscore_20d": 0.3, "regime": "trend_up"}}
    verdicts = AgentRunWrapper(telemetry.tracer()).run("llm_analyst", analysis.analyze, features, "2018-03-01")
    assert model.bodies[0]["stream"] is True and len(model.streams) == 1
    # the same verdict as the answer without streaming
    plain = AIAnalysis(build_openai_client(SIMULATED), SIMULATED, PriceTable.load())
    assert verdicts == plain.analyze(features, "2018-03-01")
