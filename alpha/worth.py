"""What an agent is worth: its portfolio (``alpha.portfolio``) gross and net of its LLM bill, the
capital at which the alpha pays for the model, and, for an agent that combines others, each
member's share of the combined portfolio's PnL and of its cost.

Pure functions; no file, clock or environment is read. ``docs/alpha-quality.md`` ("What an agent is
worth") defines every figure. In short, with a notional ``capital`` per agent (``agents.toml``):

* **cost per as-of date**: the report prices LLM calls per UTC day the calls were made on (its one
  pricing rule, ``meta_supervisor.assemble.agents``). A run made on day ``W`` works for an as-of date
  ``a`` (a replay makes a year of as-of dates in one day); ``cost_by_as_of`` spreads each day's
  priced cost over the as-of dates of the runs whose signals were recorded that day, in proportion to
  the runs (trace ids), so the total is kept. A day with cost and no signal (every run failed)
  cannot be given an as-of date: ``unattributed_cost_usd``;
* **net daily return** ``r_net,d = r_d - cost_d / capital``; **PnL** on the fixed notional
  ``capital * sum_d r_d`` (daily rebalanced to the capital, not compounded);
* **cost share** ``total cost / gross PnL`` (``None`` unless the gross PnL is positive);
* **break-even capital** ``total cost / sum_d r_d``: above it the net PnL is positive (0 without a
  cost; ``None`` with a reason when the gross PnL is not positive: no capital makes the alpha pay);
* an agent with **simulated or unpriced** LLM calls has no net figures (``None`` and ``reason``),
  never a cost of $0.

Reads no environment variables.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from alpha.portfolio import DIRECTIONAL, FACTOR, Day, cumulative_curve, daily_portfolio, equal_weight_returns, factor_weights, performance
from alpha.records import SignalRecord

NS_PER_DAY = 86_400 * 1_000_000_000
RESIDUAL = "(residual)"  # the part of a combined score its members' recorded signals do not explain


def cost_by_as_of(signals: Iterable[SignalRecord], cost_by_day: Mapping[date, float]) -> tuple[dict[date, float], float, dict[date, float]]:
    """Each UTC day's priced cost spread over the as-of dates of the runs that recorded signals that
    day (by run count); returns (cost per as-of date, cost of days without signals, that per day)."""
    runs: dict[date, dict[date, set[str]]] = defaultdict(lambda: defaultdict(set))
    for s in signals:
        day = date.fromordinal(date(1970, 1, 1).toordinal() + s.time_unix_nano // NS_PER_DAY)
        runs[day][s.as_of].add(s.trace_id or f"{s.symbol}@{s.as_of}")  # no trace id: each signal its own run
    out: dict[date, float] = defaultdict(float)
    unattributed: dict[date, float] = {}
    for day, cost in cost_by_day.items():
        if not cost:
            continue
        by_as_of = runs.get(day)
        if not by_as_of:
            unattributed[day] = cost
            continue
        total = sum(len(ids) for ids in by_as_of.values())
        for as_of, ids in by_as_of.items():
            out[as_of] += cost * len(ids) / total
    return dict(out), sum(unattributed.values()), unattributed


def net_figures(days: Sequence[Day], cost: Mapping[date, float] | None, capital: float, not_available: str | None = None) -> dict[str, Any]:
    """Gross and net of ``cost`` (USD per as-of date) on ``capital``: see the module doc.
    ``not_available``: why there is no net figure (simulated or unpriced calls): all ``None``."""
    gross = [d.value for d in days]
    gross_sum = sum(gross)
    out: dict[str, Any] = {
        "capital_usd": capital,
        "gross_pnl_usd": capital * gross_sum if days else None,
        "cost_usd": None,
        "cost_outside_portfolio_days_usd": None,
        "net_pnl_usd": None,
        "cost_share_of_gross_pnl": None,
        "break_even_capital_usd": None,
        "break_even_reason": None,
        "net": None,
        "net_daily": None,
        "reason": not_available,
    }
    if not_available is not None or cost is None:
        return out
    held = {d.as_of for d in days}
    total = sum((v for day, v in cost.items() if day in held), 0.0)
    net = [d.value - cost.get(d.as_of, 0.0) / capital for d in days]
    out["cost_usd"] = total
    out["cost_outside_portfolio_days_usd"] = sum((v for day, v in cost.items() if day not in held), 0.0)
    out["net_pnl_usd"] = capital * gross_sum - total if days else None
    out["net"] = performance(net, [d.as_of for d in days])
    out["net_daily"] = net
    if days and gross_sum > 0:
        out["cost_share_of_gross_pnl"] = total / (capital * gross_sum)
    if not days:
        out["break_even_reason"] = "no portfolio days"
    elif total == 0:
        out["break_even_capital_usd"] = 0.0
        out["break_even_reason"] = "no priced LLM cost to pay for"
    elif gross_sum > 0:
        out["break_even_capital_usd"] = total / gross_sum
    else:
        out["break_even_reason"] = "gross PnL not positive: no capital pays for the model"
    return out


def portfolio_figures(days: Sequence[Day], benchmark: Mapping[date, float | None]) -> dict[str, Any]:
    """``performance`` of a portfolio plus its mean daily turnover and its daily series."""
    from alpha.portfolio import turnover

    values = [d.value for d in days]
    dates = [d.as_of for d in days]
    figures = performance(values, dates, [benchmark.get(day) for day in dates])
    figures["mean_daily_turnover"] = turnover(days)
    return figures


def agent_worth(
    signals: Sequence[SignalRecord],
    returns,
    universe: Sequence[str],
    capital: float,
    cost: Mapping[date, float] | None,
    not_available: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """One agent's ``worth``: both portfolios' figures, and net of ``cost`` (per as-of date, USD) for
    the portfolio the agent's signals are (``kind``; default: ``factor`` when its scores vary within a
    day, which every ranking agent's do, else ``directional``)."""
    books = {k: daily_portfolio(signals, returns, k) for k in (FACTOR, DIRECTIONAL)}
    dates = sorted({d.as_of for book in books.values() for d in book})
    benchmark = equal_weight_returns(dates, universe, returns)
    chosen = kind or (FACTOR if any(d.weights for d in books[FACTOR]) else DIRECTIONAL)
    main = books[chosen]
    net = net_figures(main, cost, capital, not_available)
    gross_values = [d.value for d in main]
    return {
        "portfolio": chosen,
        "factor": portfolio_figures(books[FACTOR], benchmark),
        "directional": portfolio_figures(books[DIRECTIONAL], benchmark),
        **{key: value for key, value in net.items() if key not in ("net", "net_daily")},
        "gross_sharpe": performance(gross_values, [d.as_of for d in main])["sharpe"],
        "net_sharpe": net["net"]["sharpe"] if net["net"] else None,
        "net": net["net"],
        "curve": {
            "dates": [d.as_of.isoformat() for d in main],
            "gross": cumulative_curve(gross_values),
            "net": cumulative_curve(net["net_daily"]) if net["net_daily"] is not None else None,
        },
    }


def attribution(
    combined: Sequence[SignalRecord],
    members: Mapping[str, Sequence[SignalRecord]],
    weights: Mapping[str, float],
    returns,
    member_cost: Mapping[str, float | None],
    own_cost: float | None = 0.0,
) -> dict[str, Any]:
    """Each member's share of a combining agent's factor-portfolio PnL and of its cost.

    The combined score of a symbol is ``sum_m (w_m / W_s) * x_m,s`` over the members with a signal
    for it (``W_s`` their weights' sum). Demeaning is linear, so the day's return
    ``sum_s (e_s - mean e) r_s / G`` (``G`` the day's gross) splits exactly into one term per member,
    ``sum_s (y_m,s - mean_s y_m) r_s / G`` with ``y_m,s = (w_m / W_s) x_m,s``; what the members'
    recorded signals do not explain (a superseded member signal, rounding) is ``(residual)``. Cost:
    the member's priced cost over the combined cost (its own plus its members'); ``None`` when any
    part is not priced."""
    member_scores = {name: {(s.symbol, s.as_of): s.score_final for s in rows} for name, rows in members.items()}
    by_date: dict[date, list[SignalRecord]] = defaultdict(list)
    for s in combined:
        by_date[s.as_of].append(s)
    contributions: dict[str, float] = defaultdict(float)
    total = 0.0
    for day in daily_portfolio(combined, returns, FACTOR):
        scores = {s.symbol: s.score_final for s in by_date[day.as_of] if s.symbol in day.returns}
        weighted = factor_weights(scores)
        if not weighted:
            continue
        mean = sum(scores.values()) / len(scores)
        gross = sum(abs(x - mean) for x in scores.values())
        parts: dict[str, dict[str, float]] = {}
        for symbol in scores:
            present = {m: w for m, w in weights.items() if (symbol, day.as_of) in member_scores.get(m, {})}
            norm = sum(present.values())
            explained = 0.0
            for m, w in present.items():
                y = w / norm * member_scores[m][(symbol, day.as_of)]
                parts.setdefault(m, {})[symbol] = y
                explained += y
            parts.setdefault(RESIDUAL, {})[symbol] = scores[symbol] - explained
        for m, ys in parts.items():
            full = {symbol: ys.get(symbol, 0.0) for symbol in scores}
            mean_m = sum(full.values()) / len(full)
            contributions[m] += sum((y - mean_m) * day.returns[symbol] for symbol, y in full.items()) / gross
        total += day.value
    priced = all(member_cost.get(m) is not None for m in weights) and own_cost is not None
    cost_total = (own_cost or 0.0) + sum(member_cost.get(m) or 0.0 for m in weights) if priced else None
    rows_out = {}
    for m in [*sorted(weights), RESIDUAL]:
        share = contributions.get(m, 0.0) / total if total else None
        cost = member_cost.get(m) if m != RESIDUAL else None
        rows_out[m] = {
            "weight": weights.get(m),
            "pnl_per_unit_capital": contributions.get(m, 0.0),
            "pnl_share": share,
            "cost_usd": cost,
            "cost_share": cost / cost_total if cost_total and cost is not None else None,
        }
    return {"pnl_per_unit_capital": total, "cost_usd": cost_total, "members": rows_out}
