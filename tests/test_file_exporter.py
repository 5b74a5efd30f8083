"""The embedded exporter writes what the collector's file exporter writes: checked field by field
against the SDK's own OTLP protobuf encoding of the same spans, plus append and failure behaviour."""

from __future__ import annotations

import base64
import json
import logging
import math
import threading

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel.file_exporter import CollectorFileExporter
from otel.otlp_json import encode_line, encode_request
from otel.provider import configure_telemetry
from tests.conftest import SequentialIds

_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def _hex_ids(node):
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON writes ids as hex."""
    if isinstance(node, dict):
        return {k: (base64.b64decode(v).hex() if k in _ID_FIELDS else _hex_ids(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def _sample_spans(span_exporter):
    handle = configure_telemetry(
        exporter=span_exporter,
        processor_factory=SimpleSpanProcessor,
        id_generator=SequentialIds(),
        instrument_openai=False,
        resource_attributes={"deployment.environment": "test"},
    )
    tracer = handle.tracer()
    other = handle.tracer_provider.get_tracer("opentelemetry.instrumentation.genai.openai", "1.3b0")
    with tracer.start_as_current_span(
        "invoke_agent momentum",
        attributes={"gen_ai.agent.name": "momentum", "n": 3, "flag": True, "ratio": 0.25, "nums": [1, 2], "names": ("a", "b"), "zero": 0.0},
    ) as root:
        root.add_event("alpha.signal", {"alpha.symbol": "SPX", "alpha.prob_up": 0.61, "alpha.horizon": 5})
        with other.start_as_current_span(
            "chat gpt-4o-mini", kind=SpanKind.CLIENT, links=[Link(root.get_span_context(), {"why": "demo"})]
        ) as chat:
            chat.set_attribute("gen_ai.usage.input_tokens", 2**40)
            chat.set_status(Status(StatusCode.ERROR, "boom"))
        root.set_attribute("unicode", "Ünïcödé ✓ \u2028 <script>")
        root.set_status(Status(StatusCode.OK))
    handle.shutdown()
    return span_exporter.get_finished_spans()


def test_json_line_equals_the_sdk_protobuf_encoding(span_exporter):
    spans = _sample_spans(span_exporter)
    ours = json.loads(encode_line(spans))
    reference = _hex_ids(json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True))
    assert ours == reference


def test_shape_details_users_and_readers_rely_on(span_exporter):
    spans = _sample_spans(span_exporter)
    request = encode_request(spans)
    (resource_spans,) = request["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "alphatrace"}} in resource_spans["resource"]["attributes"]
    scopes = {s["scope"]["name"]: s for s in resource_spans["scopeSpans"]}
    root = scopes["alphatrace"]["spans"][0]
    chat = scopes["opentelemetry.instrumentation.genai.openai"]["spans"][0]
    assert root["traceId"] == "00000000000000000000000000000001" and root["spanId"] == "0000000000000001"
    assert "parentSpanId" not in root and chat["parentSpanId"] == root["spanId"]
    assert root["kind"] == 1 and chat["kind"] == 3
    assert isinstance(root["startTimeUnixNano"], str)
    attrs = {a["key"]: a["value"] for a in root["attributes"]}
    assert attrs["n"] == {"intValue": "3"} and attrs["flag"] == {"boolValue": True}
    assert attrs["nums"] == {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}]}}
    assert attrs["zero"] == {"doubleValue": 0.0}
    assert {a["key"]: a["value"] for a in chat["attributes"]}["gen_ai.usage.input_tokens"] == {"intValue": str(2**40)}
    assert chat["status"] == {"code": 2, "message": "boom"} and root["status"] == {"code": 1}
    assert root["flags"] == 256


def test_nan_and_lone_surrogates_still_make_valid_json(span_exporter):
    handle = configure_telemetry(exporter=span_exporter, processor_factory=SimpleSpanProcessor, instrument_openai=False)
    with handle.tracer().start_as_current_span("s", attributes={"bad": math.nan, "inf": -math.inf, "text": "a\ud800b\nc"}):
        pass
    handle.shutdown()
    line = encode_line(span_exporter.get_finished_spans())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    attrs = {a["key"]: a["value"] for a in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]}
    assert attrs["bad"] == {"doubleValue": "NaN"} and attrs["inf"] == {"doubleValue": "-Infinity"}
    assert attrs["text"] == {"stringValue": "a\ufffdb\nc"}


def test_each_batch_is_one_appended_line(tmp_path, span_exporter):
    spans = _sample_spans(span_exporter)
    target = tmp_path / "telemetry" / "traces.jsonl"
    target.parent.mkdir()
    target.write_bytes(b'{"resourceSpans":[]}\n')
    exporter = CollectorFileExporter(target)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.export(spans[:1]) == SpanExportResult.SUCCESS
    exporter.shutdown()
    lines = target.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    assert lines[0] == b'{"resourceSpans":[]}'
    assert sum(len(s["spans"]) for s in json.loads(lines[1])["resourceSpans"][0]["scopeSpans"]) == 2
    assert exporter.spans_written == 3 and exporter.lines_written == 2


def test_concurrent_exports_never_interleave(tmp_path, span_exporter):
    spans = _sample_spans(span_exporter)
    target = tmp_path / "traces.jsonl"
    exporters = [CollectorFileExporter(target) for _ in range(4)]  # separate descriptors, like separate processes
    threads = [threading.Thread(target=lambda e=e: [e.export(spans) for _ in range(50)]) for e in exporters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = target.read_bytes().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["resourceSpans"] for line in lines)


def test_unwritable_target_fails_once_in_the_log_and_recovers(tmp_path, span_exporter, caplog):
    spans = _sample_spans(span_exporter)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    exporter = CollectorFileExporter(blocked / "traces.jsonl")
    with caplog.at_level(logging.WARNING, logger="otel.file_exporter"):
        results = [exporter.export(spans) for _ in range(5)]
    assert results == [SpanExportResult.FAILURE] * 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot write spans" in errors[0].getMessage() and str(blocked) in errors[0].getMessage()
    assert exporter.spans_failed == 10
    blocked.unlink()
    with caplog.at_level(logging.WARNING, logger="otel.file_exporter"):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert "works again" in caplog.records[-1].getMessage()


def test_disk_full_is_a_failure_not_an_exception(span_exporter, caplog):
    spans = _sample_spans(span_exporter)
    exporter = CollectorFileExporter("/dev/full")  # every write fails with ENOSPC, even for root
    with caplog.at_level(logging.ERROR, logger="otel.file_exporter"):
        assert exporter.export(spans) == SpanExportResult.FAILURE
        assert exporter.export(spans) == SpanExportResult.FAILURE
    (record,) = caplog.records
    assert "No space left on device" in record.getMessage()


def test_export_after_shutdown_is_refused(tmp_path, span_exporter):
    spans = _sample_spans(span_exporter)
    exporter = CollectorFileExporter(tmp_path / "t.jsonl")
    exporter.shutdown()
    assert exporter.export(spans) == SpanExportResult.FAILURE


def test_a_half_written_last_line_is_cut_before_appending(tmp_path, span_exporter, caplog):
    spans = _sample_spans(span_exporter)
    target = tmp_path / "traces.jsonl"
    whole = encode_line(spans)
    target.write_bytes(whole + whole[: len(whole) // 2])  # a writer killed mid-line
    exporter = CollectorFileExporter(target)
    with caplog.at_level(logging.WARNING, logger="otel.file_exporter"):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert target.read_bytes() == whole + whole
    assert f"removed its {len(whole) // 2} bytes" in caplog.text


def test_a_file_that_is_only_a_fragment_is_emptied_first(tmp_path, span_exporter):
    spans = _sample_spans(span_exporter)
    target = tmp_path / "traces.jsonl"
    target.write_bytes(b'{"resourceSpans":[{"reso')
    exporter = CollectorFileExporter(target)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert target.read_bytes() == encode_line(spans)
