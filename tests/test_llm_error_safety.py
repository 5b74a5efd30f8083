"""Hostile LLM answers through the real ``openai`` client: an error body echoing the API key (whole, in
OpenAI's masked form, as a Bearer header) and the prompt, a connection error carrying the key, an
unrequested SSE stream, an unusable verdict. None of the key's forms, and with content capture off
no prompt or completion text, may reach the spans, the log, the trace file or the report built
from it; the LLM span and the run still say clearly what failed."""

from __future__ import annotations

import json
import logging
from io import StringIO
from pathlib import Path

import httpx2
import openai
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from meta_supervisor.cli.report import main as build_report
from otel import semconv
from otel.file_exporter import CollectorFileExporter
from otel.provider import configure_telemetry
from otel.redaction import install_log_redaction
from services.agent_run_wrapper import AgentRunWrapper
from services.ai_analysis import AIAnalysis, LLMSettings, LLMVerdictError, build_openai_client
from services.llm_http import UnrequestedStreamError
from services.pricing import PriceTable
from tests.llm_transports import ScriptedTransport, chat_completion, ok

# Two canaries: an OpenAI-style key (also caught by the generic sk- pattern) and a gateway key caught
# only because it is the configured one.
SK_KEY = "sk-proj-CANARYq7Lx2Vb9Tn4Rm8Kc1Wd6Hs3Jf5Gz0Py"
GATEWAY_KEY = "gw_live_CANARYe4Na8Qv2Xt6Bm1Lr9Dk3Sj7Fh5"
FEATURE_CANARY = "CANARY-REGIME-5521"
COMPLETION_CANARY = "CANARY-ANSWER-0913"
FEATURES = {"SPX": {"momentum_20d": 0.02, "momentum_60d": 0.05, "zscore_20d": 1.1, "regime": FEATURE_CANARY}}
STATUSES = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    429: openai.RateLimitError,
    500: openai.InternalServerError,
}


def masked_forms(key: str) -> list[str]:
    """How providers and dashboards show a key: OpenAI's first 8 + last 4, the short dashboard form."""
    return [key[:8] + "*" * 24 + key[-4:], key[:3] + "..." + key[-4:], key[:12]]


def forbidden(key: str) -> list[str]:
    content = [FEATURE_CANARY, "momentum_60d", COMPLETION_CANARY, "cautious quantitative"]
    return [key, *masked_forms(key), f"Bearer {key[:6]}", key[-10:], *content]


def echoing_server(key: str, status: int):
    """What real servers do on errors: echo the key (several forms) and the request."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        prompt = json.loads(request.content)["messages"][-1]["content"]
        message = (
            f"Incorrect API key provided: {key}. Masked: {masked_forms(key)[0]} ({masked_forms(key)[1]}). "
            f"Header was 'Authorization: Bearer {key}'. Request: {prompt}"
        )
        return httpx2.Response(
            status,
            json={"error": {"message": message, "type": "invalid_request_error", "param": prompt[:40], "code": key}},
            headers={"retry-after-ms": "1"},
        )

    return answer


class Tee(SpanExporter):
    """Every span to memory (for the assertions) and to the embedded file exporter (for the report)."""

    def __init__(self, *exporters: SpanExporter) -> None:
        self.exporters = exporters

    def export(self, spans):
        for exporter in self.exporters:
            exporter.export(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        for exporter in self.exporters:
            exporter.shutdown()


def _settings(key: str) -> LLMSettings:
    return LLMSettings(
        provider="openai", model="gpt-4o-mini", max_retries=0, timeout_seconds=5.0, base_url="https://llm.example.invalid/v1", api_key=key
    )


def _run_once(tmp_path: Path, key: str, transport, capture: str | None = None, monkeypatch=None):
    """One run of an LLM agent; returns the spans, the log text, the trace file and the raised error."""
    if capture:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", capture)
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    memory = InMemorySpanExporter()
    trace_file = tmp_path / "traces.jsonl"
    handle = configure_telemetry(exporter=Tee(memory, CollectorFileExporter(trace_file)), processor_factory=SimpleSpanProcessor)
    log = StringIO()
    logger = logging.getLogger("alphatrace.test_llm_error_safety")
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    install_log_redaction(logger)
    settings = _settings(key)
    analysis = AIAnalysis(build_openai_client(settings, transport=transport), settings, PriceTable.load())
    raised = None
    try:
        AgentRunWrapper(handle.tracer()).run("llm_analyst", analysis.analyze, FEATURES, "2018-03-01")
    except Exception as exc:  # the scheduler's layer: log it, go on
        raised = exc
        logger.exception("agent %s failed; its schedule goes on: %s", "llm_analyst", exc)
    finally:
        handle.shutdown()
        logger.removeHandler(handler)
    return memory.get_finished_spans(), log.getvalue(), trace_file, raised


def _span_text(spans) -> str:
    parts = []
    for span in spans:
        parts.append(span.name)
        parts.append(str(span.status.description))
        parts.extend(f"{k}={v}" for k, v in span.attributes.items())
        for event in span.events:
            parts.extend(f"{event.name}:{k}={v}" for k, v in event.attributes.items())
    return "\n".join(parts)


def _report_texts(trace_file: Path, out: Path) -> dict[str, str]:
    argv = ["--input", str(trace_file), "--out", str(out), "--state-dir", str(out / "state"), "--workers", "1", "--quiet"]
    assert build_report(argv) == 0
    return {str(p.relative_to(out)): p.read_bytes().decode("utf-8", errors="replace") for p in out.rglob("*") if p.is_file()}


def _assert_clean(texts: dict[str, str], words: list[str]) -> None:
    for name, text in texts.items():
        for word in words:
            assert word not in text, f"{word!r} leaked into {name}"


@pytest.mark.parametrize("key", [SK_KEY, GATEWAY_KEY], ids=["sk-key", "gateway-key"])
@pytest.mark.parametrize("status", sorted(STATUSES))
def test_an_error_echoing_key_and_prompt_leaves_no_trace_of_either(tmp_path, key, status):
    transport = ScriptedTransport(echoing_server(key, status))
    spans, logs, trace_file, raised = _run_once(tmp_path, key, transport)

    assert isinstance(raised, STATUSES[status])
    assert transport.requests[0].headers["authorization"] == f"Bearer {key}"  # the key was really sent
    texts = {"spans": _span_text(spans), "log": logs, "trace file": trace_file.read_text(), "exception": str(raised)}
    texts.update(_report_texts(trace_file, tmp_path / "report"))
    _assert_clean(texts, forbidden(key))
    assert f"openai.{STATUSES[status].__name__}" in texts["meta_report.md"]  # the failure is in the report
    root = next(s for s in spans if s.name.startswith("invoke_agent"))
    chat = next(s for s in spans if s.name.startswith("chat"))
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == f"openai.{STATUSES[status].__name__}"
    assert chat.attributes["http.response.status_code"] == status
    assert chat.attributes["alphatrace.llm.error.body_length"] > 100
    assert f"Error code: {status} - the LLM server's error body" in chat.status.description
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "error"
    assert root.attributes["error.type"] == f"openai.{STATUSES[status].__name__}"
    assert root.attributes["http.response.status_code"] == status


@pytest.mark.parametrize("key", [SK_KEY, GATEWAY_KEY], ids=["sk-key", "gateway-key"])
def test_a_connection_error_carrying_the_key_leaves_no_trace_of_it(tmp_path, key):
    refused = httpx2.ConnectError(f"proxy refused CONNECT with 'Authorization: Bearer {key}' (key {masked_forms(key)[0]})")
    spans, logs, trace_file, raised = _run_once(tmp_path, key, ScriptedTransport(refused))

    assert isinstance(raised, openai.APIConnectionError)
    texts = {"spans": _span_text(spans), "log": logs, "trace file": trace_file.read_text()}
    texts.update(_report_texts(trace_file, tmp_path / "report"))
    _assert_clean(texts, forbidden(key))
    chat = next(s for s in spans if s.name.startswith("chat"))
    root = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert chat.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == "openai.APIConnectionError"
    assert "proxy refused CONNECT" in logs and "proxy refused CONNECT" in _span_text([root])  # the cause is kept, redacted


def test_with_content_capture_on_the_error_body_is_kept_but_never_the_key(tmp_path, monkeypatch):
    transport = ScriptedTransport(echoing_server(SK_KEY, 401))
    spans, logs, trace_file, raised = _run_once(tmp_path, SK_KEY, transport, capture="span_only", monkeypatch=monkeypatch)

    assert isinstance(raised, openai.AuthenticationError)
    chat = next(s for s in spans if s.name.startswith("chat"))
    assert "Incorrect API key provided: [REDACTED]" in chat.status.description  # the body, opted in
    assert "momentum_60d" in _span_text(spans)  # the instrumentation captures the prompt, as asked
    texts = {"spans": _span_text(spans), "log": logs, "trace file": trace_file.read_text()}
    texts.update(_report_texts(trace_file, tmp_path / "report"))
    _assert_clean(texts, [SK_KEY, *masked_forms(SK_KEY), f"Bearer {SK_KEY[:6]}", SK_KEY[-10:]])


def test_an_unrequested_sse_stream_is_a_clear_llm_error_on_the_span_and_the_run(tmp_path):
    chunk = json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": COMPLETION_CANARY}}]})
    stream = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=f"data: {chunk}\n\ndata: [DONE]\n\n".encode())
    transport = ScriptedTransport(stream)
    spans, logs, trace_file, raised = _run_once(tmp_path, SK_KEY, transport)

    assert isinstance(raised, UnrequestedStreamError) and isinstance(raised, openai.OpenAIError)
    assert len(transport.requests) == 1  # not retried
    chat = next(s for s in spans if s.name.startswith("chat"))
    root = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "services.llm_http.UnrequestedStreamError"
    assert "text/event-stream" in chat.status.description
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "error"
    assert root.attributes["error.type"] == "services.llm_http.UnrequestedStreamError"
    assert root.attributes[semconv.RUN_LLM_CALLS] == 1
    assert "AttributeError" not in logs
    _assert_clean({"spans": _span_text(spans), "log": logs, "trace file": trace_file.read_text()}, forbidden(SK_KEY))


@pytest.mark.parametrize(
    "answer",
    [
        f"I think {COMPLETION_CANARY} stocks go up",
        json.dumps({"verdict": COMPLETION_CANARY}),
        json.dumps({"signals": [{"symbol": "SPX", "direction": COMPLETION_CANARY, "prob_up": 0.5, "confidence": 0.5}]}),
        json.dumps({"signals": [{"symbol": "SPX", "direction": "up", "prob_up": COMPLETION_CANARY, "confidence": 0.5}]}),
    ],
    ids=["not-json", "no-signals", "bad-direction", "bad-probability"],
)
def test_an_unusable_verdict_names_the_problem_and_length_not_the_answer(tmp_path, answer):
    spans, logs, trace_file, raised = _run_once(tmp_path, SK_KEY, ScriptedTransport(ok(chat_completion(answer))))

    assert isinstance(raised, LLMVerdictError)
    assert COMPLETION_CANARY not in str(raised)
    assert "characters" in str(raised)
    root = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert root.attributes["error.type"] == "services.ai_analysis.LLMVerdictError"
    _assert_clean({"spans": _span_text(spans), "log": logs, "trace file": trace_file.read_text()}, forbidden(SK_KEY))
