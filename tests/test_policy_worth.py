"""The supervisor's worth rules: net Sharpe and break-even capital over the window, judged once the
portfolio has enough days, and "not available" (simulated or unpriced calls) never a retirement."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from alpha.forward_returns import ForwardReturns
from alpha.records import RunRecord, SignalRecord
from alpha.worth import agent_worth
from meta_supervisor.assemble.worth import WorthConfig
from meta_supervisor.cli import supervise as supervise_cli
from meta_supervisor.supervisor.policy import KEEP, RETIRE, Policy, RetireRules, agent_figures, decide_one, parse_policy
from services.config_error import ConfigError
from services.market_data import CsvMarketData

PRICES = Path(__file__).parent / "fixtures" / "alpha" / "prices"
DAYS = [date(2024, 1, d) for d in (2, 3, 4, 5)]
POLICY = Policy(window_days=30, horizons=(1,), primary_horizon=1, retire=replace(RetireRules(), min_portfolio_days=2))


def _run(agent: str, day: date, cost: float, trace: int, simulated: bool = False) -> RunRecord:
    return RunRecord(agent, "ok", day, 10.0, cost, 0, "live", f"{trace:032x}", f"{trace:016x}", 0, 1, simulated)


def _signals(agent: str) -> list[SignalRecord]:
    # AAA and BBB every day, AAA ranked above BBB: a factor portfolio long AAA, short BBB
    return [
        SignalRecord(agent, symbol, day, "up" if symbol == "AAA" else "down", 0.6, score, 1)
        for day in DAYS
        for symbol, score in (("AAA", 1.0), ("BBB", -1.0))
    ]


def test_the_figures_are_alpha_worths_on_the_runs_own_cost_per_as_of_date():
    runs = [_run("a", day, 0.5, i + 1) for i, day in enumerate(DAYS)]
    config = WorthConfig(capital={"a": 1000.0})
    figures = agent_figures(runs, _signals("a"), CsvMarketData(PRICES), POLICY, today=date(2030, 1, 1), worth=config)["a"]
    returns = ForwardReturns(CsvMarketData(PRICES), date(2030, 1, 1))
    expected = agent_worth(_signals("a"), returns, ["AAA", "BBB"], 1000.0, dict.fromkeys(DAYS, 0.5))
    assert figures["portfolio_days"] == len(expected["curve"]["dates"]) > 0
    assert figures["net_sharpe"] == pytest.approx(expected["net_sharpe"], abs=1e-12)
    assert figures["gross_sharpe"] == pytest.approx(expected["gross_sharpe"], abs=1e-12)
    assert figures["break_even_capital_usd"] == expected["break_even_capital_usd"]
    assert figures["capital_usd"] == 1000.0 and figures["net_sharpe"] < figures["gross_sharpe"]


def test_simulated_calls_make_the_worth_figures_not_available_never_free():
    runs = [_run("a", day, 0.0, i + 1, simulated=True) for i, day in enumerate(DAYS)]
    figures = agent_figures(runs, _signals("a"), CsvMarketData(PRICES), POLICY, today=date(2030, 1, 1))["a"]
    assert figures["net_sharpe"] is None and figures["break_even_capital_usd"] is None
    assert figures["gross_sharpe"] is not None and "simulated LLM calls (not priced)" in figures["worth_reason"]
    strict = replace(POLICY, retire=replace(POLICY.retire, net_sharpe_below=100.0, break_even_capital_usd_above=0.0))
    decision = decide_one("a", {**figures, "runs": 0}, strict, "live", None, None)
    assert decision.action == KEEP
    described = [c.describe() for c in decision.checks if c.figure in ("net_sharpe", "break_even_capital_usd")]
    assert described and all("not judged (not available)" in text for text in described)


BASE = {"runs": 100, "errors": 0, "error_rate": 0.0, "cost_per_day_usd": 1.0, "p95_latency_ms": 10.0, "scored_signals": 0}
BASE |= {"ic": None, "ic_t_stat_hac": None, "hit_rate": None, "brier": None, "portfolio_days": 100}


@pytest.mark.parametrize(
    ("rule", "figure", "threshold", "below"),
    [("net_sharpe_below", "net_sharpe", 0.5, True), ("break_even_capital_usd_above", "break_even_capital_usd", 2e6, False)],
)
def test_worth_rules_fire_strictly_beyond_their_threshold_with_enough_portfolio_days(rule, figure, threshold, below):
    policy = replace(Policy(), retire=replace(RetireRules(), **{rule: threshold}))
    beyond = threshold - 1e-9 if below else threshold + 1e-3

    def judge(value, days=100):
        return decide_one("a", {**BASE, figure: value, "portfolio_days": days}, policy, "live", None, None)

    assert judge(threshold).action == KEEP
    fired = judge(beyond)
    assert (fired.action, fired.rule) == (RETIRE, f"retire.{rule}") and figure in fired.reason
    assert judge(beyond, days=policy.retire.min_portfolio_days - 1).action == KEEP  # too few days: not judged
    assert judge(None).action == KEEP  # not available: never a retirement
    assert Policy().retire.net_sharpe_below is None and Policy().retire.break_even_capital_usd_above is None  # off by default


def test_the_policy_file_takes_the_worth_rules_and_refuses_a_negative_capital():
    policy = parse_policy({"retire": {"net_sharpe_below": 0, "break_even_capital_usd_above": 5e6, "min_portfolio_days": 40}})
    assert (policy.retire.net_sharpe_below, policy.retire.break_even_capital_usd_above, policy.retire.min_portfolio_days) == (0.0, 5e6, 40)
    with pytest.raises(ConfigError, match=r"retire\.break_even_capital_usd_above must be a number"):
        parse_policy({"retire": {"break_even_capital_usd_above": -1}})
    with pytest.raises(ConfigError, match=r"retire\.min_portfolio_days"):
        parse_policy({"retire": {"min_portfolio_days": 0}})


def test_a_dry_run_over_a_replayed_fleet_shows_the_worth_figures(world, tmp_path, monkeypatch, capsys):
    """The documented dry run: a policy retiring on net Sharpe, over the test fleet's replay."""
    import scheduler

    trace_file = tmp_path / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    assert scheduler.main(["--replay", "--days", "8", "--config", str(world["config"])]) == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text("retire:\n  min_portfolio_days: 2\n  net_sharpe_below: 0.0\n")
    args = ["--dry-run", "--traces", str(trace_file), "--policy", str(policy), "--fleet-config", str(world["config"])]
    assert supervise_cli.main([*args, "--today", "2030-01-01"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.split() and line.split()[0] in ("RETIRE", "KEEP")}
    assert "rule retire.net_sharpe_below: net_sharpe -" in lines["mean_reversion"], out  # no LLM: a net Sharpe, below 0
    assert lines["momentum"].startswith("KEEP")  # a net Sharpe above 0
    assert lines["llm_analyst"].startswith("KEEP") and lines["ensemble"].startswith("KEEP")  # simulated calls: not available
    assert "portfolio days: Sharpe gross" in out and "simulated LLM calls (not priced)" in out
