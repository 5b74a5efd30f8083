"""The report against numbers computed by hand, for a small hand-made input (and a golden file).

The golden file ``tests/fixtures/report/golden_small.json`` is the whole report for the same input;
after an intended change of the report, regenerate it with ``UPDATE_GOLDEN=1 pytest
tests/test_report_golden.py`` and review the diff.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from meta_supervisor.assemble.report import percentile
from meta_supervisor.cli import report as report_cli
from otel import semconv
from tests.fixtures.report.otlp_builder import Llm, Run, line, lines_for, spans_of

FIXTURES = Path(__file__).parent / "fixtures" / "report"
NOW = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.UTC)
DAY_MS = 86_400_000


def small_input() -> str:
    """Two agents, five runs; a duplicated line, a corrupt line, a simulated LLM call, an unpriced model;
    two processes whose telemetry lost spans (cumulative counters: the latest, i.e. largest, counts)."""
    run1 = Run(
        "alpha",
        1,
        start_ms=0,
        duration_ms=100,
        llm=[Llm(tokens_in=1000, tokens_out=100, cached=200)],
        signals=[("SPX", "up"), ("NDX", "down")],
        losses=(0, 0),
    )
    run2 = Run(
        "alpha",
        2,
        start_ms=1000,
        duration_ms=300,
        outcome="error",
        error_type="ValueError",
        message="boom",
        signals=[("SPX", "up")],
        totals={semconv.RUN_LLM_CALLS: 1},
        losses=(3, 1),
    )
    run3 = Run(
        "alpha",
        3,
        start_ms=2000,
        duration_ms=200,
        llm=[Llm(tokens_in=500, tokens_out=50), Llm(model="mystery-model", tokens_in=10, tokens_out=5)],
        invalid=["prob_up outside [0, 1]"],
        totals={semconv.RUN_COST_USD: (500 * 0.15 + 50 * 0.60) / 1e6, semconv.RUN_UNPRICED_LLM_CALLS: 1},
        losses=(2, 1),  # smaller than run2's though it ends later and comes after it in the file: the largest counts
    )
    run4 = Run("alpha", 4, start_ms=3000, duration_ms=1, outcome="killed", kill_reason="drawdown", totals=False)
    run5 = Run(
        "beta", 5, start_ms=DAY_MS, duration_ms=50, llm=[Llm(model="sim-model", tokens_in=300, tokens_out=30)], price=None, losses=(0, 7)
    )
    text = line(spans_of(run1), instance="process-1") * 2  # an exporter retry: the same line twice
    text += "this is not json\n"
    text += "".join(lines_for([run2, run3, run4], per_line=2, instance="process-1"))
    text += line(spans_of(run5), simulated=True, instance="process-2")
    return text


@pytest.fixture
def report(tmp_path: Path) -> dict:
    traces = tmp_path / "traces.jsonl"
    traces.write_text(small_input(), encoding="utf-8")
    kill_file = tmp_path / "killed.json"
    kill_file.write_text('["alpha"]', encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--input", str(traces), "--out", str(out), "--no-state", "--kill-file", str(kill_file), "--quiet"]
    code = report_cli.main([*argv, "--audit-log", str(tmp_path / "audit.jsonl")], now=lambda: NOW)
    assert code == 0
    return json.loads((out / "meta_report.json").read_text(encoding="utf-8"))


def test_percentile_matches_numpy_linear_interpolation() -> None:
    assert percentile([100, 200, 300], 50) == 200
    assert percentile([100, 200, 300], 95) == pytest.approx(290)  # rank 1.9: 200 + 0.9 * 100
    assert percentile([100, 200, 300], 99) == pytest.approx(298)
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 25) == pytest.approx(1.75)


def test_first_report_fields(report: dict) -> None:
    assert report["schema_version"] == 1
    assert report["generated_at"] == "2026-01-03T12:00:00Z"
    inputs = report["inputs"]
    assert inputs["spans"] == 9  # alpha 2 + 1 + 3 + 1, beta 2
    assert inputs["duplicate_spans"] == 2
    assert inputs["bad_lines"] == 1
    assert inputs["problems"][0]["line"] == 3
    assert inputs["problems"][0]["error"].startswith("not valid JSON")
    assert len(inputs["files"]) == 1
    alpha = report["agents"]["alpha"]
    for key in (
        "runs",
        "errors",
        "error_rate",
        "skipped_killed",
        "avg_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "max_latency_ms",
        "llm_calls",
        "tokens_in",
        "tokens_out",
        "tokens",
        "cost_usd",
        "alpha_signals",
        "killed",
    ):
        assert key in alpha
    assert (alpha["runs"], alpha["errors"], alpha["skipped_killed"]) == (3, 1, 1)
    assert alpha["error_rate"] == pytest.approx(1 / 3, abs=1e-6)
    # latencies 100, 300, 200 ms
    assert alpha["avg_latency_ms"] == 200.0
    assert alpha["p50_latency_ms"] == 200.0
    assert alpha["p95_latency_ms"] == 290.0
    assert alpha["p99_latency_ms"] == 298.0
    assert alpha["max_latency_ms"] == 300.0
    assert alpha["llm_calls"] == 3
    assert (alpha["tokens_in"], alpha["tokens_out"], alpha["tokens_cached"], alpha["tokens"]) == (1510, 155, 200, 1665)
    # gpt-4o-mini: (800 + 500) uncached * 0.15 + 200 cached * 0.075 + 150 out * 0.60 = 300 per 1M tokens
    assert alpha["cost_usd"] == pytest.approx(0.0003, abs=1e-12)
    assert alpha["unpriced_llm_calls"] == 1
    assert alpha["unpriced_models"] == ["mystery-model"]
    assert alpha["models"]["mystery-model"]["priced"] is False
    assert alpha["alpha_signals"] == 3
    assert alpha["alpha_by_symbol"] == {"NDX": {"down": 1}, "SPX": {"up": 2}}
    assert alpha["invalid_signals"] == 1
    assert alpha["invalid_signal_reasons"] == {"prob_up outside [0, 1]": 1}
    assert alpha["killed"] is True
    assert alpha["kill_reason"] == "listed in kill-switch file"
    assert alpha["last_skip_reason"] == "drawdown"
    assert alpha["first_run_at"] == "2026-01-01T00:00:00Z"
    assert alpha["last_run_at"] == "2026-01-01T00:00:02Z"
    assert alpha["failing_runs"][0]["error_type"] == "ValueError"
    assert alpha["failing_runs"][0]["jaeger_url"] == f"http://127.0.0.1:16686/trace/{2:032x}"
    assert [r["latency_ms"] for r in alpha["slowest_runs"]] == [300.0, 200.0, 100.0]


def test_consistency_check(report: dict) -> None:
    consistency = report["agents"]["alpha"]["consistency"]
    # run 1 and run 3 add up; run 2 claims one LLM call and has none
    assert (consistency["checked"], consistency["consistent"], consistency["mismatched"]) == (3, 2, 1)
    assert consistency["mismatch_examples"][0]["trace_id"] == f"{2:032x}"
    assert "fewer LLM spans" in consistency["mismatch_examples"][0]["detail"]
    assert report["fleet"]["consistency"]["mismatched"] == 1


def test_simulated_calls_are_counted_labelled_and_never_priced(report: dict) -> None:
    beta = report["agents"]["beta"]
    assert beta["llm_calls"] == 1
    assert beta["simulated_llm_calls"] == 1
    assert beta["cost_usd"] is None  # nothing priced: null, never $0
    assert beta["unpriced_llm_calls"] == 0
    assert beta["models"]["sim-model"]["simulated_calls"] == 1
    assert beta["killed"] is False
    assert report["fleet"]["llm_simulated"] is True


def test_fleet_days_and_needs_attention(report: dict) -> None:
    fleet = report["fleet"]
    assert (fleet["runs"], fleet["errors"], fleet["skipped_killed"], fleet["llm_calls"]) == (4, 1, 1, 4)
    assert fleet["cost_usd"] == pytest.approx(0.0003, abs=1e-12)
    assert [(d["date"], d["runs"], d["errors"], d["skipped_killed"]) for d in report["days"]] == [
        ("2026-01-01", 3, 1, 1),
        ("2026-01-02", 1, 0, 0),
    ]
    kinds = {(item["kind"], item["agent"]) for item in report["needs_attention"]}
    assert {
        ("highest_error_rate", "alpha"),
        ("invalid_signals", "alpha"),
        ("no_signals", "beta"),
        ("killed", "alpha"),
        ("unpriced", "alpha"),
    } <= kinds
    # below their thresholds: $0.0003 in a day, a p95 of 290 ms
    assert not {kind for kind, _ in kinds} & {"highest_cost", "slowest_p95"}


def test_telemetry_losses_are_the_latest_counters_per_process(report: dict) -> None:
    losses = report["inputs"]["telemetry_losses"]
    # process-1: its roots say (0, 0), (3, 1), (2, 1): the latest is the largest, 3 + 1; process-2: (0, 7)
    assert losses == {
        "processes": 2,
        "spans_dropped": 3,
        "spans_export_failed": 8,
        "processes_with_losses": 2,
        "by_process": [
            {"service_name": "alphatrace", "service_instance_id": "process-2", "spans_dropped": 0, "spans_export_failed": 7},
            {"service_name": "alphatrace", "service_instance_id": "process-1", "spans_dropped": 3, "spans_export_failed": 1},
        ],
    }
    [item] = [item for item in report["needs_attention"] if item["kind"] == "telemetry_losses"]
    assert (item["agent"], item["value"]) == (None, 11)
    assert item["why"].startswith("11 spans lost by the agents' telemetry before export (3 dropped by a full queue, 8 failed")


def test_golden_file(report: dict) -> None:
    golden = FIXTURES / "golden_small.json"
    report["inputs"]["files"] = ["traces.jsonl"]
    for entry in report["inputs"]["file_details"]:
        entry["path"] = "traces.jsonl"
    for problem in report["inputs"]["problems"]:
        problem["file"] = "traces.jsonl"
    report["kill_switch"]["path"] = "killed.json"
    report["prices"]["source"] = "llm_prices.json"
    report["alpha_quality"]["market_data"] = "agents/data"
    report["supervisor"]["audit_log"] = "audit.jsonl"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert report == json.loads(golden.read_text(encoding="utf-8"))
