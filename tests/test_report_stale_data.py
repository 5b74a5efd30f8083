"""The report shows live runs refused on stale data as what they are: skipped, not runs, not errors,
and worth a look."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from meta_supervisor.cli import report as report_cli
from tests.fixtures.report.otlp_builder import Run, lines_for

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)


def test_stale_data_runs_are_skipped_runs_and_need_attention(tmp_path: Path) -> None:
    runs = [
        Run("momentum", 1, start_ms=0, duration_ms=100, as_of="2026-12-03"),
        Run("momentum", 2, start_ms=1000, duration_ms=1, outcome="stale_data", totals=False, as_of="2026-12-04"),
        Run("momentum", 3, start_ms=2000, duration_ms=1, outcome="stale_data", totals=False, as_of="2026-12-05"),
    ]
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(lines_for(runs)), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--input", str(traces), "--out", str(out), "--no-state", "--kill-file", str(tmp_path / "none.json"), "--quiet"]
    assert report_cli.main([*argv, "--audit-log", str(tmp_path / "audit.jsonl")], now=lambda: NOW) == 0
    report = json.loads((out / "meta_report.json").read_text(encoding="utf-8"))

    agent = report["agents"]["momentum"]
    assert agent["outcomes"] == {"ok": 1, "stale_data": 2}
    assert (agent["runs"], agent["errors"], agent["skipped_killed"], agent["skipped_stale_data"]) == (1, 0, 0, 2)
    assert report["fleet"]["skipped_stale_data"] == 2
    stale = [item for item in report["needs_attention"] if item["kind"] == "stale_data"]
    assert stale == [
        {
            "kind": "stale_data",
            "agent": "momentum",
            "value": 2,
            "why": "2 live runs refused: market data older than the staleness limit",
        }
    ]
    assert "2 live runs refused" in (out / "meta_report.md").read_text(encoding="utf-8")
