"""What an agent is worth (``alpha.worth``): net of its LLM bill, break-even capital, cost per as-of
date, and each member's share of a combining agent's PnL, on hand-made prices with known answers
(``tests/fixtures/alpha/prices``-style CSVs written here)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from alpha.forward_returns import ForwardReturns
from alpha.portfolio import DIRECTIONAL, FACTOR, Day, daily_portfolio, directional_weights, factor_weights, turnover
from alpha.records import SignalRecord
from alpha.worth import NS_PER_DAY, RESIDUAL, agent_worth, attribution, cost_by_as_of, net_figures
from services.market_data import CsvMarketData

D0 = date(2024, 1, 1)  # a Monday
DAYS = [D0 + timedelta(days=i) for i in range(5)]  # Monday to Friday


@pytest.fixture
def market(tmp_path):
    """Three symbols over one week: A +1% a day, B -1% a day, C flat."""
    for symbol, step in (("A", 1.01), ("B", 0.99), ("C", 1.0)):
        price, rows = 100.0, ["date,open,high,low,close,volume"]
        for day in DAYS:
            rows.append(f"{day},,,,{price!r},")
            price *= step
        (tmp_path / f"{symbol}.csv").write_text("\n".join(rows) + "\n")
    return CsvMarketData(tmp_path)


def sig(agent, symbol, day, score, trace="t", time_day=None):
    direction = "up" if score > 0.1 else "down" if score < -0.1 else "flat"
    moment = (time_day or day) - date(1970, 1, 1)
    return SignalRecord(agent, symbol, day, direction, 0.5, score, 1, None, trace, "", moment.days * NS_PER_DAY + 1)


def test_weights():
    assert factor_weights({"A": 1.0, "B": -1.0, "C": 0.0}) == {"A": 0.5, "B": -0.5}
    assert factor_weights({"A": 0.3, "B": 0.3}) == {}
    assert factor_weights({"A": 0.3}) == {}
    assert directional_weights({"A": "up", "B": "down", "C": "flat"}) == {"A": 0.5, "B": -0.5}
    assert directional_weights({"A": "up", "C": "flat"}) == {"A": 1.0}
    assert directional_weights({"C": "flat"}) == {}


def test_a_perfect_ranker_earns_the_spread_every_day(market):
    signals = [sig("a", s, d, x) for d in DAYS[:4] for s, x in (("A", 1.0), ("B", -1.0), ("C", 0.0))]
    days = daily_portfolio(signals, ForwardReturns(market), FACTOR)
    assert [d.as_of for d in days] == DAYS[:4]  # Friday's return is pending: no day
    for day in days:
        assert day.value == pytest.approx(0.5 * 0.01 + 0.5 * 0.01)
    assert turnover(days) == 0.0
    directional = daily_portfolio(signals, ForwardReturns(market), DIRECTIONAL)
    assert [d.value for d in directional] == pytest.approx([0.01] * 4)


def test_turnover_is_half_the_weights_traded():
    days = [Day(D0, {"A": 0.5, "B": -0.5}, {}, 0.0), Day(DAYS[1], {"A": -0.5, "B": 0.5}, {}, 0.0), Day(DAYS[2], {}, {}, 0.0)]
    assert turnover(days) == pytest.approx((2.0 / 2 + 1.0 / 2) / 2)


def test_net_figures_break_even_and_cost_share():
    days = [Day(DAYS[i], {}, {}, v) for i, v in enumerate([0.01, -0.005, 0.02])]
    cost = {DAYS[0]: 100.0, DAYS[2]: 50.0, DAYS[4]: 7.0}  # DAYS[4] has no portfolio day
    out = net_figures(days, cost, capital=100_000.0)
    assert out["gross_pnl_usd"] == pytest.approx(100_000 * 0.025)
    assert out["cost_usd"] == 150.0
    assert out["cost_outside_portfolio_days_usd"] == 7.0
    assert out["net_pnl_usd"] == pytest.approx(2500 - 150)
    assert out["cost_share_of_gross_pnl"] == pytest.approx(150 / 2500)
    assert out["break_even_capital_usd"] == pytest.approx(150 / 0.025)
    assert out["net_daily"] == pytest.approx([0.01 - 0.001, -0.005, 0.02 - 0.0005])
    # at the break-even capital the net PnL is zero
    at_break_even = net_figures(days, cost, capital=out["break_even_capital_usd"])
    assert at_break_even["net_pnl_usd"] == pytest.approx(0.0, abs=1e-9)


def test_losing_alpha_has_no_break_even_capital():
    days = [Day(DAYS[0], {}, {}, -0.01), Day(DAYS[1], {}, {}, 0.005)]
    out = net_figures(days, {DAYS[0]: 1.0}, capital=1e6)
    assert out["break_even_capital_usd"] is None and out["cost_share_of_gross_pnl"] is None
    assert "not positive" in out["break_even_reason"]
    assert out["net"]["sharpe"] is not None
    free = net_figures(days, {}, capital=1e6)  # no LLM calls at all: nothing to pay for
    assert (free["cost_usd"], free["break_even_capital_usd"]) == (0.0, 0.0)
    assert free["net_daily"] == [-0.01, 0.005] and free["net_pnl_usd"] == free["gross_pnl_usd"]


def test_simulated_calls_make_net_figures_not_available_never_free():
    days = [Day(DAYS[0], {}, {}, 0.01), Day(DAYS[1], {}, {}, 0.02)]
    out = net_figures(days, {}, capital=1e6, not_available="3 simulated LLM calls (not priced)")
    assert out["reason"] == "3 simulated LLM calls (not priced)"
    for key in ("cost_usd", "net_pnl_usd", "break_even_capital_usd", "cost_share_of_gross_pnl", "net"):
        assert out[key] is None
    assert out["gross_pnl_usd"] == pytest.approx(30_000)


def test_cost_by_as_of_spreads_each_day_over_its_runs_and_keeps_the_total():
    replay_day = date(2026, 3, 1)
    signals = [
        sig("a", "A", DAYS[0], 0.5, trace="r1", time_day=replay_day),
        sig("a", "B", DAYS[0], 0.5, trace="r1", time_day=replay_day),  # same run: counted once
        sig("a", "A", DAYS[1], 0.5, trace="r2", time_day=replay_day),
        sig("a", "A", DAYS[2], 0.5, trace="r3", time_day=replay_day),
        sig("a", "A", DAYS[3], 0.5, trace="r4", time_day=date(2026, 3, 2)),
    ]
    per_day = {replay_day: 3.0, date(2026, 3, 2): 1.5, date(2026, 3, 3): 0.25}
    cost, unattributed, which = cost_by_as_of(signals, per_day)
    assert cost == pytest.approx({DAYS[0]: 1.0, DAYS[1]: 1.0, DAYS[2]: 1.0, DAYS[3]: 1.5})
    assert unattributed == 0.25 and which == {date(2026, 3, 3): 0.25}
    assert sum(cost.values()) + unattributed == pytest.approx(sum(per_day.values()))


def test_agent_worth_picks_the_factor_portfolio_and_reports_both(market):
    signals = [sig("a", s, d, x) for d in DAYS[:4] for s, x in (("A", 0.9), ("B", -0.9), ("C", 0.0))]
    cost = {DAYS[0]: 10.0}
    out = agent_worth(signals, ForwardReturns(market), ["A", "B", "C"], 1_000.0, cost)
    assert out["portfolio"] == FACTOR
    assert out["factor"]["days"] == out["directional"]["days"] == 4
    assert out["gross_pnl_usd"] == pytest.approx(1_000 * 0.04)
    assert out["break_even_capital_usd"] == pytest.approx(10.0 / 0.04)
    assert out["curve"]["dates"] == [d.isoformat() for d in DAYS[:4]]
    assert out["curve"]["net"][0] == pytest.approx(0.01 - 0.01)
    # every day's return is the same: no variation, no Sharpe (never a division by ~0)
    assert out["gross_sharpe"] is None
    assert out["factor"]["beta"] is None  # the equal-weight benchmark is constant here too


def test_attribution_splits_the_combined_pnl_exactly(market):
    weights = {"m1": 0.4, "m2": 0.6}
    m1 = [sig("m1", s, d, x) for d in DAYS[:4] for s, x in (("A", 1.0), ("B", -1.0), ("C", 0.0))]
    m2 = [sig("m2", s, d, x) for d in DAYS[:4] for s, x in (("A", -0.5), ("B", 0.0), ("C", 0.5))]
    # C has no m2 signal on the last day: that symbol's weights renormalise to m1 alone
    m2 = [s for s in m2 if not (s.symbol == "C" and s.as_of == DAYS[3])]
    scores2 = {(s.symbol, s.as_of): s.score_final for s in m2}
    combined = []
    for d in DAYS[:4]:
        for s in ("A", "B", "C"):
            present = {m: w for m, w in weights.items() if m == "m1" or (s, d) in scores2}
            x1 = {"A": 1.0, "B": -1.0, "C": 0.0}[s]
            score = (present["m1"] * x1 + present.get("m2", 0.0) * scores2.get((s, d), 0.0)) / sum(present.values())
            combined.append(sig("ens", s, d, score))
    returns = ForwardReturns(market)
    out = attribution(combined, {"m1": m1, "m2": m2}, weights, returns, {"m1": 0.0, "m2": 3.0}, 0.0)
    total = sum(d.value for d in daily_portfolio(combined, returns, FACTOR))
    assert out["pnl_per_unit_capital"] == pytest.approx(total)
    parts = out["members"]
    assert sum(p["pnl_per_unit_capital"] for p in parts.values()) == pytest.approx(total, abs=1e-15)
    assert parts[RESIDUAL]["pnl_per_unit_capital"] == pytest.approx(0.0, abs=1e-15)
    assert parts["m1"]["pnl_share"] + parts["m2"]["pnl_share"] == pytest.approx(1.0)
    assert parts["m1"]["pnl_share"] > 1.0 > 0 > parts["m2"]["pnl_share"]  # m2 ranks against the trend
    assert parts["m2"]["cost_share"] == 1.0 and parts["m1"]["cost_share"] == 0.0
    unpriced = attribution(combined, {"m1": m1, "m2": m2}, weights, returns, {"m1": 0.0, "m2": None}, 0.0)
    assert unpriced["cost_usd"] is None and unpriced["members"]["m1"]["cost_share"] is None
