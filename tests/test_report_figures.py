"""Honest figures on the report's pages (issue 15): what a reader of the Markdown (a PR comment) and
the HTML sees for costs nothing priced, invalid signals, thresholds, errors, hit rates and paths."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from meta_supervisor.cli import report as report_cli
from meta_supervisor.locations import PROJECT_ROOT
from meta_supervisor.render.html import render_html
from meta_supervisor.render.markdown import render_markdown
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for
from tests.test_report_golden import small_input

NOW = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.UTC)


def build(tmp_path: Path, text: str, *extra: str) -> tuple[dict, str, str]:
    """The report of ``text`` (a trace file's content): its JSON, Markdown and HTML."""
    tmp_path.mkdir(exist_ok=True)
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


# --- needs attention: thresholds, invalid signals, agents returning nothing; the pages' tables -------------


def test_needs_attention_lists_only_what_crosses_a_threshold(tmp_path: Path) -> None:
    runs = [Run("fast", t, start_ms=t * 1000, duration_ms=47, signals=[("SPX", "up")]) for t in range(1, 5)]
    report, md, page = build(tmp_path, "".join(lines_for(runs)))
    assert report["agents"]["fast"]["p95_latency_ms"] == 47.0
    assert report["needs_attention"] == []
    assert "### Needs attention\n- nothing" in md
    assert "Nothing needs attention." in page


def test_a_slow_failing_agent_is_flagged_with_its_threshold(tmp_path: Path) -> None:
    runs = [Run("slow", t, start_ms=t * 1000, duration_ms=40_000, signals=[("SPX", "up")]) for t in range(1, 4)]
    runs.append(Run("slow", 9, start_ms=9000, duration_ms=40_000, outcome="error", error_type="RuntimeError", message="x"))
    report, md, _ = build(tmp_path, "".join(lines_for(runs)))
    items = {item["kind"]: item for item in report["needs_attention"]}
    assert items["slowest_p95"]["threshold"] == 30_000.0 and items["slowest_p95"]["value"] == 40_000.0
    assert items["highest_error_rate"]["value"] == 0.25
    assert "slowest p95 latency: 40,000.0 ms (above 30,000 ms)" in md
    assert "highest error rate: 25.0% (above 5.0%)" in md


def test_invalid_signals_and_agents_returning_nothing_are_on_the_pages(tmp_path: Path) -> None:
    report, md, page = build(tmp_path, small_input())
    kinds = {(item["kind"], item["agent"]) for item in report["needs_attention"]}
    assert ("invalid_signals", "alpha") in kinds  # 1 of 4 emitted signals was invalid
    assert ("no_signals", "beta") in kinds  # a successful run, no signal
    assert "**alpha**: 1 invalid alpha signal of 4 (25.0%); most often: prob\\_up outside \\[0, 1\\]" in md
    assert "**beta**: 1 successful run and no valid alpha signal" in md
    header = md_row(md, "agent")
    assert "| signals | invalid |" in header and "| p99 ms | max ms |" in header
    cells = [cell.strip() for cell in md_row(md, "alpha").split("|")]
    columns = [cell.strip() for cell in header.split("|")]
    assert cells[columns.index("invalid")] == "1" and cells[columns.index("p99 ms")] == "298.0"
    assert cells[columns.index("max ms")] == "300.0"
    assert "<th class=n>invalid</th>" in page


def test_a_failing_run_names_its_error_type_once(tmp_path: Path) -> None:
    runs = [
        Run("a", 1, outcome="error", error_type="RuntimeError", message="RuntimeError: boom"),
        Run("b", 2, outcome="error", error_type="ValueError", message="bad value"),
    ]
    _, md, page = build(tmp_path, "".join(lines_for(runs)))
    assert "RuntimeError: boom" in md and "RuntimeError RuntimeError" not in md
    assert "ValueError: bad value" in md
    assert "<td>RuntimeError: boom</td>" in page and "<td>ValueError: bad value</td>" in page


def test_the_html_puts_agents_first_and_prices_means_one_thing(tmp_path: Path) -> None:
    _, _, page = build(tmp_path, small_input())
    assert page.index("<h2>Needs attention</h2>") < page.index("<h2>Agents</h2>") < page.index("<h2>Charts</h2>")
    assert page.index("<h2>Agents</h2>") < page.index('<section class="alpha-quality">')
    assert "LLM prices " in page and "Prices:" not in page
    assert "Market data (what the signals are scored against):" in page


# --- alpha quality: the hit rate beside its base rate, the short side's sign -----------------------------


def test_hit_rate_is_shown_beside_its_base_rate_and_the_short_sign_is_explained(tmp_path: Path) -> None:
    runs = [
        Run("caller", t, start_ms=t * 1000, signals=[("SPX", "up" if t % 3 else "down")], as_of=f"2017-03-{t:02d}") for t in range(1, 29)
    ]
    report, md, page = build(tmp_path, "".join(lines_for(runs)))
    cell = report["alpha_quality"]["agents"]["caller"]["horizons"][str(report["alpha_quality"]["primary_horizon"])]
    shown = f"{100 * cell['hit_rate']:.1f}% (base {100 * cell['up_rate']:.1f}%)"
    alpha_md = md[md.index("### Alpha quality") :]
    alpha_html = page[page.index('<section class="alpha-quality">') :]
    assert "| hit rate (base) |" in alpha_md and shown in alpha_md
    assert "<th>hit rate (base)</th>" in alpha_html and f"<td>{shown}</td>" in alpha_html
    assert "a good short has a **negative** mean return short" in alpha_md
    assert "a good short has a negative mean return short" in alpha_html
    assert "| mean return short (good: negative) |" in alpha_md and "<th>mean return short (good: negative)</th>" in alpha_html


# --- no absolute local path on a page -----------------------------------------------------------------


def test_pages_show_no_absolute_local_path(tmp_path: Path) -> None:
    report, md, page = build(tmp_path, small_input())
    assert report["supervisor"]["audit_log"] == str(tmp_path / "audit.jsonl")  # the JSON keeps them as read
    assert report["alpha_quality"]["market_data"].startswith("/")
    for text in (md, page):
        assert str(tmp_path) not in text
        assert str(PROJECT_ROOT) not in text
    assert "- traces.jsonl:3: not valid JSON" in md
    assert "Audit log: audit.jsonl." in page
    assert "Market data (what the signals are scored against): agents/data." in page  # inside the project: relative


def test_short_path_is_relative_to_the_project_or_the_name_alone(tmp_path: Path) -> None:
    from meta_supervisor.render.paths import short_path

    assert short_path(str(PROJECT_ROOT / "telemetry" / "traces.jsonl")) == "telemetry/traces.jsonl"
    assert short_path(str(tmp_path / "prices")) == "prices"
    assert short_path("relative/as/configured.jsonl") == "relative/as/configured.jsonl"
    assert short_path(None) is None


def test_errors_quoting_a_path_show_it_short(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()  # unreadable: a folder
    (tmp_path / "killed.json").write_text("{not json", encoding="utf-8")
    report, md, page = build(tmp_path, small_input())
    assert str(tmp_path) in report["supervisor"]["error"] and str(tmp_path) in report["kill_switch"]["error"]
    assert str(tmp_path) not in md and str(tmp_path) not in page
    assert "audit.jsonl" in md and "killed.json" in md


# --- a replay: runs and errors per as-of day --------------------------------------------------------------


def test_a_replay_is_charted_by_as_of_day(tmp_path: Path) -> None:
    """Three market days replayed within one wall-clock second: one bar per as-of day, not one bar."""
    runs = [
        Run("replay", t, start_ms=t * 10, outcome="error" if t == 2 else "ok", as_of=f"2017-03-0{t}", signals=[("SPX", "up")])
        for t in (1, 2, 3)
    ]
    runs.append(Run("replay", 4, start_ms=40, outcome="killed", kill_reason="drawdown", as_of="2017-03-03", totals=False))
    runs.append(Run("live", 5, start_ms=50))  # no as-of date: in the wall-clock days only
    report, _, page = build(tmp_path, "".join(lines_for(runs)))
    assert [(d["date"], d["runs"]) for d in report["days"]] == [("2026-01-01", 4)]
    assert report["as_of_days"] == [
        {"date": "2017-03-01", "runs": 1, "errors": 0, "skipped_killed": 0},
        {"date": "2017-03-02", "runs": 1, "errors": 1, "skipped_killed": 0},
        {"date": "2017-03-03", "runs": 1, "errors": 0, "skipped_killed": 1},
    ]
    assert report["agents"]["replay"]["as_of_days"] == report["as_of_days"] and report["agents"]["live"]["as_of_days"] == []
    assert "<h3>Runs and errors per as-of day (the market day each run saw)</h3>" in page
    assert "<title>2017-03-02: 1 runs, 1 errors</title>" in page and "<title>2026-01-01:" not in page


def test_runs_without_an_as_of_day_are_charted_by_wall_clock_day(tmp_path: Path) -> None:
    report, _, page = build(tmp_path, small_input())
    assert report["as_of_days"] == []
    assert "<h3>Runs and errors per day (UTC)</h3>" in page and "<title>2026-01-01: 3 runs, 1 errors</title>" in page


# --- the as-of window ---------------------------------------------------------------------------------


def replay_runs() -> list[Run]:
    return [Run("replay", t, start_ms=t * 10, as_of=f"2017-03-{t:02d}", signals=[("SPX", "up"), ("NDX", "down")]) for t in range(1, 21)]


def test_the_as_of_window_selects_market_days_for_the_chart_and_the_scoring(tmp_path: Path) -> None:
    text = "".join(lines_for(replay_runs()))
    whole, _, _ = build(tmp_path / "whole", text)
    report, md, page = build(tmp_path / "window", text, "--as-of-since", "2017-03-05", "--as-of-until", "2017-03-09")
    assert report["window"] == {"since": None, "until": None, "as_of_since": "2017-03-05", "as_of_until": "2017-03-09"}
    assert [row["date"] for row in report["as_of_days"]] == ["2017-03-05", "2017-03-06", "2017-03-07", "2017-03-08", "2017-03-09"]
    assert [row["date"] for row in report["agents"]["replay"]["as_of_days"]] == [row["date"] for row in report["as_of_days"]]
    assert report["alpha_quality"]["signals"] == 10 and whole["alpha_quality"]["signals"] == 40  # 5 days x 2 symbols
    assert "<title>2017-03-04:" not in page and "<title>2017-03-05: 1 runs, 0 errors</title>" in page
    assert "(all time; as-of days 2017-03-05 to 2017-03-09)" in md
    assert "all time; as-of days 2017-03-05 to 2017-03-09" in page


def test_an_as_of_window_after_its_end_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--input", str(tmp_path / "none.jsonl"), "--no-state", "--quiet", "--as-of-since", "2017-03-09", "--as-of-until", "2017-03-05"]
    assert report_cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "--as-of-since must not be after --as-of-until" in capsys.readouterr().err


def test_spans_outside_the_written_window_are_not_called_missing(tmp_path: Path) -> None:
    report, md, _ = build(tmp_path, "".join(lines_for(replay_runs())), "--since", "2027-01-01")
    assert report["inputs"]["spans"] == 0 and report["inputs"]["spans_outside_window"] == 20
    assert not any("hold no spans yet" in message for message in report["inputs"]["messages"])
    assert "all 20 spans read started outside the --since/--until window" in report["inputs"]["messages"][0]
    assert "all 20 spans read started outside the" in md


def test_a_saved_alpha_section_is_not_reused_for_another_as_of_window(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(lines_for(replay_runs())), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--input", str(traces), "--out", str(out), "--state-dir", str(tmp_path / "state"), "--quiet"]
    argv += ["--kill-file", str(tmp_path / "killed.json"), "--audit-log", str(tmp_path / "audit.jsonl")]
    signals = []
    for window in ([], ["--as-of-until", "2017-03-02"], []):
        assert report_cli.main([*argv, *window], now=lambda: NOW) == 0
        signals.append(json.loads((out / "meta_report.json").read_text(encoding="utf-8"))["alpha_quality"]["signals"])
    assert signals == [40, 4, 40]
