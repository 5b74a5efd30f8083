"""The live view on the real stack: the collector's spanmetrics series and the SDK's own metrics in
Prometheus, and Jaeger's Monitor tab, agree with the report built from the collector's file for the
same runs, Jaeger keeps its traces (Badger) across a restart, and a tool-calling run reads in Jaeger
as its tool loop."""

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
from otel.run_context import get_current_run
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


def _spans(trace_file: Path) -> list[dict]:
    spans = []
    for line in stack.complete_lines(trace_file):
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                spans += ss.get("spans", [])
    return spans


def _root_spans(trace_file: Path) -> list[dict]:
    return [span for span in _spans(trace_file) if span["name"].startswith("invoke_agent ")]


def _failing_runs(endpoint: str, agent: str, runs: int) -> None:
    telemetry = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, instrument_openai=False)
    wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)

    def fails() -> None:
        raise RuntimeError("provider unavailable")

    for _ in range(runs):
        with pytest.raises(RuntimeError):
            wrapper.run(agent, fails)
    assert telemetry.shutdown(timeout_seconds=30)


def _priced_runs(endpoint: str, agent: str, costs: list[float]) -> None:
    """Runs whose LLM calls were priced (the simulated model never is): their cost reaches the
    ``alphatrace.llm.cost`` series, by agent and model."""
    telemetry = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, instrument_openai=False)
    wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
    for cost in costs:
        wrapper.run(agent, lambda cost=cost: get_current_run().add_llm_usage(1000, 200, cost))
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
        _priced_runs(running.otlp_http_endpoint, "priced_agent", [0.0125, 0.0075])
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

        # The SDK's own metrics (OTLP to the collector's metrics pipeline, then Prometheus): runs per
        # agent as the report counts them, and tokens per agent as the LLM spans in the file say.
        def agent_runs_in_prometheus() -> dict:
            series = running.prometheus_query("sum by (gen_ai_agent_name) (alphatrace_agent_runs_total)")
            return {s["metric"]["gen_ai_agent_name"]: int(float(s["value"][1])) for s in series}

        _wait_for(agent_runs_in_prometheus, expected_runs, "alphatrace.agent.runs per agent in Prometheus", running)
        expected_tokens: dict = {}
        for span in _spans(running.trace_file):
            attributes = {a["key"]: a["value"] for a in span.get("attributes", [])}
            if span["name"].startswith("chat "):
                agent = attributes["gen_ai.agent.name"]["stringValue"]
                for kind in ("input", "output"):
                    key = (agent, kind)
                    expected_tokens[key] = expected_tokens.get(key, 0) + int(attributes[f"gen_ai.usage.{kind}_tokens"]["intValue"])
        assert expected_tokens
        # the priced runs' usage has no chat span here (no model was called): it is on their roots
        expected_tokens.update({("priced_agent", "input"): 2000, ("priced_agent", "output"): 400})

        def tokens_in_prometheus() -> dict:
            series = running.prometheus_query('sum by (gen_ai_agent_name, gen_ai_token_type) ({__name__=~"alphatrace_llm_tokens.*"})')
            return {(s["metric"]["gen_ai_agent_name"], s["metric"]["gen_ai_token_type"]): int(float(s["value"][1])) for s in series}

        _wait_for(tokens_in_prometheus, expected_tokens, "alphatrace.llm.tokens per agent in Prometheus", running)
        expected_cost: dict = {}
        for root in _root_spans(running.trace_file):
            attributes = {a["key"]: a["value"] for a in root.get("attributes", [])}
            cost = attributes.get(semconv.RUN_COST_USD, {}).get("doubleValue", 0.0)
            if cost:
                agent = attributes[semconv.GEN_AI_AGENT_NAME]["stringValue"]
                expected_cost[agent] = round(expected_cost.get(agent, 0.0) + cost, 9)
        assert expected_cost == {"priced_agent": 0.02}

        def cost_in_prometheus() -> dict:
            series = running.prometheus_query('sum by (gen_ai_agent_name) ({__name__=~"alphatrace_llm_cost.*"})')
            return {s["metric"]["gen_ai_agent_name"]: round(float(s["value"][1]), 9) for s in series}

        _wait_for(cost_in_prometheus, expected_cost, "alphatrace.llm.cost per agent in Prometheus", running)
        instrumentation = running.prometheus_query('count({__name__=~"gen_ai_client_token_usage.*"})')
        assert instrumentation and int(float(instrumentation[0]["value"][1])) > 0  # the official instrumentation's series

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
