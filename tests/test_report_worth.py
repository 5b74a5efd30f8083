"""The report's ``worth`` section end to end: a replay of the test fleet (simulated LLM) written to a
trace file as the exporter writes it, the report built from that file, and the section read back
from the JSON, the Markdown (PR comment) and the HTML."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from alpha.worth import RESIDUAL
from meta_supervisor.cli import report as report_cli
from tests.fleet_fixtures import replayed_trace_file

NOW = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def built(world, telemetry, span_exporter):
    trace_file = replayed_trace_file(world, telemetry, span_exporter)
    out = world["tmp"] / "out"
    args = ["--input", str(trace_file), "--no-state", "--out", str(out), "--quiet", "--fleet-config", str(world["config"])]
    assert report_cli.main([*args, "--kill-file", str(world["kill_file"])], now=lambda: NOW) == 0
    return json.loads((out / "meta_report.json").read_text()), out


def test_every_agent_is_worth_something_or_says_why_not(built):
    report, _ = built
    worth = report["worth"]
    assert set(worth["agents"]) == {"momentum", "mean_reversion", "llm_analyst", "ensemble"}
    assert worth["universe"] == ["SPX", "WTI"]
    for name, entry in worth["agents"].items():
        assert entry["factor"]["days"] == entry["directional"]["days"] == 15, name  # every as-of day's next close is in the data
        assert len(entry["curve"]["dates"]) == len(entry["curve"]["gross"]) == 15
    analyst = worth["agents"]["llm_analyst"]
    assert analyst["reason"] == "15 simulated LLM calls (not priced)"
    for key in ("net_sharpe", "cost_usd", "break_even_capital_usd", "net_pnl_usd", "net"):
        assert analyst[key] is None  # never "free"
    ensemble = worth["agents"]["ensemble"]
    assert ensemble["cost_basis"] == "own and members'" and ensemble["reason"].startswith("llm_analyst: ")
    momentum = worth["agents"]["momentum"]
    assert momentum["reason"] is None and momentum["cost_usd"] == 0.0 and momentum["net_sharpe"] == momentum["gross_sharpe"]
    ranked = [row["agent"] for row in worth["ranking"]]
    assert ranked[-2:] == ["ensemble", "llm_analyst"]  # no net Sharpe: after every agent that has one, by name
    sharpes = [row["net_sharpe"] for row in worth["ranking"][:2]]
    assert sharpes == sorted(sharpes, reverse=True)


def test_the_ensembles_members_carry_exactly_its_pnl(built):
    report, _ = built
    ensemble = report["worth"]["agents"]["ensemble"]
    attribution = ensemble["attribution"]
    assert set(attribution["members"]) == {"momentum", "mean_reversion", "llm_analyst", RESIDUAL}
    total = sum(part["pnl_per_unit_capital"] for part in attribution["members"].values())
    assert total == pytest.approx(attribution["pnl_per_unit_capital"], abs=1e-12)
    assert attribution["pnl_per_unit_capital"] == pytest.approx(ensemble["gross_pnl_usd"] / ensemble["capital_usd"], abs=1e-12)
    assert abs(attribution["members"][RESIDUAL]["pnl_per_unit_capital"]) < 1e-4  # scores are rounded to 6 decimals
    assert attribution["cost_usd"] is None  # the analyst's calls were simulated


def test_the_pages_show_the_ranking_and_the_curves(built):
    _, out = built
    markdown = (out / "meta_report.md").read_text()
    assert "### What each agent is worth" in markdown
    table = markdown.split("### What each agent is worth", 1)[1]
    for name in ("momentum", "mean\\_reversion", "llm\\_analyst", "ensemble"):
        assert f"| {name} |" in table
    assert "| n/a | n/a |" in table  # the analyst's net figures
    html = (out / "meta_report.html").read_text()
    section = html.split('<section class="worth">', 1)[1].split("</section>", 1)[0]
    assert section.count("<polyline") == 4 * 2 + 2  # gross and drawdown each; net for the two priced agents
    assert "Who carries ensemble" in section
