"""The live view on the real stack: the collector's spanmetrics series in Prometheus and in Jaeger's
Monitor tab agree with the report built from the collector's file for the same runs, Jaeger keeps
its traces (Badger) across a restart, and a tool-calling run reads in Jaeger as its tool loop."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scheduler
from agents import research_analyst
from agents.base import AgentContext
from otel import semconv
from otel.provider import configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper
from services.ai_analysis import AIAnalysis, build_openai_client, resolve_llm_settings
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from services.tool_loop import ToolLoop
from tests import stack
from tests.research_fixtures import TWO_SYMBOL_RUN

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
# Prometheus scrapes every second and the connector flushes every second: generous bounds for a
# loaded 2-core machine.
WAIT = 90.0


def _report(trace_file: Path, out: Path) -> dict:
    args = [sys.executable, "meta_supervisor/build_meta_report.py", "--input", str(trace_file), "--out", str(out)]
    args += ["--no-state", "--quiet", "--format", "json"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "meta_report.json").read_text())


def _root_spans(trace_file: Path) -> list[dict]:
    roots = []
    for line in stack.complete_lines(trace_file):
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                roots += [span for span in ss.get("spans", []) if span["name"].startswith("invoke_agent ")]
    return roots


def _failing_runs(endpoint: str, agent: str, runs: int) -> None:
    telemetry = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, instrument_openai=False)
    wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)

    def fails() -> None:
        raise RuntimeError("provider unavailable")

    for _ in range(runs):
        with pytest.raises(RuntimeError):
            wrapper.run(agent, fails)
    assert telemetry.shutdown(timeout_seconds=30)


def _wait_for(read, expected, what: str, running: stack.LocalStack):
    deadline = time.monotonic() + WAIT
    while True:
        got = read()
        if got == expected:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {got!r}, expected {expected!r} after {WAIT:.0f}s\n{running.log_tails()}")
        time.sleep(0.5)


def test_prometheus_and_the_monitor_tab_count_the_runs_the_report_counts(built, world, tmp_path, monkeypatch):
    with stack.LocalStack(tmp_path / "stack", with_prometheus=True) as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.otlp_http_endpoint)
        assert scheduler.main(["--replay", "--days", "6", "--config", str(world["config"])]) == 0
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        _failing_runs(running.otlp_http_endpoint, "flaky_agent", 2)
        running.wait_for_trace_lines(lambda lines: bool(lines))
        built_report = _report(running.trace_file, tmp_path / "out")
        # every run of the report, by agent and by outcome (ok / error), as the report counts them
        expected_runs = {name: agent["runs"] for name, agent in built_report["agents"].items()}
        expected_errors = {name: agent["errors"] for name, agent in built_report["agents"].items() if agent["errors"]}
        assert sum(expected_runs.values()) == len(_root_spans(running.trace_file)) > 0
        assert expected_errors == {"flaky_agent": 2}

        def runs_in_prometheus() -> dict:
            series = running.prometheus_query('sum by (gen_ai_agent_name) (traces_span_metrics_calls_total{span_name=~"invoke_agent .*"})')
            return {s["metric"]["gen_ai_agent_name"]: int(float(s["value"][1])) for s in series}

        def errors_in_prometheus() -> dict:
            failed = 'traces_span_metrics_calls_total{span_name=~"invoke_agent .*", status_code="STATUS_CODE_ERROR"}'
            series = running.prometheus_query(f"sum by (gen_ai_agent_name) ({failed})")
            return {s["metric"]["gen_ai_agent_name"]: int(float(s["value"][1])) for s in series}

        _wait_for(runs_in_prometheus, expected_runs, "runs per agent in Prometheus", running)
        assert errors_in_prometheus() == expected_errors

        # The Monitor tab: Jaeger asks Prometheus for call rates per operation of the service.
        def operations_in_jaeger() -> set:
            status, data = running.jaeger_metrics("calls", "alphatrace", spanKind="internal", groupByOperation="true")
            assert status == 200, data
            return {
                label["value"]
                for metric in data["metrics"]
                for label in metric["labels"]
                if label["name"] == "operation" and label["value"].startswith("invoke_agent ")
            }

        _wait_for(operations_in_jaeger, {f"invoke_agent {name}" for name in expected_runs}, "operations in Jaeger's Monitor tab", running)
        for kind, extra in (("latencies", {"quantile": "0.95"}), ("errors", {})):
            status, data = running.jaeger_metrics(kind, "alphatrace", spanKind="internal", **extra)
            assert status == 200 and data["metrics"], (kind, data)


def _research_run(telemetry, world) -> None:
    """One run of the tool-calling agent over the simulated model: chat and execute_tool children."""
    settings = resolve_llm_settings({"provider": "simulated"}, env={})
    llm = AIAnalysis(build_openai_client(settings), settings, PriceTable.load())
    context = AgentContext(
        as_of=world["calendar"][70],
        market=CsvMarketData(),
        universe=("SPX", "WTI"),
        llm=llm,
        tools=ToolLoop(llm, telemetry.tracer_provider),
    )
    AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting).run("research_analyst", research_analyst.Agent().run, context)


def _jaeger_spans(data: dict) -> list[dict]:
    return [span for rs in data["result"]["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]


def test_jaeger_keeps_traces_across_a_restart_and_shows_the_tool_loop(built, tmp_path, world):
    with stack.LocalStack(tmp_path / "stack") as running:
        telemetry = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": running.otlp_http_endpoint})
        wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
        wrapper.run("momentum", lambda: None)
        _research_run(telemetry, world)
        assert telemetry.shutdown(timeout_seconds=30)
        running.wait_for_trace_lines(lambda lines: len(_root_spans(running.trace_file)) == 2)
        trace_ids = {span["name"]: span["traceId"] for span in _root_spans(running.trace_file)}
        for trace_id in trace_ids.values():
            running.wait_for_jaeger_trace(trace_id, timeout=WAIT)
        running.stop_collector()  # nothing else reaches Jaeger: what it shows next comes from its disk
        running.restart_jaeger()
        data = running.wait_for_jaeger_trace(trace_ids["invoke_agent momentum"], timeout=WAIT)
        assert [span["name"] for span in _jaeger_spans(data)] == ["invoke_agent momentum"]

        # the tool loop as Jaeger's API shows it: invoke_agent -> chat -> execute_tool x N -> chat -> ...
        spans = _jaeger_spans(running.wait_for_jaeger_trace(trace_ids["invoke_agent research_analyst"], timeout=WAIT))
        (root,) = [span for span in spans if not span.get("parentSpanId")]
        children = sorted((span for span in spans if span is not root), key=lambda span: int(span["startTimeUnixNano"]))
        assert {span["parentSpanId"] for span in children} == {root["spanId"]}
        assert [span["name"] for span in children] == TWO_SYMBOL_RUN
        tool = next(span for span in children if span["name"] == "execute_tool recent_closes")
        attributes = {a["key"]: next(iter(a["value"].values())) for a in tool["attributes"]}
        assert attributes[semconv.GEN_AI_OPERATION_NAME] == semconv.OPERATION_EXECUTE_TOOL
        assert attributes[semconv.GEN_AI_TOOL_NAME] == "recent_closes"
        assert attributes[semconv.GEN_AI_AGENT_NAME] == "research_analyst"
        assert attributes[semconv.GEN_AI_TOOL_CALL_ID].startswith("call_")
