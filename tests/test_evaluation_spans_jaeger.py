"""Forecast outcomes in Jaeger: a replayed fleet sent to the real collector (OTLP), the report built
twice from the collector's file with evaluation spans on (sent through OTLP as well), and a run's
trace opened in Jaeger: its evaluation span sits under the run span, once."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import scheduler
from meta_supervisor.cli import report as report_cli
from otel import semconv
from tests import stack

pytestmark = pytest.mark.integration
WAIT = 90.0  # generous on a loaded 2-core machine


def _file_spans(trace_file) -> list[dict]:
    return [
        span
        for line in stack.complete_lines(trace_file)
        for rs in json.loads(line).get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
        for span in ss.get("spans", [])
    ]


def _jaeger_spans(data: dict) -> list[dict]:
    return [span for rs in data["result"]["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]


def test_an_evaluation_span_shows_under_its_run_in_jaeger_once(built, world, tmp_path, monkeypatch):
    with stack.LocalStack(tmp_path / "stack") as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.otlp_http_endpoint)
        assert scheduler.main(["--replay", "--days", "3", "--config", str(world["config"])]) == 0
        running.wait_for_trace_lines(lambda lines: any(s["name"].startswith("invoke_agent ") for s in _file_spans(running.trace_file)))
        args = ["--input", str(running.trace_file), "--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / "out")]
        args += ["--quiet", "--format", "json", "--fleet-config", str(world["config"]), "--evaluation-spans"]
        assert report_cli.main(args) == 0
        assert report_cli.main(args) == 0  # again: nothing new to say

        def evaluations() -> list[dict]:
            return [s for s in _file_spans(running.trace_file) if s["name"] == semconv.SPAN_EVALUATION]

        stack.wait_until(lambda: evaluations(), timeout=WAIT, what="evaluation spans in the collector's file")
        roots = {(s["traceId"], s["spanId"]): s for s in _file_spans(running.trace_file) if s["name"].startswith("invoke_agent ")}
        per_run = Counter((s["traceId"], s["parentSpanId"]) for s in evaluations())
        assert set(per_run) <= set(roots) and set(per_run.values()) == {1}
        trace_id, run_span_id = min(per_run)

        def has_evaluation(data: dict) -> bool:
            return any(span["name"] == semconv.SPAN_EVALUATION for span in _jaeger_spans(data))

        spans = _jaeger_spans(running.wait_for_jaeger_trace(trace_id, has_evaluation, timeout=WAIT))
        (evaluation,) = [span for span in spans if span["name"] == semconv.SPAN_EVALUATION]
        (root,) = [span for span in spans if span["name"].startswith("invoke_agent ")]
        assert root["spanId"].lower() == run_span_id and evaluation["parentSpanId"] == root["spanId"]
        events = [event for event in evaluation.get("events", []) if event["name"] == semconv.EVENT_GEN_AI_EVALUATION_RESULT]
        assert events
        labels = {a["value"]["stringValue"] for e in events for a in e["attributes"] if a["key"] == semconv.GEN_AI_EVALUATION_SCORE_LABEL}
        assert labels and labels <= set(semconv.EVALUATION_LABELS)
