"""Stopping the scheduler: SIGTERM or Ctrl-C mid-run lets in-flight runs finish, flushes every span
and exits 0, however the process was started (SIGINT ignored by a background job's shell) and
whatever a run is doing when the stop comes; an unreachable collector cannot hold the exit hostage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from otel import semconv

REPO = Path(__file__).resolve().parent.parent


def _start(world, trace_file: Path, extra_env: dict[str, str] | None = None, sigint_ignored: bool = False) -> subprocess.Popen:
    """The scheduler in live mode; its output goes to ``output.log`` next to the trace file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ALPHATRACE_", "OPENAI_", "PYTEST_"))}
    env.update(
        {
            "ALPHATRACE_MARKET_DATA": str(world["tmp"] / "data"),
            "ALPHATRACE_KILL_SWITCH_FILE": str(world["kill_file"]),
            "ALPHATRACE_AGENT_STATUS_FILE": str(world["tmp"] / "agent_status.json"),
            "ALPHATRACE_TRACE_FILE": str(trace_file),
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "ALPHATRACE_ON_STALE": "last_bar",  # live on the test world's 2018 data: run on its last bar
            "PYTHONFAULTHANDLER": "1",  # a stop that hangs is sent SIGABRT: every thread's stack lands in the output
        }
    )
    env.update(extra_env or {})
    command = [sys.executable, "scheduler.py", "--config", str(world["config"])]
    if sigint_ignored:  # started the way a shell starts a background job: SIGINT ignored, then exec
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    with open(_output_file(trace_file), "wb") as output:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)


def _output_file(trace_file: Path) -> Path:
    return trace_file.parent / "output.log"


def _output(trace_file: Path) -> str:
    return _output_file(trace_file).read_text(errors="replace")


def _wait_until_started(trace_file: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """The scheduler logs "spans: ..." once SIGINT and SIGTERM stop it gracefully (start-up can take
    seconds on a loaded machine: a signal sent earlier ends it the default way)."""
    deadline = time.monotonic() + timeout
    while " spans: " not in _output(trace_file):
        assert proc.poll() is None, _output(trace_file)
        assert time.monotonic() < deadline, "the scheduler did not start in time"
        time.sleep(0.05)


def _spans(trace_file: Path) -> list[dict]:
    """The spans of the file's whole lines (while the scheduler runs, a batch can be half-written)."""
    text = trace_file.read_text()
    spans = []
    for line in text[: text.rfind("\n") + 1].splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                spans.extend(ss["spans"])
    return spans


def _wait_for_runs(trace_file: Path, proc: subprocess.Popen, minimum: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if trace_file.exists() and len(_spans(trace_file)) >= minimum:
            return
        assert proc.poll() is None, _output(trace_file)
        time.sleep(0.1)
    raise AssertionError("the scheduler produced no spans in time")


def _assert_stops_gracefully(world, tmp_path, signum, sigint_ignored: bool = False) -> None:
    trace_file = tmp_path / "traces.jsonl"
    proc = _start(world, trace_file, sigint_ignored=sigint_ignored)
    try:
        _wait_for_runs(trace_file, proc, minimum=12)
        proc.send_signal(signum)
        started = time.monotonic()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints where each thread waits
            proc.wait(timeout=30)
            raise AssertionError(f"no exit within 30 s of {signal.Signals(signum).name}:\n{_output(trace_file)}") from None
        print(f"exit {time.monotonic() - started:.1f} s after {signal.Signals(signum).name}")
    finally:
        if proc.poll() is None:
            proc.kill()
    output = _output(trace_file)
    assert proc.returncode == 0, output
    assert "letting in-flight runs finish" in output
    assert "0 dropped by the full queue, 0 still queued" in output and "0 failed to export" in output
    spans = _spans(trace_file)
    by_id = {s["spanId"]: s for s in spans}
    roots = [s for s in spans if "parentSpanId" not in s]
    chats = [s for s in spans if s["name"].startswith("chat ")]
    assert len(roots) >= 8 and chats  # 12 spans seen before the signal: two cycles of 4 runs + 2 LLM calls
    assert all(by_id[c["parentSpanId"]]["name"].startswith("invoke_agent") for c in chats)  # no orphan LLM span
    outcomes = [next(a["value"]["stringValue"] for a in r["attributes"] if a["key"] == semconv.AGENT_RUN_OUTCOME) for r in roots]
    assert set(outcomes) == {"ok"}
    ended = int(output.split("alphatrace telemetry: ")[1].split(" spans ended")[0])
    assert ended == len(spans)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_finishes_runs_and_flushes_every_span(world, tmp_path, signum):
    _assert_stops_gracefully(world, tmp_path, signum)


def test_sigint_stops_a_scheduler_started_with_sigint_ignored(world, tmp_path):
    """What a background job of a non-interactive shell (``pytest ... &``, a CI step, a supervisor
    script) inherits: the scheduler still stops on ``kill -INT`` instead of running on until killed."""
    _assert_stops_gracefully(world, tmp_path, signal.SIGINT, sigint_ignored=True)


class _HeldAgent:
    """An agent whose first run waits until the test lets it finish."""

    name = "held"

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()

    def run(self, context):
        self.running.set()
        self.release.wait(30)
        return []


def test_stopping_a_bounded_live_run_mid_run_never_deadlocks(world, telemetry, span_exporter):
    """``--cycles``: APScheduler's shutdown waits for running jobs holding its job-store lock; a run
    that ends then must not need that lock to count itself."""
    from services.fleet_config import AgentSpec
    from tests.fleet_fixtures import build_test_fleet, root_spans

    held = _HeldAgent()
    fleet = build_test_fleet(world, telemetry, agents={"held": held})
    fleet.fleet.agents["held"] = AgentSpec("held", "tests", 0.05)
    fleet.start(stop_after=1)  # the held run is its agent's last: counting it reaches the bound
    assert held.running.wait(30)
    stopper = threading.Thread(target=fleet.shutdown, daemon=True)
    stopper.start()
    pool = fleet._scheduler._executors["default"]._pool  # APScheduler's detail: shut down = waiting for runs
    deadline = time.monotonic() + 30
    while not pool._shutdown and time.monotonic() < deadline:
        time.sleep(0.01)
    held.release.set()
    stopper.join(30)
    assert not stopper.is_alive(), "the stop deadlocked with the run it was waiting for"
    assert any(s.attributes["gen_ai.agent.name"] == "held" for s in root_spans(span_exporter))


def test_a_second_signal_while_stopping_is_logged_not_raised(caplog):
    import scheduler

    stop = scheduler.StopSignals()
    stop.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)  # would raise SystemExit into the flush
        signal.raise_signal(signal.SIGINT)
    finally:
        stop.restore()
    assert caplog.text.count("while stopping: in-flight runs finish and spans flush first") == 2
    assert signal.getsignal(signal.SIGINT) != stop._on_signal  # put back


def test_unreachable_collector_does_not_block_the_exit(world, tmp_path):
    trace_file = tmp_path / "unused.jsonl"
    proc = _start(world, trace_file, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    try:
        _wait_until_started(trace_file, proc)
        time.sleep(2)  # runs happen and their spans queue up for the unreachable collector
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    output = _output(trace_file)
    assert proc.returncode == 0, output
    print(f"exit with the collector unreachable took {took:.1f} s")
    assert took < 20, f"exit took {took:.1f}s"  # bounded shutdown (10 s) plus in-flight runs
    assert "NOT fully flushed" in output or "failed to export" in output
    assert not trace_file.exists()
