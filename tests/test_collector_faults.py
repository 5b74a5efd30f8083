"""Faults of the real collector and Jaeger while agents run: absent at start, killed, frozen, Jaeger
down. No exception ever reaches an agent, runs keep their schedule, every span is either in the
collector's file or counted as lost, and the process exits within its bound. (Latency numbers are
measured by ``bench/collector_faults.py``, not asserted here.)"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel.provider import Telemetry, configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper
from tests import stack
from tests.test_collector_roundtrip import spans_by_id

pytestmark = pytest.mark.integration


class AgentLoop:
    """Runs a trivial agent through the real wrapper every ``period`` seconds on its own thread."""

    def __init__(self, telemetry: Telemetry, period: float = 0.01) -> None:
        self._wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
        self._period = period
        self._stop = threading.Event()
        self.runs = 0
        self.errors: list[BaseException] = []
        self.gaps: list[float] = []
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                self._wrapper.run("momentum", lambda: None)
                self.runs += 1
            except BaseException as exc:
                self.errors.append(exc)
            time.sleep(self._period)
            now = time.monotonic()
            self.gaps.append(now - last)
            last = now

    def __enter__(self) -> AgentLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _telemetry(endpoint: str) -> Telemetry:
    return configure_telemetry(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        instrument_openai=False,
        processor_factory=lambda exporter: BatchSpanProcessor(exporter, schedule_delay_millis=50),
    )


def _spans_in_file(running: stack.LocalStack) -> dict[str, dict]:
    requests = []
    for path in running.trace_files():
        requests.extend(json.loads(line) for line in stack.complete_lines(path))
    return spans_by_id(requests)


def _settle(running: stack.LocalStack, expected: int, timeout: float = 30, quiet: float = 2.0) -> dict[str, dict]:
    """The file's spans once it holds ``expected`` of them, or has stopped growing for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while True:
        spans = _spans_in_file(running)
        if len(spans) != count:
            count, since = len(spans), time.monotonic()
        if count >= expected or time.monotonic() > deadline or time.monotonic() - since > quiet:
            return spans
        time.sleep(0.2)


def _exercise(running: stack.LocalStack, fault: Callable[[], None], seconds_after: float = 1.5):
    telemetry = _telemetry(running.otlp_http_endpoint)
    with AgentLoop(telemetry) as loop:
        time.sleep(0.5)
        fault()
        time.sleep(seconds_after)
    started = time.monotonic()
    telemetry.shutdown(timeout_seconds=10)
    shutdown_took = time.monotonic() - started
    snapshot = telemetry.accounting.snapshot()
    return loop, snapshot, shutdown_took


def test_collector_absent_at_start_then_appearing(built, tmp_path):
    running = stack.LocalStack(tmp_path, with_jaeger=False)
    try:
        loop, snapshot, took = _exercise(running, running.start_collector, seconds_after=3)
        in_file = _settle(running, snapshot.exported)
    finally:
        running.stop()
    assert loop.errors == [] and loop.runs > 50
    assert max(loop.gaps) < 1.0  # the schedule kept going while nothing listened
    assert took < 11
    assert snapshot.ended == snapshot.exported + snapshot.export_failed + snapshot.dropped
    assert len(in_file) == snapshot.exported
    # The OTLP exporter retried the batches made while nothing listened and delivered them.
    assert snapshot.lost == 0, snapshot.describe()


def test_collector_killed_and_restarted_mid_run(built, tmp_path):
    with stack.LocalStack(tmp_path, with_jaeger=False) as running:

        def kill_then_restart() -> None:
            running.kill_collector()
            time.sleep(1.0)
            running.start_collector()

        loop, snapshot, took = _exercise(running, kill_then_restart)
        in_file = _settle(running, snapshot.exported)
    assert loop.errors == [] and loop.runs > 50
    assert max(loop.gaps) < 1.0
    assert took < 11
    assert snapshot.ended == snapshot.exported + snapshot.export_failed + snapshot.dropped
    # SIGKILL loses what the collector held in its batch processor (at most one batch timeout's
    # worth); everything it had written stays, and nothing the app still held is lost.
    assert snapshot.lost == 0, snapshot.describe()
    print(f"SIGKILL of the collector: {snapshot.exported} spans accepted, {len(in_file)} in the file")
    assert snapshot.exported - len(in_file) <= snapshot.exported * 0.2
    assert len(in_file) > 0


def test_a_frozen_collector_delays_export_but_not_agents(built, tmp_path):
    with stack.LocalStack(tmp_path, with_jaeger=False) as running:

        def freeze_for_three_seconds() -> None:
            os.kill(running.collector_pid, signal.SIGSTOP)
            time.sleep(3)
            os.kill(running.collector_pid, signal.SIGCONT)

        loop, snapshot, _ = _exercise(running, freeze_for_three_seconds)
        in_file = _settle(running, snapshot.exported)
    assert loop.errors == []
    assert max(loop.gaps) < 1.0
    assert snapshot.lost == 0, snapshot.describe()
    assert len(in_file) == snapshot.ended


def test_jaeger_down_does_not_touch_the_file_and_catches_up(built, tmp_path):
    with stack.LocalStack(tmp_path, env={"ALPHATRACE_JAEGER_RETRY_MAX_INTERVAL": "1s"}) as running:
        running.jaeger.stop(signal.SIGKILL)
        telemetry = _telemetry(running.otlp_http_endpoint)
        wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
        for _ in range(30):
            wrapper.run("momentum", lambda: None)
        telemetry.shutdown()
        in_file = _settle(running, 30)
        assert len(in_file) == 30
        running.jaeger.start(running.startup_timeout)
        some_trace = next(iter(in_file.values()))["traceId"]
        running.wait_for_jaeger_trace(some_trace, timeout=30)  # the persistent queue delivered it


def test_spans_the_sdk_dropped_while_the_collector_was_away_show_in_the_report(built, tmp_path):
    """A queue far too small for an outage: the SDK evicts spans, the counters ride on the root spans
    that did arrive, and the meta report built from the collector's file shows the loss."""
    from meta_supervisor.cli import report as report_cli

    running = stack.LocalStack(tmp_path, with_jaeger=False)
    try:
        telemetry = configure_telemetry(
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": running.otlp_http_endpoint},
            instrument_openai=False,
            processor_factory=lambda exporter: BatchSpanProcessor(
                exporter, max_queue_size=16, max_export_batch_size=8, schedule_delay_millis=50
            ),
        )
        with AgentLoop(telemetry, period=0.005) as loop:
            time.sleep(1.0)  # nothing listens: the exporter retries its batch and the queue overflows
            running.start_collector()
            time.sleep(1.5)
        telemetry.shutdown(timeout_seconds=10)
        snapshot = telemetry.accounting.snapshot()
        in_file = _settle(running, snapshot.exported)
        files = running.trace_files()
    finally:
        running.stop()
    assert loop.errors == []
    assert snapshot.dropped > 0 and len(in_file) == snapshot.exported
    out = tmp_path / "report"
    argv = ["--out", str(out), "--no-state", "--quiet", "--no-alpha-quality", "--kill-file", str(tmp_path / "k.json")]
    argv += ["--audit-log", str(tmp_path / "audit.jsonl")]
    for path in files:
        argv += ["--input", str(path)]
    assert report_cli.main(argv) == 0
    report = json.loads((out / "meta_report.json").read_text())
    losses = report["inputs"]["telemetry_losses"]
    assert losses["processes"] == 1
    # the last root carries the count as of just before it ended (its own eviction is on no span)
    assert snapshot.dropped - 1 <= losses["spans_dropped"] <= snapshot.dropped, (losses, snapshot.describe())
    assert report["fleet"]["runs"] == len(in_file)  # the trivial agent makes one span a run
    print(f"collector away 1 s: {snapshot.ended} spans ended, {len(in_file)} in the file, report says {losses['spans_dropped']} dropped")
