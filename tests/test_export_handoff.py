"""Export keeps up with agent threads that keep the GIL busy (otel/export_handoff.py), and an agent
thread never waits on a stalled exporter for long. The mechanism is tested with a fake queue, clock
and CPU meter; the guarantee end to end with the SDK's real BatchSpanProcessor and the embedded file
exporter, on 1 and 8 threads running runs back to back (a bounded number of runs, no timing)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from alpha.emit import emit_alpha_signal
from otel import file_exporter, otlp_json
from otel.export_handoff import ExportHandoff, high_water_mark
from otel.provider import configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper

SIGNAL = {
    "symbol": "SPX",
    "direction": "up",
    "prob_up": 0.6,
    "confidence": 0.3,
    "ensemble_score_final": 0.25,
    "regime": "trend_up",
    "horizon": 5,
}


class FakeWorld:
    """A queue length, a clock and the export thread's CPU time, all set by the test."""

    def __init__(self) -> None:
        self.queued = 0
        self.now = 100.0
        self.cpu_ns: int | None = 0

    def handoff(self, **kwargs) -> ExportHandoff:
        return ExportHandoff(lambda: self.queued, 10, worker_cpu_ns=lambda: self.cpu_ns, clock=lambda: self.now, **kwargs)


def _waiting(handoff: ExportHandoff) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        handoff.run_ended()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_no_wait_while_the_queue_is_short():
    world = FakeWorld()
    handoff = world.handoff(max_wait_seconds=30)
    world.queued = 9
    handoff.run_ended()  # would hang for 30 s if it waited
    assert handoff.stats.waits == 0


def test_a_run_ending_behind_waits_until_an_export_finishes():
    world = FakeWorld()
    handoff = world.handoff(max_wait_seconds=60)
    world.queued = 10
    thread, done = _waiting(handoff)
    assert not done.wait(0.2)  # it waits for the export thread ...
    handoff.export_finished()  # ... which finishes a batch
    assert done.wait(30)
    thread.join(30)
    assert (handoff.stats.waits, handoff.stats.exports_seen, handoff.stats.stuck) == (1, 1, 0)


def test_an_export_thread_that_does_not_run_is_not_waited_for_again_soon():
    world = FakeWorld()
    handoff = world.handoff(max_wait_seconds=0.01, quiet_seconds=5, max_quiet_seconds=20)
    world.queued = 10_000
    handoff.run_ended()  # no export finishes, the export thread used no CPU: stuck
    assert (handoff.stats.waits, handoff.stats.stuck) == (1, 1)
    for _ in range(100):
        handoff.run_ended()  # quiet for 5 s: no more waits
    assert handoff.stats.waits == 1
    world.now += 5.1
    handoff.run_ended()
    assert (handoff.stats.waits, handoff.stats.stuck) == (2, 2)
    world.now += 5.1  # the second time quiet for 10 s
    handoff.run_ended()
    assert handoff.stats.waits == 2
    world.now += 5
    handoff.export_finished()  # the exporter works again: no quiet period any more
    handoff.run_ended()
    assert handoff.stats.waits == 3


def test_an_export_thread_that_runs_is_waited_for_again_at_the_next_run():
    world = FakeWorld()
    handoff = world.handoff(max_wait_seconds=0.01)
    world.queued = 10_000

    def busy_export_thread() -> int:
        world.cpu_ns += 5_000_000  # 5 ms of CPU between two readings: it runs, a batch is just long
        return world.cpu_ns

    handoff._worker_cpu_ns = busy_export_thread
    for _ in range(3):
        handoff.run_ended()
    assert (handoff.stats.waits, handoff.stats.stuck) == (3, 0)


def test_without_a_cpu_meter_a_wait_that_times_out_counts_as_stuck():
    world = FakeWorld()
    world.cpu_ns = None
    handoff = world.handoff(max_wait_seconds=0.01)
    world.queued = 10
    handoff.run_ended()
    handoff.run_ended()
    assert (handoff.stats.waits, handoff.stats.stuck) == (1, 1)


def test_the_high_water_mark_is_two_batches_but_at_most_half_the_queue():
    assert high_water_mark(16384, 512) == 1024
    assert high_water_mark(8, 2) == 4
    assert high_water_mark(512, 512) == 256
    assert high_water_mark(1, 1) == 1


# --- end to end: the SDK's BatchSpanProcessor, the embedded file exporter --------------------------


def _busy_agent(tracer):
    """A run as a busy rule-based agent makes it: a child span like an LLM call's, a short system
    call that releases the GIL (as uuid4 and the openai client do), three signals, no idle time."""

    def agent() -> None:
        with tracer.start_as_current_span("chat model", kind=SpanKind.CLIENT):
            os.urandom(16)
        emit_alpha_signal([dict(SIGNAL, symbol=s) for s in ("SPX", "IXIC", "WTI")], "busy")

    return agent


def _run_back_to_back(wrapper, agent, threads: int, runs_each: int) -> None:
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            for _ in range(runs_each):
                wrapper.run("busy", agent, as_of="2018-03-01")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)  # generous: a loaded machine; the runs themselves take a few seconds
    assert not any(w.is_alive() for w in workers), "agent threads did not finish their runs"
    assert not errors, errors


def _spans_in(path) -> int:
    return sum(
        len(scope["spans"])
        for line in path.read_bytes().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
    )


@pytest.mark.parametrize("threads", [1, 8])
def test_a_max_rate_loop_loses_no_span_with_a_cpu_bound_exporter(tmp_path, monkeypatch, threads):
    """Runs back to back while the export costs what it did in pure Python (~100 us of interpreter
    time a span): 12,000 spans through a 2,048-span queue, none lost."""
    monkeypatch.setattr(file_exporter, "encode_line", otlp_json.encode_line)  # the slow, CPU-bound encoder
    trace_file = tmp_path / "traces.jsonl"
    handle = configure_telemetry(
        trace_file=trace_file,
        instrument_openai=False,
        processor_factory=lambda exporter: BatchSpanProcessor(exporter, max_queue_size=2048, max_export_batch_size=256),
        env={},
    )
    assert handle.handoff is not None and handle.handoff.high_water == 512
    wrapper = AgentRunWrapper(handle.tracer(), accounting=handle.accounting)
    _run_back_to_back(wrapper, _busy_agent(handle.tracer()), threads, 6000 // threads)
    assert handle.shutdown(timeout_seconds=120)
    final = handle.accounting.snapshot()
    assert (final.ended, final.dropped, final.export_failed) == (12_000, 0, 0)
    assert final.exported == 12_000 == _spans_in(trace_file)


class BlockedExporter(SpanExporter):
    """An exporter stuck in its first export (a hung collector) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(300)
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


@pytest.mark.parametrize("threads", [1, 8])
def test_agent_threads_finish_their_runs_while_the_exporter_is_blocked(threads):
    exporter = BlockedExporter()
    handle = configure_telemetry(
        exporter=exporter,
        instrument_openai=False,
        processor_factory=lambda e: BatchSpanProcessor(e, max_queue_size=256, max_export_batch_size=64, schedule_delay_millis=5),
    )
    wrapper = AgentRunWrapper(handle.tracer(), accounting=handle.accounting)
    _run_back_to_back(wrapper, _busy_agent(handle.tracer()), threads, 2000 // threads)
    assert exporter.entered.is_set()
    snapshot = handle.accounting.snapshot()
    assert snapshot.ended == 4000 and snapshot.dropped > 3000  # counted, as before
    assert handle.handoff.stats.stuck >= 1  # it saw the export thread was not running, and stopped asking
    exporter.release.set()
    assert handle.shutdown(timeout_seconds=60)
