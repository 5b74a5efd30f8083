"""A tool-calling agent's runs in the report: LLM and tool calls per run, stops (killed before start,
killed mid-run, over a budget), tool spans checked against ``alphatrace.run.tool_calls``.

The fixture (``tests/fixtures/genai/alphatrace_stops.jsonl``, its header says what each run is) is
read by the Python reader and the native core, whole, in other orders and line by line as an
incremental build; every way gives the same agent section, asserted whole. The figures were checked
by hand: 8 runs, run 6 killed before it started, so 7 that ran; their roots announce 3+2+1+1+1+1+1
= 10 LLM calls (at most 3) and, the 6 that carry ``alphatrace.run.tool_calls``, 4+1+2+3+1+1 = 12 tool
calls (at most 4); run 5's root carries no tool total, so its tool span after it changes nothing;
runs 4, 7 and 8 announce other tool counts than their spans (14 tool spans in all).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.render.html import render_html
from meta_supervisor.render.markdown import render_markdown
from services.pricing import PriceTable
from tests import genai_fixtures

PRICES = PriceTable.load()
NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
FIXTURE = "alphatrace_stops"
AGENT = "researcher"


@pytest.fixture(params=["off", "on"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Python reader, then the native core (required: ``make native``)."""
    monkeypatch.setenv(native_core.ENV, request.param)
    return request.param


def report_of(files: list[Path], **options: Any) -> dict[str, Any]:
    data, _ = build_inputs(BuildOptions(inputs=[str(f) for f in files], prices=PRICES, workers=1, **options))
    return build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)


def written(folder: Path, lines: list[str]) -> Path:
    path = folder / "traces.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


EXPECTED = {
    "runs": 5,
    "errors": 1,
    "error_rate": 0.2,
    "skipped_killed": 2,
    "skipped_stale_data": 0,
    "outcomes": {"budget_exceeded": 1, "error": 1, "killed": 2, "ok": 4},
    "runs_without_outcome": 0,
    "avg_latency_ms": 1000.0,
    "p50_latency_ms": 1000.0,
    "p95_latency_ms": 1000.0,
    "p99_latency_ms": 1000.0,
    "max_latency_ms": 1000.0,
    "runs_without_latency": 0,
    "llm_calls": 10,
    "llm_errors": 0,
    "simulated_llm_calls": 10,
    "unpriced_llm_calls": 0,
    "unpriced_models": [],
    "tokens_in": 1600,
    "tokens_out": 230,
    "tokens_cached": 0,
    "tokens": 1830,
    "bad_token_values": 0,
    "cost_usd": None,
    "models": {
        "sim-model": {
            "calls": 10,
            "simulated_calls": 10,
            "errors": 0,
            "tokens_in": 1600,
            "tokens_out": 230,
            "tokens_cached": 0,
            "cost_usd": None,
            "priced": None,
        }
    },
    "llm_operations": {"chat": 10},
    "tool_calls": 14,
    "tool_errors": 1,
    "tools": {
        "price_features": {
            "calls": 4,
            "errors": 1,
            "error_rate": 0.25,
            "avg_latency_ms": 33.5,
            "p50_latency_ms": 29.36,
            "p95_latency_ms": 50.0,
            "max_latency_ms": 50.0,
            "calls_without_latency": 0,
        },
        "recent_closes": {
            "calls": 3,
            "errors": 0,
            "error_rate": 0.0,
            "avg_latency_ms": 34.333,
            "p50_latency_ms": 20.447,
            "p95_latency_ms": 68.0,
            "max_latency_ms": 68.0,
            "calls_without_latency": 0,
        },
        "regime": {
            "calls": 7,
            "errors": 0,
            "error_rate": 0.0,
            "avg_latency_ms": 16.0,
            "p50_latency_ms": 10.224,
            "p95_latency_ms": 40.0,
            "max_latency_ms": 40.0,
            "calls_without_latency": 0,
        },
    },
    "llm_calls_per_run": {"runs": 7, "calls": 10, "mean": 1.429, "max": 3},
    "tool_calls_per_run": {"runs": 6, "calls": 12, "mean": 2.0, "max": 4},
    "stops": {
        "killed_before_start": 1,
        "killed_mid_run": 1,
        "killed_before_step": {"tool_step": 1},
        "budget_exceeded": 1,
        "budget_exceeded_by_budget": {"run_cost": 1},
    },
    "alpha_signals": 0,
    "alpha_by_symbol": {},
    "invalid_signals": 0,
    "invalid_signal_reasons": {},
    "first_run_at": "2026-03-02T11:00:00Z",
    "last_run_at": "2026-03-02T18:00:00Z",
    "killed": False,
    "kill_reason": None,
    "killed_by": None,
    "killed_at": None,
    "kill_switch_entry": None,
    "last_skip_reason": "drawdown review",
    "last_skip_at": "2026-03-02T16:00:00Z",
    "kill_switch_errors_seen": 0,
    "slowest_runs": [
        {
            "trace_id": "5eed0000000000000000000000000001",
            "run_id": "00000000-0000-4000-8000-000000000001",
            "latency_ms": 1000.0,
            "started_at": "2026-03-02T11:00:00Z",
            "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000001",
        },
        {
            "trace_id": "5eed0000000000000000000000000004",
            "run_id": "00000000-0000-4000-8000-000000000004",
            "latency_ms": 1000.0,
            "started_at": "2026-03-02T14:00:00Z",
            "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000004",
        },
        {
            "trace_id": "5eed0000000000000000000000000005",
            "run_id": "00000000-0000-4000-8000-000000000005",
            "latency_ms": 1000.0,
            "started_at": "2026-03-02T15:00:00Z",
            "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000005",
        },
        {
            "trace_id": "5eed0000000000000000000000000007",
            "run_id": "00000000-0000-4000-8000-000000000007",
            "latency_ms": 1000.0,
            "started_at": "2026-03-02T17:00:00Z",
            "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000007",
        },
        {
            "trace_id": "5eed0000000000000000000000000008",
            "run_id": "00000000-0000-4000-8000-000000000008",
            "latency_ms": 1000.0,
            "started_at": "2026-03-02T18:00:00Z",
            "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000008",
        },
    ],
    "failing_runs": [
        {
            "trace_id": "5eed0000000000000000000000000008",
            "run_id": "00000000-0000-4000-8000-000000000008",
            "error_type": "ValueError",
            "message": "ValueError: no verdict",
            "started_at": "2026-03-02T18:00:00Z",
            "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000008",
        }
    ],
    "consistency": {
        "checked": 8,
        "consistent": 5,
        "mismatched": 3,
        "unchecked": 0,
        "orphan_llm_spans": 0,
        "mismatch_examples": [
            {
                "trace_id": "5eed0000000000000000000000000004",
                "run_id": "00000000-0000-4000-8000-000000000004",
                "detail": "fewer tool spans than alphatrace.run.tool_calls (2 of 3)",
                "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000004",
            },
            {
                "trace_id": "5eed0000000000000000000000000007",
                "run_id": "00000000-0000-4000-8000-000000000007",
                "detail": "more tool spans than alphatrace.run.tool_calls",
                "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000007",
            },
            {
                "trace_id": "5eed0000000000000000000000000008",
                "run_id": "00000000-0000-4000-8000-000000000008",
                "detail": "more tool spans than alphatrace.run.tool_calls",
                "jaeger_url": "http://127.0.0.1:16686/trace/5eed0000000000000000000000000008",
            },
        ],
    },
    "days": [
        {
            "date": "2026-03-02",
            "runs": 5,
            "errors": 1,
            "skipped_killed": 2,
            "llm_calls": 10,
            "cost_usd": 0.0,
            "alpha_signals": 0,
            "invalid_signals": 0,
        }
    ],
    "as_of_days": [{"date": "2026-02-27", "runs": 5, "errors": 1, "skipped_killed": 2}],
}


def test_agent_section(reader: str, tmp_path: Path) -> None:
    report = report_of([genai_fixtures.write(tmp_path, FIXTURE)])
    assert list(report["agents"]) == [AGENT]
    assert report["agents"][AGENT] == EXPECTED
    fleet = report["fleet"]
    assert (fleet["llm_calls_per_run"], fleet["tool_calls_per_run"], fleet["stops"]) == (
        EXPECTED["llm_calls_per_run"],
        EXPECTED["tool_calls_per_run"],
        EXPECTED["stops"],
    )
    assert (fleet["runs"], fleet["errors"], fleet["error_rate"]) == (5, 1, 0.2)  # stops are not errors, nor runs


@pytest.mark.parametrize("order", ["reversed", "roots first", "roots last"])
def test_any_order_gives_the_same_section(reader: str, order: str, tmp_path: Path) -> None:
    lines = genai_fixtures.lines(FIXTURE)
    is_root = ['"invoke_agent' in line.split('"name":', 1)[1][:20] for line in lines]
    if order == "reversed":
        lines = lines[::-1]
    else:
        roots = [line for line, root in zip(lines, is_root, strict=True) if root]
        children = [line for line, root in zip(lines, is_root, strict=True) if not root]
        lines = roots + children if order == "roots first" else children + roots
    assert report_of([written(tmp_path, lines)])["agents"][AGENT] == EXPECTED


def test_incremental_builds_line_by_line_give_the_same_section(reader: str, tmp_path: Path) -> None:
    """Each build reads only the line appended since the last one, from the saved state (the open
    runs with their tool counts, the closed runs with their states)."""
    lines = genai_fixtures.lines(FIXTURE)
    path = tmp_path / "traces.jsonl"
    path.write_text("", encoding="utf-8")
    for line in lines:
        with path.open("a", encoding="utf-8") as file:
            file.write(line)
        report = report_of([path], state_dir=tmp_path / "state")
    assert report["agents"][AGENT] == EXPECTED


def test_one_file_per_run_line_gives_the_same_section(reader: str, tmp_path: Path) -> None:
    """Each line in a file of its own: runs joined across files."""
    files = []
    for i, line in enumerate(genai_fixtures.lines(FIXTURE)):
        folder = tmp_path / f"{i:02d}"
        folder.mkdir()
        files.append(written(folder, [line]))
    assert report_of(files)["agents"][AGENT] == EXPECTED


def test_pages_show_calls_per_run_and_stops(tmp_path: Path) -> None:
    report = report_of([genai_fixtures.write(tmp_path, FIXTURE)])
    markdown = render_markdown(report)
    assert "- runs stopped: 2 killed (1 before start, 1 mid-run), 1 over budget (run\\_cost 1) (not errors)" in markdown
    assert "| agent | LLM calls / run | tool calls / run | stopped runs |" in markdown
    assert "| researcher | 1.429 (max 3) | 2 (max 4) | 2 killed (1 before start, 1 mid-run), 1 over budget (run\\_cost 1) |" in markdown
    assert "| researcher | price\\_features | 4 | 1 | 25.0% | 29.4 | 50.0 | 50.0 |" in markdown
    page = render_html(report)
    assert "LLM calls per run 1.429 (max 3), tool calls per run 2 (max 4)" in page
    assert "stopped runs: 2 killed (1 before start, 1 mid-run), 1 over budget (run_cost 1)" in page
    assert json.loads(json.dumps(report)) == report
