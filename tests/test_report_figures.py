"""Honest figures on the report's pages (issue 15): what a reader of the Markdown (a PR comment) and
the HTML sees for costs nothing priced, invalid signals, thresholds, errors, hit rates and paths."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from meta_supervisor import report_cli
from meta_supervisor.report_html import render_html
from meta_supervisor.report_markdown import render_markdown
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for
from tests.test_report_golden import small_input

NOW = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.UTC)


def build(tmp_path: Path, text: str, *extra: str) -> tuple[dict, str, str]:
    """The report of ``text`` (a trace file's content): its JSON, Markdown and HTML."""
    traces = tmp_path / "traces.jsonl"
    traces.write_text(text, encoding="utf-8")
    kill_file = tmp_path / "killed.json"
    if not kill_file.exists():
        kill_file.write_text("[]", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--input", str(traces), "--out", str(out), "--no-state", "--kill-file", str(kill_file), "--quiet"]
    argv += ["--audit-log", str(tmp_path / "audit.jsonl"), *extra]
    assert report_cli.main(argv, now=lambda: NOW) == 0
    report = json.loads((out / "meta_report.json").read_text(encoding="utf-8"))
    md = (out / "meta_report.md").read_text(encoding="utf-8")
    page = (out / "meta_report.html").read_text(encoding="utf-8")
    assert md == render_markdown(report) and page == render_html(report)
    return report, md, page


def md_row(md: str, agent: str) -> str:
    """The agent's row of the Markdown's agent table."""
    table = md[md.index("### Agents") :]
    return next(line for line in table.splitlines() if line.startswith(f"| {agent} |"))


# --- costs: nothing priced is never $0.0000 -------------------------------------------------------------


def test_format_usd_never_rounds_a_real_cost_to_zero() -> None:
    from services.pricing import format_usd

    assert format_usd(0.0003) == "$0.0003"
    assert format_usd(1234.5) == "$1,234.5000"
    assert format_usd(3.75e-6) == "$0.00000375"
    assert format_usd(1e-8) != "$0.0000" and format_usd(1e-8).startswith("$0.0000000")
    assert format_usd(0.0) == "$0"
    assert format_usd(None) == "\u2013"


def test_simulated_and_unpriced_calls_say_so_instead_of_zero_dollars(tmp_path: Path) -> None:
    report, md, page = build(tmp_path, small_input())
    beta = report["agents"]["beta"]  # one simulated call: nothing priced
    assert beta["cost_usd"] is None and beta["models"]["sim-model"]["cost_usd"] is None
    assert report["agents"]["alpha"]["cost_usd"] == pytest.approx(0.0003, abs=1e-12)
    assert "$0.0000" not in md and "0.0000<" not in page and "$0.0000" not in page
    assert "simulated, not priced" in md_row(md, "beta")
    assert "\\$0.0003 + unpriced (mystery-model)" in md_row(md, "alpha")
    headline = md.splitlines()[2]
    assert "LLM cost \\$0.0003 + unpriced (mystery-model) + simulated, not priced" in headline
    assert "<td class=n>simulated, not priced</td>" in page
    assert "<td class=n>$0.0003 + unpriced (mystery-model)</td>" in page


def test_a_fleet_with_nothing_priced_has_a_null_cost(tmp_path: Path) -> None:
    runs = [Run("sim", 1, llm=[Llm(tokens_in=10, tokens_out=1)], price=None)]
    report, md, page = build(tmp_path, "".join(lines_for(runs, simulated=True)))
    assert report["fleet"]["cost_usd"] is None and report["agents"]["sim"]["cost_usd"] is None
    assert "LLM cost simulated, not priced" in md.splitlines()[2]
    assert "$0" not in md and "$0" not in page


def test_a_tiny_real_cost_is_shown_with_its_digits(tmp_path: Path) -> None:
    runs = [Run("cheap", 1, llm=[Llm(tokens_in=10, tokens_out=1)])]  # 10 * 0.15 + 1 * 0.60 per 1M tokens
    report, md, page = build(tmp_path, "".join(lines_for(runs)))
    assert report["agents"]["cheap"]["cost_usd"] == pytest.approx(2.1e-6)
    assert "\\$0.00000210" in md_row(md, "cheap")
    assert "$0.00000210" in page
    assert "0.0000<" not in page and "$0.0000 " not in md
