"""The report's ``worth`` section: what each agent's signals earn as a portfolio, gross and net of
its LLM bill, a fleet ranking by net Sharpe, and each member's share of a combining agent's PnL and cost.

A pure function of what the build kept: the signals (``signal_store``, the last per agent, symbol and
as-of day), each agent's priced cost per day (the ``days`` of its section: the report's one pricing
rule, ``assemble.agents``; never priced a second way) and a ``WorthConfig`` (capital per agent, the
combining agents' members and weights, the universe: from ``agents/agents.toml``, read by the
command). The figures are ``alpha.worth``'s (``docs/alpha-quality.md``).

An agent with simulated or unpriced LLM calls has no net figures (``reason`` says why); so has a
combining agent any of whose members does: the combined portfolio cannot exist without its members'
runs, so its bill is its own plus theirs (``cost_basis``). Daily curves are kept for at most
``MAX_CURVES`` agents (the top of the ranking), so the report stays small for a large fleet.

Reads no environment variables, no files and no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_CURVES = 12


@dataclass(frozen=True)
class WorthConfig:
    """What the worth section needs from the fleet configuration."""

    capital: Mapping[str, float] = field(default_factory=dict)  # agent -> notional capital (USD)
    default_capital: float = 1_000_000.0
    members: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # combining agent -> member -> weight
    universe: Sequence[str] = ()  # the benchmark's symbols; empty: every symbol an agent signalled
    source: str | None = None


def not_priced_reason(simulated: int, unpriced: int, models: Sequence[str] = ()) -> str | None:
    """Why an agent has no net figures (its bill is not known), or None: the one wording, the
    report's and the supervisor's."""
    parts = []
    if simulated:
        parts.append(f"{simulated:,} simulated LLM calls (not priced)")
    if unpriced:
        parts.append(f"{unpriced:,} unpriced LLM calls" + (f" ({', '.join(models)})" if models else ""))
    return "; ".join(parts) or None


def _unpriced_reason(report: Mapping[str, Any]) -> str | None:
    return not_priced_reason(report["simulated_llm_calls"], report["unpriced_llm_calls"], report["unpriced_models"])


def _cost_by_day(report: Mapping[str, Any]) -> dict[dt.date, float]:
    out = {}
    for row in report["days"]:
        try:
            out[dt.date.fromisoformat(row["date"])] = row["cost_usd"]
        except ValueError:  # "unknown": a span without a start time; its cost stays in the totals
            continue
    return out


def worth_section(
    tallies: Mapping[str, Any],
    agents: Mapping[str, Mapping[str, Any]],
    market: Any,
    today: dt.date,
    config: WorthConfig,
    as_of: tuple[dt.date | None, dt.date | None] = (None, None),
) -> dict[str, Any] | None:
    """``worth``: per agent with at least one portfolio day (a signal whose next-day return is
    realised) its portfolios and net figures, the ranking, the attribution of each combining agent;
    ``None`` when no agent has a signal."""
    from alpha.forward_returns import ForwardReturns
    from alpha.worth import agent_worth, attribution, cost_by_as_of

    since, until = as_of

    def records(name: str) -> list:
        tally = tallies.get(name)
        store = tally.signals if tally is not None else None
        if store is None or not len(store):
            return []
        return [r for r in store.records(name) if (since is None or r.as_of >= since) and (until is None or r.as_of <= until)]

    returns = ForwardReturns(market, today)
    universe = list(config.universe)
    if not universe:  # every symbol any agent signalled
        found: set[str] = set()
        for name in tallies:
            found.update(r.symbol for r in records(name))
        universe = sorted(found)
    # One agent's records at a time (a fleet of 1,000 agents must not hold all of them at once);
    # a combining agent's members' are read again for its attribution.
    costs: dict[str, tuple[dict, float, str | None]] = {}

    def own(name: str, rows: list | None = None) -> tuple[dict, float, str | None]:
        if name not in costs:
            report = agents.get(name)
            if report is None:
                costs[name] = ({}, 0.0, None)
            else:
                per_as_of, unattributed, _ = cost_by_as_of(records(name) if rows is None else rows, _cost_by_day(report))
                costs[name] = (per_as_of, unattributed, _unpriced_reason(report))
        return costs[name]

    out: dict[str, Any] = {}
    without_days = 0
    for name in sorted(tallies):
        rows = records(name)
        if not rows:
            continue
        if not any(returns.get(s.symbol, s.as_of, 1).scored for s in rows):
            without_days += 1  # signals, but none with a realised next-day return yet (or no data)
            continue
        members = {m: w for m, w in config.members.get(name, {}).items() if w > 0}
        parts = [name, *sorted(members)]
        own(name, rows)
        why = "; ".join(f"{p}: {own(p)[2]}" if p != name else own(p)[2] for p in parts if own(p)[2])
        cost: dict[dt.date, float] = {}
        for part in parts:
            for day, value in own(part)[0].items():
                cost[day] = cost.get(day, 0.0) + value
        capital = float(config.capital.get(name, config.default_capital))
        entry = agent_worth(rows, returns, universe, capital, cost, why or None)
        entry["cost_basis"] = "own and members'" if members else "own"
        entry["members"] = sorted(members)
        entry["unattributed_cost_usd"] = sum(own(p)[1] for p in parts)
        if members:
            member_total = {m: None if own(m)[2] else sum(own(m)[0].values(), 0.0) for m in members}
            entry["attribution"] = attribution(
                rows, {m: records(m) for m in members}, members, returns, member_total, None if own(name)[2] else 0.0
            )
        else:
            entry["attribution"] = None
        out[name] = entry
    if not out and not without_days:
        return None
    ranked = sorted((n for n in out if out[n]["net_sharpe"] is not None), key=lambda n: (-out[n]["net_sharpe"], n))
    rest = sorted(n for n in out if out[n]["net_sharpe"] is None)
    for name in [*ranked, *rest][MAX_CURVES:]:
        out[name]["curve"] = None
    return {
        "holding_days": 1,
        "universe": universe,
        "config": config.source,
        "default_capital_usd": config.default_capital,
        "ranking": [
            {"agent": n, "net_sharpe": out[n]["net_sharpe"], "gross_sharpe": out[n]["gross_sharpe"], "reason": out[n]["reason"]}
            for n in [*ranked, *rest]
        ],
        "curves_omitted": max(0, len(out) - MAX_CURVES),
        "agents_without_portfolio_days": without_days,
        "agents": out,
    }
