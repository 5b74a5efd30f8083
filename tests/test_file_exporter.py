"""The embedded exporter writes what the collector's file exporter writes: checked field by field
against the SDK's own OTLP protobuf encoding of the same spans, plus append and failure behaviour."""

from __future__ import annotations

import base64
import errno
import json
import logging
import math
import os
import threading

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel import semconv
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
        root.add_event(semconv.EVENT_ALPHA_SIGNAL, {semconv.ALPHA_SYMBOL: "SPX", semconv.ALPHA_PROB_UP: 0.61, semconv.ALPHA_HORIZON: 5})
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


class FullDisk:
    """The disk holding ``path`` has ``free`` bytes left: a write there is cut short at that point and
    the next one fails with ENOSPC, as the kernel does. Other descriptors write as usual."""

    def __init__(self, monkeypatch, path, free: int) -> None:
        self.path = str(path)
        self.free = free
        self._write = os.write
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") != self.path:
            return self._write(fd, data)
        if self.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._write(fd, bytes(data[: self.free]))
        self.free -= written
        return written


def test_a_full_disk_is_named_rate_limited_leaves_no_fragment_and_recovers(tmp_path, span_exporter, monkeypatch, caplog):
    spans = _sample_spans(span_exporter)
    target = tmp_path / "traces.jsonl"
    whole = encode_line(spans)
    target.write_bytes(whole)
    now = [0.0]
    exporter = CollectorFileExporter(target, clock=lambda: now[0], report_every_seconds=60)
    disk = FullDisk(monkeypatch, target, free=len(whole) // 3)  # room for a third of a batch
    with caplog.at_level(logging.INFO, logger="otel.file_exporter"):
        assert [exporter.export(spans) for _ in range(5)] == [SpanExportResult.FAILURE] * 5
        assert target.read_bytes() == whole  # each failed batch was cut back off: nothing half-written
        now[0] = 61
        assert exporter.export(spans) == SpanExportResult.FAILURE
        disk.free = 10 * len(whole)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert target.read_bytes() == whole + whole
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert "killed mid-write" not in caplog.text
    assert len(messages) == 3, messages
    (level, first), (_, again), (_, recovered) = messages
    assert level == logging.ERROR and "disk full" in first and "No space left on device" in first and "2 spans failed" in first
    assert "still cannot write" in again and "disk full" in again and "12 spans failed" in again
    assert "works again" in recovered and "12 spans failed" in recovered
    assert exporter.spans_failed == 12 and exporter.spans_written == 2


def test_a_fragment_a_failed_write_could_not_cut_is_not_blamed_on_a_killed_writer(tmp_path, span_exporter, monkeypatch, caplog):
    spans = _sample_spans(span_exporter)
    target = tmp_path / "traces.jsonl"
    exporter = CollectorFileExporter(target)
    FullDisk(monkeypatch, target, free=10)
    monkeypatch.setattr(os, "ftruncate", lambda fd, size: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with caplog.at_level(logging.INFO, logger="otel.file_exporter"):
        assert exporter.export(spans) == SpanExportResult.FAILURE
        monkeypatch.undo()
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert target.read_bytes() == encode_line(spans)
    assert "killed mid-write" not in caplog.text and "removed the 10 bytes a failed write left" in caplog.text


def test_a_fifo_trace_file_is_refused_at_once_instead_of_stalling(tmp_path, span_exporter, caplog):
    """Nobody reads the FIFO: an exporter writing into it would block once the pipe is full."""
    spans = _sample_spans(span_exporter)
    fifo = tmp_path / "traces.jsonl"
    os.mkfifo(fifo)
    exporter = CollectorFileExporter(fifo)
    results = []
    worker = threading.Thread(target=lambda: results.extend(exporter.export(spans * 2000) for _ in range(3)), daemon=True)
    with caplog.at_level(logging.WARNING, logger="otel.file_exporter"):
        worker.start()
        worker.join(30)
    assert not worker.is_alive(), "the export is stuck writing into the FIFO"
    assert results == [SpanExportResult.FAILURE] * 3
    (record,) = caplog.records
    assert "is a FIFO (named pipe), not a regular file" in record.getMessage()


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
