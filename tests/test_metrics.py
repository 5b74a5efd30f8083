"""Metrics beside the traces (issue 17): the official instrumentation's GenAI metrics and the agent
metrics a fleet operator watches, in memory and in the embedded metrics file, equal to what the
spans of the same runs say."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel import semconv, span_metrics
from otel.metrics import MetricsChoice, choose_metrics_export
from otel.provider import configure_telemetry
from services.config_error import ConfigError
from services.simulated_llm import SimulatedLLMTransport
from tests.conftest import SequentialIds
from tests.fleet_fixtures import build_test_fleet, root_spans


def _points(reader: InMemoryMetricReader) -> dict[str, list]:
    """Metric name -> its data points, from one collection."""
    data = reader.get_metrics_data()
    out: dict[str, list] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def _by(points, *keys) -> dict[tuple, float]:
    """Summed value (or histogram count) per tuple of attribute values."""
    out: Counter = Counter()
    for point in points:
        value = point.count if hasattr(point, "bucket_counts") else point.value
        out[tuple(point.attributes.get(k) for k in keys)] += value
    return dict(out)


@pytest.fixture
def metered(span_exporter):
    reader = InMemoryMetricReader()
    handle = configure_telemetry(
        exporter=span_exporter,
        processor_factory=SimpleSpanProcessor,
        id_generator=SequentialIds(),
        llm_simulated=True,
        metric_reader=reader,
    )
    yield handle, reader
    handle.shutdown()


def test_a_cycle_records_runs_durations_signals_and_the_instrumentations_token_usage(world, metered, span_exporter):
    telemetry, reader = metered
    world["kill_file"].write_text('["mean_reversion"]')
    fleet = build_test_fleet(world, telemetry, SimulatedLLMTransport())
    fleet.run_cycle(world["calendar"][70])
    fleet.run_cycle(world["calendar"][71])
    fleet.shutdown()
    telemetry.force_flush()
    points = _points(reader)
    roots = root_spans(span_exporter)

    expected_runs = Counter((s.attributes[semconv.GEN_AI_AGENT_NAME], s.attributes[semconv.AGENT_RUN_OUTCOME]) for s in roots)
    assert _by(points[semconv.METRIC_AGENT_RUNS], semconv.GEN_AI_AGENT_NAME, semconv.AGENT_RUN_OUTCOME) == expected_runs
    assert expected_runs[("mean_reversion", semconv.OUTCOME_KILLED)] == 2
    durations = _by(points[semconv.METRIC_INVOKE_AGENT_DURATION], semconv.GEN_AI_AGENT_NAME, semconv.GEN_AI_OPERATION_NAME)
    assert durations == {(agent, "invoke_agent"): 2 for agent in ("momentum", "mean_reversion", "llm_analyst", "ensemble")}

    signals = Counter(
        (s.attributes[semconv.GEN_AI_AGENT_NAME], e.attributes[semconv.ALPHA_DIRECTION])
        for s in roots
        for e in s.events
        if e.name == semconv.EVENT_ALPHA_SIGNAL
    )
    assert signals and _by(points[semconv.METRIC_ALPHA_SIGNALS], semconv.GEN_AI_AGENT_NAME, semconv.ALPHA_DIRECTION) == signals

    # The official instrumentation's metrics, now that it is given the meter provider.
    chats = [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert len(chats) == 2  # llm_analyst, once a cycle
    usage = _by(points["gen_ai.client.token.usage"], "gen_ai.token.type")
    assert usage == {("input",): len(chats), ("output",): len(chats)}  # one histogram point per call and type
    token_sums = Counter()
    for point in points["gen_ai.client.token.usage"]:
        token_sums[point.attributes["gen_ai.token.type"]] += point.sum
    assert token_sums["input"] == sum(s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for s in chats)
    assert _by(points["gen_ai.client.operation.duration"], "gen_ai.operation.name") == {("chat",): len(chats)}
    # the agent's own token counter agrees with the spans, per agent and type
    tokens = _by(points[semconv.METRIC_LLM_TOKENS], semconv.GEN_AI_AGENT_NAME, semconv.GEN_AI_TOKEN_TYPE)
    assert tokens == {
        ("llm_analyst", "input"): sum(s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for s in chats),
        ("llm_analyst", "output"): sum(s.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] for s in chats),
    }

    # The kill switch as a gauge per agent of the fleet.
    killed = _by(points[semconv.METRIC_KILL_SWITCH_KILLED], semconv.GEN_AI_AGENT_NAME)
    assert killed == {("ensemble",): 0, ("llm_analyst",): 0, ("mean_reversion",): 1, ("momentum",): 0}
    # The loss counters are observed (nothing lost here).
    assert [p.value for p in points[semconv.METRIC_SPANS_DROPPED]] == [0]
    assert [p.value for p in points[semconv.METRIC_SPANS_EXPORT_FAILED]] == [0]


def _root(attributes: dict, events=()) -> ReadableSpan:
    base = {semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_INVOKE_AGENT, semconv.GEN_AI_AGENT_NAME: "a"}
    return ReadableSpan(
        name="invoke_agent a", attributes={**base, **attributes}, events=events, start_time=1_000_000_000, end_time=3_500_000_000
    )


def test_cost_by_model_budget_stops_unpriced_calls_and_error_types():
    from opentelemetry.sdk.metrics import MeterProvider

    reader = InMemoryMetricReader()
    metrics = span_metrics.AgentMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    metrics.record_root(
        _root(
            {
                semconv.AGENT_RUN_OUTCOME: "ok",
                semconv.RUN_COST_USD: 0.25,
                semconv.GEN_AI_REQUEST_MODEL: "gpt-4o",
                semconv.RUN_INPUT_TOKENS: 10,
            }
        )
    )
    metrics.record_root(_root({semconv.AGENT_RUN_OUTCOME: semconv.OUTCOME_BUDGET_EXCEEDED, semconv.BUDGET_NAME: "day_cost"}))
    metrics.record_root(_root({semconv.AGENT_RUN_OUTCOME: "error", semconv.ERROR_TYPE: "TimeoutError", semconv.RUN_UNPRICED_LLM_CALLS: 2}))
    points = _points(reader)
    assert _by(points[semconv.METRIC_LLM_COST], semconv.GEN_AI_AGENT_NAME, semconv.GEN_AI_REQUEST_MODEL) == {("a", "gpt-4o"): 0.25}
    assert _by(points[semconv.METRIC_BUDGET_STOPS], semconv.BUDGET_NAME) == {("day_cost",): 1}
    assert _by(points[semconv.METRIC_LLM_UNPRICED_CALLS], semconv.GEN_AI_AGENT_NAME) == {("a",): 2}
    durations = points[semconv.METRIC_INVOKE_AGENT_DURATION]
    assert _by(durations, semconv.ERROR_TYPE) == {(None,): 2, ("TimeoutError",): 1}
    assert {p.sum for p in durations} == {2.5, 5.0}  # 2.5 s each


def test_attribute_values_are_bounded(monkeypatch):
    from opentelemetry.sdk.metrics import MeterProvider

    monkeypatch.setattr(span_metrics, "MAX_LABELS", 3)
    reader = InMemoryMetricReader()
    metrics = span_metrics.AgentMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    for i in range(6):
        metrics.record_root(_root({semconv.GEN_AI_AGENT_NAME: f"agent-{i}", semconv.AGENT_RUN_OUTCOME: "ok"}))
    runs = _by(_points(reader)[semconv.METRIC_AGENT_RUNS], semconv.GEN_AI_AGENT_NAME)
    assert runs == {("agent-0",): 1, ("agent-1",): 1, ("agent-2",): 1, (span_metrics.OTHER,): 3}


def test_a_failure_to_record_metrics_never_keeps_spans_from_the_exporter(monkeypatch, caplog):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # the forgiving path users get

    class Broken:
        def record_root(self, span):
            raise RuntimeError("bug")

    memory = InMemorySpanExporter()
    exporter = span_metrics.SpanMetricsExporter(memory, Broken())
    span = _root({semconv.AGENT_RUN_OUTCOME: "ok"})
    with caplog.at_level(logging.ERROR):
        exporter.export([span])
    assert memory.get_finished_spans() == (span,)
    assert "could not record agent metrics" in caplog.text


def test_the_embedded_default_writes_otlp_json_metrics_beside_the_trace_file(world, tmp_path):
    trace_file = tmp_path / "out" / "traces.jsonl"
    telemetry = configure_telemetry(trace_file=trace_file, llm_simulated=True, env={})
    assert telemetry.metrics.kind == "file" and telemetry.metrics.metrics_file == trace_file.parent / "metrics" / "metrics.jsonl"
    fleet = build_test_fleet(world, telemetry, SimulatedLLMTransport())
    fleet.run_cycle(world["calendar"][70])
    fleet.shutdown()
    assert telemetry.shutdown()
    lines = (tmp_path / "out" / "metrics" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # one collection, at shutdown (the interval is the SDK's 60 s)
    request = json.loads(lines[0])
    (resource,) = request["resourceMetrics"]
    assert {"key": "service.name", "value": {"stringValue": "alphatrace"}} in resource["resource"]["attributes"]
    metrics = {m["name"]: m for scope in resource["scopeMetrics"] for m in scope["metrics"]}
    runs = metrics[semconv.METRIC_AGENT_RUNS]["sum"]
    assert runs["aggregationTemporality"] == 2 and runs["isMonotonic"] is True  # cumulative, as OTLP/JSON writes enums
    assert sum(int(p["asInt"]) for p in runs["dataPoints"]) == 4  # int64 as strings, as OTLP/JSON writes them
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", semconv.METRIC_INVOKE_AGENT_DURATION} <= set(metrics)
    for exemplar in (e for m in metrics.values() for p in m.get("histogram", {}).get("dataPoints", ()) for e in p.get("exemplars", ())):
        assert len(exemplar["traceId"]) == 32 and len(exemplar["spanId"]) == 16  # hex, not base64


@pytest.mark.parametrize(
    ("env", "traces", "expected"),
    [
        ({}, "file", MetricsChoice("file", metrics_file=None)),
        ({"ALPHATRACE_METRICS_FILE": "/x/m.jsonl"}, "file", MetricsChoice("file", metrics_file="/x/m.jsonl")),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
            "otlp",
            MetricsChoice("otlp", "http/protobuf", "http://127.0.0.1:4318/v1/metrics"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:9/m", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "otlp",
            MetricsChoice("otlp", "http/protobuf", "http://c:9/m"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"},
            "otlp",
            MetricsChoice("otlp", "grpc", "http://c:4317"),
        ),
        ({"OTEL_METRICS_EXPORTER": "none"}, "file", MetricsChoice("none")),
        ({"OTEL_METRICS_EXPORTER": "console"}, "otlp", MetricsChoice("console")),
        ({}, "console", MetricsChoice("none")),
    ],
)
def test_where_metrics_go_follows_the_standard_variables_then_the_spans(tmp_path, env, traces, expected):
    choice = choose_metrics_export(traces, tmp_path / "traces.jsonl", env)
    if expected.kind == "file":
        want = expected.metrics_file or tmp_path / "metrics" / "metrics.jsonl"
        assert (choice.kind, str(choice.metrics_file)) == ("file", str(want))
    else:
        assert choice == expected


@pytest.mark.parametrize(
    "env", [{"OTEL_METRICS_EXPORTER": "prometheus"}, {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}]
)
def test_a_bad_metrics_setting_is_a_config_error(tmp_path, env):
    with pytest.raises(ConfigError):
        choose_metrics_export("file", tmp_path / "t.jsonl", env)
