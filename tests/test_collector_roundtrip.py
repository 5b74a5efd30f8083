"""The real OpenTelemetry Collector and Jaeger, built from Go modules and run on loopback.

Spans exported over OTLP (http/protobuf and gRPC) come out of the collector's file exporter with the
same content the embedded exporter writes; Jaeger shows a run with its LLM child span and alpha
signals; a collector restart in the middle of a run loses nothing. Build: ``make stack``. In CI these
tests must run; elsewhere, without Go, they skip and say how to enable them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

import scheduler
from alpha.emit import emit_alpha_signal
from otel import semconv
from otel.otlp_json import encode_request
from otel.provider import configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper
from tests import stack
from tests.conftest import SequentialIds

pytestmark = pytest.mark.integration


def spans_by_id(requests: list[dict]) -> dict[str, dict]:
    """Flatten ExportTraceServiceRequests into span id -> span with its resource and scope, attributes
    keyed by name: what a reader sees, whatever batching grouped them into."""
    out = {}
    for request in requests:
        for rs in request.get("resourceSpans", []):
            resource = {a["key"]: a["value"] for a in rs.get("resource", {}).get("attributes", [])}
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {})
                for span in ss.get("spans", []):
                    flat = dict(span)
                    flat["attributes"] = {a["key"]: a["value"] for a in span.get("attributes", [])}
                    flat["events"] = [
                        {**e, "attributes": {a["key"]: a["value"] for a in e.get("attributes", [])}} for e in span.get("events", [])
                    ]
                    flat["resource"] = resource
                    flat["scope"] = scope
                    out[span["spanId"]] = flat
    return out


def _sample_spans(span_exporter):
    handle = configure_telemetry(
        exporter=span_exporter,
        processor_factory=SimpleSpanProcessor,
        id_generator=SequentialIds(),
        instrument_openai=False,
        llm_simulated=True,
    )
    tracer = handle.tracer()
    llm_tracer = handle.tracer_provider.get_tracer("opentelemetry.instrumentation.genai.openai", "1.3b0")
    wrapper = AgentRunWrapper(tracer, new_run_id=lambda: "run-fixed")

    def agent():
        with llm_tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as chat:
            chat.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.usage.input_tokens": 812,
                    "gen_ai.usage.output_tokens": 64,
                    "gen_ai.response.finish_reasons": ("stop",),
                    "ratio": 0.5,
                    "flag": False,
                }
            )
        emit_alpha_signal(
            {
                "symbol": "SPX",
                "direction": "up",
                "prob_up": 0.61,
                "confidence": 0.2,
                "ensemble_score_final": 0.3,
                "regime": "trend_up",
                "horizon": 5,
                "as_of": "2018-03-01",
            },
            "momentum",
        )
        emit_alpha_signal({"symbol": "<b>", "direction": "sideways"}, "momentum")

    wrapper.run("momentum", agent, as_of="2018-03-01")
    with pytest.raises(ValueError):
        wrapper.run("momentum", lambda: (_ for _ in ()).throw(ValueError("bad ünïcode \u2028 data")))
    with tracer.start_as_current_span("status ok") as span:
        span.set_status(Status(StatusCode.OK))
    handle.shutdown()
    return span_exporter.get_finished_spans()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_collector_file_output_matches_the_embedded_format(built, tmp_path, span_exporter, protocol):
    spans = _sample_spans(span_exporter)
    embedded = spans_by_id([encode_request(spans)])
    with stack.LocalStack(tmp_path, with_jaeger=False) as running:
        if protocol == "grpc":
            exporter = GrpcExporter(endpoint=running.otlp_grpc_endpoint, insecure=True)
        else:
            exporter = HttpExporter(endpoint=running.otlp_http_traces_url)
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()
        lines = running.wait_for_trace_lines(lambda ls: sum(len(spans_by_id([json.loads(x)])) for x in ls) >= len(spans))
    from_collector = spans_by_id([json.loads(line) for line in lines])
    assert from_collector.keys() == embedded.keys()
    for span_id, ours in embedded.items():
        assert from_collector[span_id] == ours, f"span {ours['name']} differs"


def _replay_through_collector(world, running, monkeypatch, days: int) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.otlp_http_endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    assert scheduler.main(["--replay", "--days", str(days), "--config", str(world["config"])]) == 0


def test_jaeger_shows_a_run_with_its_llm_child_and_alpha_signals(built, tmp_path, world, monkeypatch):
    with stack.LocalStack(tmp_path / "stack") as running:
        _replay_through_collector(world, running, monkeypatch, days=1)
        assert "alphatrace" in running.jaeger_services() or _wait(lambda: "alphatrace" in running.jaeger_services())
        status, found = running.jaeger_find_traces("alphatrace", operation_name="invoke_agent llm_analyst")
        assert status == 200, running.log_tails()
        trace_ids = {s["traceId"] for s in spans_by_id([found["result"]]).values()}
        assert len(trace_ids) == 1
        trace_id = trace_ids.pop()
        data = running.wait_for_jaeger_trace(trace_id, lambda d: len(spans_by_id([d["result"]])) >= 2)
    spans = spans_by_id([data["result"]])
    root = next(s for s in spans.values() if s["name"] == "invoke_agent llm_analyst")
    chat = next(s for s in spans.values() if s["name"].startswith("chat "))
    assert chat["parentSpanId"] == root["spanId"]
    assert chat["attributes"]["gen_ai.usage.input_tokens"]["intValue"] != "0"
    assert chat["attributes"]["gen_ai.agent.name"] == {"stringValue": "llm_analyst"}
    signals = [e for e in root["events"] if e["name"] == semconv.EVENT_ALPHA_SIGNAL]
    assert {e["attributes"][semconv.ALPHA_SYMBOL]["stringValue"] for e in signals} == {"SPX", "WTI"}
    assert root["resource"]["service.name"] == {"stringValue": "alphatrace"}


def _wait(condition, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_collector_restart_mid_run_loses_no_span(built, tmp_path):
    with stack.LocalStack(tmp_path) as running:
        handle = configure_telemetry(
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": running.otlp_http_endpoint},
            instrument_openai=False,
            processor_factory=lambda e: _fast_batches(e),
        )
        wrapper = AgentRunWrapper(handle.tracer(), accounting=handle.accounting)
        stop = threading.Event()
        errors: list[BaseException] = []

        def agent_loop():
            while not stop.is_set():
                try:
                    wrapper.run("momentum", lambda: None)
                except BaseException as exc:  # an agent must never see telemetry trouble
                    errors.append(exc)
                time.sleep(0.005)

        worker = threading.Thread(target=agent_loop)
        worker.start()
        running.wait_for_trace_lines(lambda ls: len(ls) >= 3)
        lines_before = len(running.trace_lines())
        running.restart_collector()
        time.sleep(1.0)
        stop.set()
        worker.join()
        assert handle.shutdown(timeout_seconds=30)
        snapshot = handle.accounting.snapshot()
        print(f"restart test: {snapshot.describe()}; {lines_before} lines before the restart")
        assert errors == []
        assert snapshot.lost == 0, snapshot.describe()
        file_spans = running.wait_for_trace_lines(lambda ls: len(spans_by_id([json.loads(x) for x in ls])) >= snapshot.exported, timeout=30)
        in_file = spans_by_id([json.loads(x) for x in file_spans])
        assert len(file_spans) >= lines_before  # the restart did not truncate the file
        assert len(in_file) == snapshot.ended
        sample = list(in_file)[:: max(1, len(in_file) // 15)]
        for span_id in sample:
            trace_id = in_file[span_id]["traceId"]
            running.wait_for_jaeger_trace(trace_id)  # accepted before the restart: delivered after it
    assert Counter(s["name"] for s in in_file.values()) == {"invoke_agent momentum": snapshot.ended}


def _fast_batches(exporter):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(exporter, schedule_delay_millis=50)
