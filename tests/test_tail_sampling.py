"""Opt-in tail sampling at the collector (issue 18): every run that failed, was killed, was stopped by a
budget, or was slow is kept whole; the rest is sampled; every kept span says its file was sampled.
The real collector, built from the project's manifest, with `collector-config.yaml` as shipped."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from otel import semconv
from otel.provider import configure_telemetry
from otel.run_context import RunStopped
from services.agent_run_wrapper import AgentRunWrapper
from tests import stack

pytestmark = pytest.mark.integration

SAMPLED = {
    "ALPHATRACE_COLLECTOR_TRACE_PROCESSORS": "[memory_limiter, tail_sampling, resource/tail_sampled, batch]",
    "ALPHATRACE_TAIL_SAMPLING_DECISION_WAIT": "2s",
    "ALPHATRACE_TAIL_SAMPLING_SLOW_MS": "400",
    "ALPHATRACE_TAIL_SAMPLING_PERCENT": "0",  # none of the ordinary runs: what is kept is exactly the rest
}


def _runs(endpoint: str) -> dict[str, int]:
    """Ordinary, failing, killed mid-run, budget-stopped and slow runs, over OTLP; returns how many of each."""
    telemetry = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, instrument_openai=False)
    wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
    tracer = telemetry.tracer()

    def ordinary() -> None:
        with tracer.start_as_current_span("chat gpt-4o-mini"):
            pass

    def fails() -> None:
        raise RuntimeError("provider unavailable")

    def stopped(outcome: str):
        def run() -> None:
            ordinary()
            raise RunStopped(outcome, semconv.STEP_LLM_CALL, "stop")

        return run

    def slow() -> None:
        time.sleep(0.6)  # over the 400 ms threshold: the only timing here, and it is the input

    made = Counter()
    for name, fn, count in (
        ("ordinary", ordinary, 20),
        ("failing", fails, 2),
        ("killed", stopped(semconv.OUTCOME_KILLED), 2),
        ("budget", stopped(semconv.OUTCOME_BUDGET_EXCEEDED), 1),
        ("slow", slow, 1),
    ):
        for _ in range(count):
            try:
                wrapper.run(name, fn)
            except (RuntimeError, RunStopped):
                pass
            made[name] += 1
    assert telemetry.shutdown(timeout_seconds=30)
    return dict(made)


def _kept(trace_file) -> tuple[Counter, Counter, set]:
    """Runs per agent in the file, spans per trace, and the sampling statements of the resources."""
    runs: Counter = Counter()
    spans_per_trace: Counter = Counter()
    statements = set()
    for line in stack.complete_lines(trace_file):
        for rs in json.loads(line).get("resourceSpans", []):
            attributes = {a["key"]: a["value"].get("stringValue") for a in rs.get("resource", {}).get("attributes", [])}
            statements.add(attributes.get(semconv.RESOURCE_SAMPLING))
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    spans_per_trace[span["traceId"]] += 1
                    if span["name"].startswith("invoke_agent "):
                        runs[span["name"].removeprefix("invoke_agent ")] += 1
    return runs, spans_per_trace, statements


def test_tail_sampling_keeps_every_run_that_matters_whole_and_says_so(built, tmp_path):
    with stack.LocalStack(tmp_path / "stack", with_jaeger=False, env=SAMPLED) as running:
        made = _runs(running.otlp_http_endpoint)
        expected = {"failing": 2, "killed": 2, "budget": 1, "slow": 1}
        deadline = time.monotonic() + 90
        while True:
            runs, spans_per_trace, statements = _kept(running.trace_file)
            if runs == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert runs == expected, f"{runs}\n{running.log_tails()}"
        assert made["ordinary"] == 20  # sent, and none kept at 0 %
        # whole traces: the stopped runs' LLM spans came along with their roots
        assert sorted(spans_per_trace.values()) == [1, 1, 1, 2, 2, 2]
        assert statements == {"tail: every error, stopped or refused run and span over 400 ms; 0% of the rest"}


def test_without_the_opt_in_nothing_is_sampled_or_marked(built, tmp_path):
    with stack.LocalStack(tmp_path / "stack", with_jaeger=False) as running:
        _runs(running.otlp_http_endpoint)
        running.wait_for_trace_lines(lambda lines: _kept(running.trace_file)[0]["ordinary"] == 20, timeout=60)
        runs, _, statements = _kept(running.trace_file)
        assert runs == {"ordinary": 20, "failing": 2, "killed": 2, "budget": 1, "slow": 1}
        assert statements == {None}
