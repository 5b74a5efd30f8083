"""The figures "needs attention" flags, each only past its threshold (``ATTENTION_THRESHOLDS``).

A figure is flagged when it is strictly above its threshold, so a healthy fleet's list is empty (a
p95 of 47 ms is nobody's problem): the highest LLM cost per day, error rate and p95 latency (one agent
each, ties to the first name), then per agent invalid alpha signals and successful runs that returned
no valid signal. Each item is ``{kind, agent, value, threshold, why}`` (docs/report-schema.md).

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meta_supervisor.assemble.agents import cost_text
from services.pricing import format_usd

# error rate and invalid share as fractions, p95 in ms, cost in USD per day with runs or LLM calls
# (the supervisor's promotion bar for cost: docs/policy.md)
ATTENTION_THRESHOLDS = {"error_rate": 0.05, "p95_latency_ms": 30_000.0, "cost_per_day_usd": 5.0, "invalid_signal_share": 0.01}


def count_of(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {plural or noun + 's'}"


def _cost_per_day(report: Mapping[str, Any]) -> float:
    days = sum(1 for row in report["days"] if row["runs"] or row["llm_calls"])
    return (report["cost_usd"] or 0.0) / max(days, 1)


def _invalid_share(report: Mapping[str, Any]) -> float:
    emitted = report["alpha_signals"] + report["invalid_signals"]
    return report["invalid_signals"] / emitted if emitted else 0.0


def _top(agents: Mapping[str, Mapping[str, Any]], figure: Callable, limit: float) -> tuple[str, float] | None:
    """The agent with the highest figure above ``limit`` (ties: the first name), or None."""
    candidates = [(figure(report), name) for name, report in agents.items()]
    candidates = [(value, name) for value, name in candidates if value is not None and value > limit]
    if not candidates:
        return None
    value, name = min(candidates, key=lambda item: (-item[0], item[1]))
    return name, value


def threshold_items(agents: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    limits = ATTENTION_THRESHOLDS
    items: list[dict[str, Any]] = []
    found = _top(agents, _cost_per_day, limits["cost_per_day_usd"])
    if found:
        name, per_day = found
        why = f"highest LLM cost: {cost_text(agents[name])}, {format_usd(per_day)} a day (above {format_usd(limits['cost_per_day_usd'])})"
        items.append(
            {"kind": "highest_cost", "agent": name, "value": agents[name]["cost_usd"], "threshold": limits["cost_per_day_usd"], "why": why}
        )
    found = _top(agents, lambda report: report["error_rate"], limits["error_rate"])
    if found:
        why = f"highest error rate: {found[1]:.1%} (above {limits['error_rate']:.1%})"
        items.append({"kind": "highest_error_rate", "agent": found[0], "value": found[1], "threshold": limits["error_rate"], "why": why})
    found = _top(agents, lambda report: report["p95_latency_ms"], limits["p95_latency_ms"])
    if found:
        why = f"slowest p95 latency: {found[1]:,.1f} ms (above {limits['p95_latency_ms']:,.0f} ms)"
        items.append({"kind": "slowest_p95", "agent": found[0], "value": found[1], "threshold": limits["p95_latency_ms"], "why": why})
    for name, report in agents.items():
        share = _invalid_share(report)
        if share > limits["invalid_signal_share"]:
            reasons = report["invalid_signal_reasons"]
            first = f"; most often: {next(iter(reasons))}" if reasons else ""
            emitted = report["alpha_signals"] + report["invalid_signals"]
            why = f"{count_of(report['invalid_signals'], 'invalid alpha signal')} of {emitted} ({share:.1%}){first}"
            items.append(
                {
                    "kind": "invalid_signals",
                    "agent": name,
                    "value": report["invalid_signals"],
                    "threshold": limits["invalid_signal_share"],
                    "why": why,
                }
            )
        ok_runs = report["outcomes"].get("ok", 0)
        if ok_runs and not report["alpha_signals"]:
            why = f"{count_of(ok_runs, 'successful run')} and no valid alpha signal"
            items.append({"kind": "no_signals", "agent": name, "value": ok_runs, "why": why})
    return items
