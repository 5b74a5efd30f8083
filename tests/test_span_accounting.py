"""Lost spans are counted: evicted by the full batch queue, refused by the exporter, or raised on.
The counts reach the root spans, a warning and the shutdown summary."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel.provider import configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper


class GatedExporter(SpanExporter):
    """Holds every export until the gate opens, like a collector that stopped answering."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()  # an export is in progress
        self.result = result
        self.received: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.gate.wait(10)
        self.received.extend(spans)
        return self.result

    def shutdown(self) -> None:
        self.gate.set()


def _small_queue(exporter):
    return BatchSpanProcessor(exporter, max_queue_size=8, max_export_batch_size=2, schedule_delay_millis=5)


def test_queue_evictions_are_counted_and_reach_later_root_spans(caplog):
    exporter = GatedExporter()
    handle = configure_telemetry(exporter=exporter, processor_factory=_small_queue, instrument_openai=False)
    wrapper = AgentRunWrapper(handle.tracer(), accounting=handle.accounting)
    for _ in range(40):
        wrapper.run("momentum", lambda: None)
    snapshot = handle.accounting.snapshot()
    assert snapshot.ended == 40
    assert snapshot.dropped >= 40 - 8 - 2 - 2  # queue of 8, at most one batch of 2 in the exporter
    exporter.gate.set()
    with caplog.at_level(logging.INFO, logger="otel.provider"):
        assert handle.shutdown(timeout_seconds=10)
    final = handle.accounting.snapshot()
    assert final.exported == len(exporter.received)
    assert final.dropped == 40 - len(exporter.received)
    assert "dropped by the full queue" in caplog.text
    last_root = exporter.received[-1]
    assert last_root.attributes["alphatrace.telemetry.spans_dropped"] > 0


def test_refused_exports_are_counted_as_failed():
    exporter = GatedExporter(SpanExportResult.FAILURE)
    exporter.gate.set()
    handle = configure_telemetry(exporter=exporter, instrument_openai=False)
    wrapper = AgentRunWrapper(handle.tracer(), accounting=handle.accounting)
    for _ in range(5):
        wrapper.run("momentum", lambda: None)
    handle.shutdown()
    snapshot = handle.accounting.snapshot()
    assert (snapshot.ended, snapshot.exported, snapshot.export_failed, snapshot.dropped) == (5, 0, 5, 0)


class RaisingExporter(SpanExporter):
    def export(self, spans):
        raise ConnectionError("collector went away")

    def shutdown(self):
        pass


def test_an_exporter_that_raises_never_reaches_the_agent(monkeypatch, caplog):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # the forgiving path users get (pytest itself re-raises)
    handle = configure_telemetry(exporter=RaisingExporter(), instrument_openai=False)
    wrapper = AgentRunWrapper(handle.tracer(), accounting=handle.accounting)
    assert wrapper.run("momentum", lambda: "ran") == "ran"
    handle.shutdown()
    assert handle.accounting.snapshot().export_failed == 1
    assert "RaisingExporter raised while exporting 1 spans" in caplog.text


def test_warning_while_losing_is_rate_limited():
    from otel.span_accounting import SpanAccounting

    now = [0.0]
    accounting = SpanAccounting(clock=lambda: now[0], warn_every_seconds=60)
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("otel.span_accounting").addHandler(handler)
    try:
        accounting.export_finished(3, ok=False)
        accounting.warn_if_losing()
        accounting.export_finished(3, ok=False)
        accounting.warn_if_losing()  # within a minute: quiet
        now[0] = 61
        accounting.warn_if_losing()
        accounting.warn_if_losing()  # nothing new lost: quiet
    finally:
        logging.getLogger("otel.span_accounting").removeHandler(handler)
    assert len(logged) == 2
    assert "6 failed to export" in logged[1].getMessage()


class GatedFileExporter(GatedExporter):
    """The embedded collector-format file exporter behind a gate (a collector that stalls, then
    recovers): what gets through is written to the trace file the report reads."""

    def __init__(self, path) -> None:
        super().__init__()
        from otel.file_exporter import CollectorFileExporter

        self.file = CollectorFileExporter(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        super().export(spans)
        return self.file.export(spans)

    def shutdown(self) -> None:
        super().shutdown()
        self.file.shutdown()


def write_report(tmp_path, trace_file):
    """The report of trace_file, without state or alpha quality; returns its output folder."""
    from meta_supervisor.cli import report as report_cli

    out = tmp_path / "out"
    argv = ["--input", str(trace_file), "--out", str(out), "--no-state", "--quiet", "--kill-file", str(tmp_path / "k.json")]
    assert report_cli.main([*argv, "--no-alpha-quality", "--audit-log", str(tmp_path / "audit.jsonl")]) == 0
    return out


def test_losses_reach_the_meta_report(tmp_path):
    import json

    trace_file = tmp_path / "traces.jsonl"
    exporter = GatedFileExporter(trace_file)
    handle = configure_telemetry(exporter=exporter, processor_factory=_small_queue, instrument_openai=False)
    wrapper = AgentRunWrapper(handle.tracer(), accounting=handle.accounting)
    for _ in range(40):
        wrapper.run("momentum", lambda: None)
    exporter.gate.set()
    assert handle.shutdown(timeout_seconds=10)
    final = handle.accounting.snapshot()
    assert final.dropped > 20

    out = write_report(tmp_path, trace_file)
    report = json.loads((out / "meta_report.json").read_text())
    losses = report["inputs"]["telemetry_losses"]
    # a root carries the counters as they were just before it ended: the eviction its own arrival in
    # the full queue causes is on the next root (or only in the shutdown line, for the last one)
    assert final.dropped - 1 <= losses["spans_dropped"] <= final.dropped
    assert (losses["processes"], losses["spans_export_failed"]) == (1, 0)
    [process] = losses["by_process"]
    assert process["service_instance_id"] == handle.tracer_provider.resource.attributes["service.instance.id"]
    assert report["fleet"]["runs"] + losses["spans_dropped"] >= 39  # what arrived plus what is known lost
    assert any(item["kind"] == "telemetry_losses" for item in report["needs_attention"])
    markdown = (out / "meta_report.md").read_text()
    assert f"Telemetry losses (agents' SDK, before export): {losses['spans_dropped']:,} dropped" in markdown


def test_the_report_command_warns_about_losses(tmp_path, capsys, monkeypatch):
    from tests.fixtures.report.otlp_builder import Run, line, spans_of

    monkeypatch.setenv("ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS", "100000")  # the shipped table's age is not this test's warning

    trace_file = tmp_path / "traces.jsonl"
    trace_file.write_text(line(spans_of(Run("momentum", 1, losses=(4, 2))), instance="p-1"))
    write_report(tmp_path, trace_file)
    assert capsys.readouterr().err.splitlines() == [
        "warning: the agents' telemetry lost spans before export (4 dropped by a full queue, 2 failed to export, "
        "in 1 of 1 processes); the report undercounts (inputs.telemetry_losses)"
    ]


def test_a_stalled_export_is_warned_about_while_running_then_its_end(caplog):
    """A collector that stops answering (or a trace file nobody drains) loses nothing until the queue
    fills: the export in progress is what gives it away, long before shutdown."""
    from otel.span_accounting import CountingSpanExporter, SpanAccounting

    now = [0.0]
    accounting = SpanAccounting(clock=lambda: now[0], warn_every_seconds=60, stall_seconds=30, exporter_label="OTLP -> c:4318")
    exporter = GatedExporter()
    counting = CountingSpanExporter(exporter, accounting)
    exporting = threading.Thread(target=counting.export, args=([object()] * 3,), daemon=True)
    with caplog.at_level(logging.WARNING, logger="otel.span_accounting"):
        exporting.start()
        assert exporter.entered.wait(30)  # stamped at fake time 0
        now[0] = 29
        accounting.warn_if_losing()  # a run ends: not stalled yet
        now[0] = 31
        accounting.warn_if_losing()
        now[0] = 60
        accounting.warn_if_losing()  # within the interval: quiet
        now[0] = 95
        accounting.warn_if_losing()
        exporter.gate.set()
        exporting.join(10)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "OTLP -> c:4318 has been stuck in one export of 3 spans for 31 s" in messages[0]
    assert "for 95 s" in messages[1]
    assert "finished the stalled export after 95 s (exported)" in messages[2]
    assert accounting.snapshot().exported == 3


def test_the_watchdog_warns_about_a_stall_while_no_run_ends(caplog):
    exporter = GatedExporter()
    handle = configure_telemetry(
        exporter=exporter,
        processor_factory=lambda e: BatchSpanProcessor(e, schedule_delay_millis=5),
        instrument_openai=False,
        env={"ALPHATRACE_EXPORT_STALL_SECONDS": "0.2"},
    )
    with caplog.at_level(logging.WARNING, logger="otel.span_accounting"):
        with handle.tracer().start_as_current_span("one span, then silence"):
            pass
        waited = threading.Event()
        for _ in range(600):  # up to 60 s on a loaded machine
            if "GatedExporter has been stuck in one export of 1 spans" in caplog.text or waited.wait(0.1):
                break
        exporter.gate.set()
        assert handle.shutdown(timeout_seconds=10)
    assert "GatedExporter has been stuck in one export of 1 spans" in caplog.text
    assert "GatedExporter finished the stalled export" in caplog.text
