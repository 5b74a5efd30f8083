"""Each forecast's outcome on its own trace: a replay of the test fleet written to a trace file as the
exporter writes it, the report built again and again (state kept, incremental, ``--full``) with
evaluation spans on, and the file read back: each (signal, horizon) outcome once, under its run span,
and the report's figures untouched by them (both readers)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter

import pytest

from alpha.evaluations import evaluation_name, outcome_label
from alpha.forward_returns import ForwardReturns
from alpha.quality import DEFAULT_HORIZONS
from meta_supervisor import native_core
from meta_supervisor.cli import report as report_cli
from meta_supervisor.supervisor import evaluation_spans
from otel import semconv
from services.market_data import CsvMarketData
from tests.fleet_fixtures import replayed_trace_file

NOW = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.UTC)


def _value(value: dict):
    (kind, raw), *_ = value.items()
    return int(raw) if kind == "intValue" else raw


def read_spans(trace_file) -> list[dict]:
    spans = []
    for line in trace_file.read_text().splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            for scope in resource_spans["scopeSpans"]:
                for span in scope["spans"]:
                    span["attrs"] = {kv["key"]: _value(kv["value"]) for kv in span.get("attributes", [])}
                    span["event_attrs"] = [
                        (e["name"], {kv["key"]: _value(kv["value"]) for kv in e.get("attributes", [])}) for e in span.get("events", [])
                    ]
                    spans.append(span)
    return spans


def outcome_keys(spans) -> list[tuple]:
    """(trace id, parent span id, symbol, as-of, horizon) of every evaluation event in the file."""
    return [
        (s["traceId"], s["parentSpanId"], a[semconv.ALPHA_SYMBOL], a[semconv.ALPHA_AS_OF], a[semconv.EVALUATION_HORIZON_DAYS])
        for s in spans
        if s["name"] == semconv.SPAN_EVALUATION
        for name, a in s["event_attrs"]
        if name == semconv.EVENT_GEN_AI_EVALUATION_RESULT
    ]


@pytest.fixture
def fleet_file(world, telemetry, span_exporter, monkeypatch):
    """Fifteen replayed days of the test fleet in a trace file, which is also where spans go."""
    trace_file = replayed_trace_file(world, telemetry, span_exporter)
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    monkeypatch.delenv(evaluation_spans.ENV_EVALUATION_SPANS, raising=False)
    return trace_file


def build(world, trace_file, *extra, now=NOW, state="state") -> int:
    args = ["--input", str(trace_file), "--out", str(world["tmp"] / "out"), "--quiet", "--fleet-config", str(world["config"])]
    if state:
        args += ["--state-dir", str(world["tmp"] / state)]
    return report_cli.main([*args, "--kill-file", str(world["kill_file"]), *extra], now=lambda: now)


def test_each_outcome_goes_out_once_across_repeated_incremental_and_full_builds(world, fleet_file):
    before = read_spans(fleet_file)
    roots = {(s["traceId"], s["spanId"]): s for s in before if s["name"].startswith("invoke_agent ")}
    early = dt.datetime.combine(world["calendar"][68], dt.time(12), dt.UTC)

    assert build(world, fleet_file, "--evaluation-spans", now=early) == 0
    first = outcome_keys(read_spans(fleet_file))
    assert first
    size = fleet_file.stat().st_size
    assert build(world, fleet_file, "--evaluation-spans", now=early) == 0
    assert fleet_file.stat().st_size == size  # nothing matured since: nothing written
    assert build(world, fleet_file, "--evaluation-spans") == 0  # later: every horizon matured
    assert build(world, fleet_file, "--evaluation-spans") == 0
    assert build(world, fleet_file, "--evaluation-spans", "--full") == 0  # a rebuild does not forget

    spans = read_spans(fleet_file)
    keys = outcome_keys(spans)
    assert len(keys) == len(set(keys)) and set(first) < set(keys)
    # exactly the signals the report scores, at every horizon (all matured by NOW), under their run span
    market = CsvMarketData()
    expected = {
        (trace, span, a[semconv.ALPHA_SYMBOL], a[semconv.ALPHA_AS_OF], h)
        for (trace, span), root in roots.items()
        for name, a in root["event_attrs"]
        if name == semconv.EVENT_ALPHA_SIGNAL
        for h in DEFAULT_HORIZONS
    }
    assert set(keys) == expected
    evaluations = [s for s in spans if s["name"] == semconv.SPAN_EVALUATION]
    # one span per run and build that found something new: two for a run part of whose outcomes the early build sent
    early_parts = Counter((trace, parent) for trace, parent, *_ in first)
    full = Counter((trace, parent) for trace, parent, *_ in keys)
    per_run = Counter((s["traceId"], s["parentSpanId"]) for s in evaluations)
    assert per_run == {run: 2 if 0 < early_parts[run] < full[run] else 1 for run in roots}
    assert 2 in per_run.values()
    returns = ForwardReturns(market)
    for span in evaluations:
        root = roots[(span["traceId"], span["parentSpanId"])]  # the run's own trace, parent the run span
        assert root["attrs"][semconv.GEN_AI_AGENT_NAME] == span["attrs"][semconv.EVALUATION_AGENT]
        assert semconv.GEN_AI_AGENT_NAME not in span["attrs"] and semconv.GEN_AI_OPERATION_NAME not in span["attrs"]
        assert span["attrs"][semconv.EVALUATION_RESULTS] == len(span["event_attrs"])
        signals = {a[semconv.ALPHA_SYMBOL]: a for name, a in root["event_attrs"] if name == semconv.EVENT_ALPHA_SIGNAL}
        for name, event in span["event_attrs"]:
            assert name == semconv.EVENT_GEN_AI_EVALUATION_RESULT
            signal = signals[event[semconv.ALPHA_SYMBOL]]
            horizon = event[semconv.EVALUATION_HORIZON_DAYS]
            result = returns.get(signal[semconv.ALPHA_SYMBOL], dt.date.fromisoformat(signal[semconv.ALPHA_AS_OF]), horizon)
            assert event[semconv.GEN_AI_EVALUATION_NAME] == evaluation_name(horizon)
            assert event[semconv.GEN_AI_EVALUATION_SCORE_VALUE] == pytest.approx(result.value, abs=1e-15)
            assert event[semconv.GEN_AI_EVALUATION_SCORE_LABEL] == outcome_label(signal[semconv.ALPHA_DIRECTION], result.value)
            assert event[semconv.ALPHA_DIRECTION] == signal[semconv.ALPHA_DIRECTION]
            assert event[semconv.EVALUATION_EXIT_DAY] == result.exit_day.isoformat()
            assert signal[semconv.ALPHA_SYMBOL] in event[semconv.GEN_AI_EVALUATION_EXPLANATION]
    labels = Counter(event[semconv.GEN_AI_EVALUATION_SCORE_LABEL] for s in evaluations for _, event in s["event_attrs"])
    assert set(labels) <= set(semconv.EVALUATION_LABELS) and labels[semconv.LABEL_HIT] and labels[semconv.LABEL_MISS]


@pytest.mark.parametrize("native", ["off", "on"])
def test_the_reader_counts_them_apart_and_the_report_is_otherwise_the_same(world, fleet_file, monkeypatch, native):
    if native == "on" and not native_core.available():
        pytest.fail("the native core is not installed (make native)")
    monkeypatch.setenv(native_core.ENV, native)
    original = world["tmp"] / "original.jsonl"
    shutil.copyfile(fleet_file, original)
    assert build(world, fleet_file, "--evaluation-spans") == 0
    added = sum(1 for s in read_spans(fleet_file) if s["name"] == semconv.SPAN_EVALUATION)
    assert added > 0

    def report_of(path) -> dict:
        assert build(world, path, "--no-state", state=None) == 0
        return json.loads((world["tmp"] / "out" / "meta_report.json").read_text())

    with_them, without = report_of(fleet_file), report_of(original)
    assert with_them["inputs"]["evaluation_spans"] == added and without["inputs"]["evaluation_spans"] == 0
    assert with_them["inputs"]["spans"] == without["inputs"]["spans"] + added
    # the hosts table counts every span read, evaluation spans too (its rows add up to inputs.spans)
    assert sum(row["spans"] for row in with_them["hosts"]) == with_them["inputs"]["spans"]
    for report in (with_them, without):
        for key in ("files", "file_details", "spans", "evaluation_spans"):
            report["inputs"].pop(key)
        for row in report["hosts"]:
            row.pop("spans")
    assert with_them == without  # runs, agents' spans, other spans, signals and every figure unchanged


def test_off_by_default_the_environment_turns_it_on_and_the_flag_wins(world, fleet_file, monkeypatch, capsys):
    size = fleet_file.stat().st_size
    assert build(world, fleet_file) == 0
    monkeypatch.setenv(evaluation_spans.ENV_EVALUATION_SPANS, "on")
    assert build(world, fleet_file, "--no-evaluation-spans") == 0
    assert fleet_file.stat().st_size == size and not (world["tmp"] / "state" / evaluation_spans.RECORD_FILE).exists()
    assert build(world, fleet_file) == 0
    assert fleet_file.stat().st_size > size and (world["tmp"] / "state" / evaluation_spans.RECORD_FILE).exists()
    monkeypatch.setenv(evaluation_spans.ENV_EVALUATION_SPANS, "sometimes")
    assert build(world, fleet_file) == 2
    assert "ALPHATRACE_EVALUATION_SPANS='sometimes': expected on or off" in capsys.readouterr().err
    assert build(world, fleet_file, "--evaluation-spans", "--no-state", state=None) == 2
    assert "evaluation spans need the state folder" in capsys.readouterr().err


def test_a_crash_before_the_record_is_written_repeats_that_one_builds_outcomes_only(world, fleet_file, monkeypatch):
    """The documented window: emitted and flushed, then the process dies before the record's rename."""
    early = dt.datetime.combine(world["calendar"][68], dt.time(12), dt.UTC)
    assert build(world, fleet_file, "--evaluation-spans", now=early) == 0
    first = outcome_keys(read_spans(fleet_file))

    class Killed(BaseException):
        pass

    def crash(*_args, **_kwargs):
        raise Killed("killed after the flush")

    save_record = evaluation_spans.save_record
    monkeypatch.setattr(evaluation_spans, "save_record", crash)
    with pytest.raises(Killed):
        build(world, fleet_file, "--evaluation-spans")
    second = [key for key in outcome_keys(read_spans(fleet_file)) if key not in first]
    monkeypatch.setattr(evaluation_spans, "save_record", save_record)
    assert build(world, fleet_file, "--evaluation-spans") == 0
    assert build(world, fleet_file, "--evaluation-spans") == 0
    counts = Counter(outcome_keys(read_spans(fleet_file)))
    assert all(counts[key] == 1 for key in first)  # recorded before the crash: never again
    assert second and all(counts[key] == 2 for key in second)  # the crashed build's: once more, no more


def test_an_unreadable_record_emits_nothing_and_says_so(world, fleet_file, capsys):
    (world["tmp"] / "state").mkdir()
    (world["tmp"] / "state" / evaluation_spans.RECORD_FILE).write_text("{not json")
    size = fleet_file.stat().st_size
    assert build(world, fleet_file, "--evaluation-spans") == 0  # the report is still written
    assert fleet_file.stat().st_size == size
    assert "no evaluation spans emitted: the evaluation-span record" in capsys.readouterr().err


def test_the_native_core_knows_the_span_by_the_same_name():
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "native" / "src" / "part.rs").read_text()
    found = re.search(r'EVALUATION_SPAN: &str = "([^"]+)"', source)
    assert found is not None and found.group(1) == semconv.SPAN_EVALUATION
