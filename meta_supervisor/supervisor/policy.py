"""The supervisor's policy: when to retire an agent and when to promote one from ``shadow`` to ``live``.

``meta_supervisor/policy.yaml`` holds the thresholds (``docs/policy.md`` documents every key and its
default and allowed range); ``load_policy`` parses it into a ``Policy`` (a missing key takes its default;
an unknown or repeated key, a wrong type or a value out of its range is a one-line ``ConfigError``
naming the key, the value and the range: ``meta_supervisor/supervisor/policy_file.py``). ``agent_figures`` computes, per agent over the
window, the figures the rules judge (runs, error rate, cost per day, p95 latency, IC, its HAC t-stat, hit rate, Brier);
``decide`` turns figures, the kill-switch entries and the agents' statuses into one ``Decision`` per
agent. Both are pure: reading files and writing decisions happen in ``meta_supervisor/supervise.py``.

Boundaries: a retire rule fires when its figure is strictly beyond the threshold (``>``/``<``), with at
least its minimum evidence; a promotion bar is cleared at the threshold (``>=``/``<=``). A threshold set
to ``null`` switches its rule off. A person's revive (``state: revived``) holds a retirement, and a
person's status entry holds a promotion, until the person's entry is removed.

Environment: ``ALPHATRACE_POLICY_FILE`` (path of the policy; default ``meta_supervisor/policy.yaml``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from alpha.forward_returns import ForwardReturns
from alpha.quality import IC_KINDS, primary_ic, score_signals
from alpha.records import RunRecord, SignalRecord
from alpha.worth import agent_worth
from meta_supervisor.assemble.worth import WorthConfig, not_priced_reason
from meta_supervisor.locations import DEFAULT_POLICY_FILE
from meta_supervisor.supervisor.policy_file import MAX_WINDOW_DAYS, count, read_policy_yaml, threshold
from meta_supervisor.tally.latency import percentile
from otel import semconv
from services.agent_status import LIVE, SHADOW, StatusEntry
from services.kill_switch import SUPERVISOR, KillEntry
from services.market_data import MarketData
from settings.config_error import ConfigError

ENV_POLICY_FILE = "ALPHATRACE_POLICY_FILE"
POLICY_VERSION = 1

RETIRE, PROMOTE, KEEP, HOLD = "retire", "promote", "keep", "hold"


@dataclass(frozen=True)
class RetireRules:
    min_runs: int = 20
    min_scored_signals: int = 200
    error_rate_above: float | None = 0.25
    cost_per_day_usd_above: float | None = 20.0
    p95_latency_ms_above: float | None = 120_000.0
    ic_below: float | None = -0.05
    ic_t_stat_below: float | None = -2.0
    # what the agent is worth (alpha.worth): judged once its portfolio has min_portfolio_days days;
    # off unless set. "Not available" (simulated or unpriced calls, or a gross PnL that is not
    # positive for the break-even capital) is never judged: no retirement on an unknown bill.
    min_portfolio_days: int = 60
    net_sharpe_below: float | None = None
    break_even_capital_usd_above: float | None = None


@dataclass(frozen=True)
class PromoteRules:
    min_runs: int = 40
    min_scored_signals: int = 300
    error_rate_at_most: float | None = 0.02
    cost_per_day_usd_at_most: float | None = 5.0
    p95_latency_ms_at_most: float | None = 30_000.0
    ic_at_least: float | None = 0.03
    ic_t_stat_at_least: float | None = 2.0
    hit_rate_at_least: float | None = 0.5
    brier_at_most: float | None = 0.25


@dataclass(frozen=True)
class Policy:
    window_days: int = 120
    horizons: tuple[int, ...] = (1, 5, 10)
    primary_horizon: int = 5
    ic_kind: str = "auto"
    min_cross_section: int = 5
    min_time_series: int = 20
    min_ic_dates: int = 10
    retire: RetireRules = field(default_factory=RetireRules)
    promote: PromoteRules = field(default_factory=PromoteRules)
    source: str = "defaults"


# --- parsing ---------------------------------------------------------------------------------


def _table(raw: Mapping[str, Any], key: str, allowed: Iterable[str], source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key} must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{source}: unknown key {key}.{unknown[0]} (allowed: {', '.join(sorted(allowed))})")
    return value


def _rules(cls: type, raw: Mapping[str, Any], section: str, source: str, table: tuple) -> Any:
    """A section's rules: ``min_*`` at least 1 (a rule judged on no evidence retires on nothing), each
    threshold null or within its figure's range (``policy_file.FIGURE_RANGES``)."""
    names = [f.name for f in fields(cls)]
    figure_of = {key: figure for key, figure, _op, _evidence in table}
    given = _table(raw, section, names, source)
    values = {}
    for name in names:
        if name not in given:
            continue
        key = f"{section}.{name}"
        values[name] = count(given[name], key, source) if name.startswith("min_") else threshold(given[name], key, figure_of[name], source)
    return cls(**values)


def parse_policy(raw: Any, source: str = "policy") -> Policy:
    """A ``Policy`` from the parsed YAML document; ``ConfigError`` naming the key otherwise."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with window, scoring, retire and promote, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"version", "window", "scoring", "retire", "promote"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (allowed: version, window, scoring, retire, promote)")
    version = raw.get("version", POLICY_VERSION)
    if version != POLICY_VERSION:
        raise ConfigError(f"{source}: version must be {POLICY_VERSION}, got {version!r}")
    defaults = Policy()
    window = _table(raw, "window", ["days"], source)
    scoring = _table(
        raw, "scoring", ["horizons", "primary_horizon", "ic_kind", "min_cross_section", "min_time_series", "min_ic_dates"], source
    )
    horizons = scoring.get("horizons", list(defaults.horizons))
    if not isinstance(horizons, list) or not horizons:
        raise ConfigError(f"{source}: scoring.horizons must be a non-empty list of trading-day counts, got {horizons!r}")
    parsed_horizons = tuple(sorted({count(h, "scoring.horizons[]", source) for h in horizons}))
    primary = count(scoring.get("primary_horizon", defaults.primary_horizon), "scoring.primary_horizon", source)
    if primary not in parsed_horizons:
        raise ConfigError(f"{source}: scoring.primary_horizon {primary} must be one of scoring.horizons {list(parsed_horizons)}")
    ic_kind = scoring.get("ic_kind", defaults.ic_kind)
    if ic_kind not in ("auto", *IC_KINDS):
        raise ConfigError(f"{source}: scoring.ic_kind must be auto, cross_sectional or time_series, got {ic_kind!r}")
    return Policy(
        window_days=count(window.get("days", defaults.window_days), "window.days", source, 1, MAX_WINDOW_DAYS),
        horizons=parsed_horizons,
        primary_horizon=primary,
        ic_kind=ic_kind,
        min_cross_section=count(scoring.get("min_cross_section", defaults.min_cross_section), "scoring.min_cross_section", source, 2),
        min_time_series=count(scoring.get("min_time_series", defaults.min_time_series), "scoring.min_time_series", source, 2),
        min_ic_dates=count(scoring.get("min_ic_dates", defaults.min_ic_dates), "scoring.min_ic_dates", source),
        retire=_rules(RetireRules, raw, "retire", source, _RETIRE_RULES),
        promote=_rules(PromoteRules, raw, "promote", source, _PROMOTE_RULES),
        source=source,
    )


def policy_path(path: str | os.PathLike | None = None) -> Path:
    """Argument beats ``ALPHATRACE_POLICY_FILE`` beats ``meta_supervisor/policy.yaml``."""
    return Path(path or os.environ.get(ENV_POLICY_FILE) or DEFAULT_POLICY_FILE)


def load_policy(path: str | os.PathLike | None = None) -> Policy:
    target = policy_path(path)
    try:
        raw = read_policy_yaml(target)
    except FileNotFoundError:
        raise ConfigError(f"policy file {target} does not exist (set {ENV_POLICY_FILE})") from None
    return parse_policy(raw, source=f"policy file {target}")


# --- figures ---------------------------------------------------------------------------------


def window_bounds(runs: Iterable[RunRecord], policy: Policy, until: date | None = None) -> tuple[date, date] | None:
    """(first, last) as-of day of the window: ``window_days`` calendar days ending at ``until`` or at
    the latest run's as-of date; ``None`` when no run has an as-of date."""
    end = until or max((r.as_of for r in runs if r.as_of is not None), default=None)
    if end is None:
        return None
    try:
        return end - timedelta(days=policy.window_days - 1), end
    except OverflowError:  # a window reaching back before year 1
        return date.min, end


# outcomes left out of the runs judged (error rate, latency, run days): killed (skipped, or stopped
# mid-run), refused on stale data, stopped by a budget
_NOT_JUDGED = (semconv.OUTCOME_KILLED, semconv.OUTCOME_STALE_DATA, semconv.OUTCOME_BUDGET_EXCEEDED)


def agent_figures(
    runs: Iterable[RunRecord],
    signals: Iterable[SignalRecord],
    market: MarketData,
    policy: Policy,
    until: date | None = None,
    today: date | None = None,
    worth: WorthConfig | None = None,
) -> dict[str, dict[str, Any]]:
    """Per agent, the figures over the window (``docs/policy.md``); ``worth``: each agent's capital
    and the combining agents' members (``agents.toml``; default: every agent on the default capital). Killed runs (before they started or
    mid-run) and runs stopped by a budget are counted apart and are not part of the error rate or
    latency: neither is an error of the agent, and a stopped run's duration is not a whole run's. Their
    cost counts."""
    runs = list(runs)
    bounds = window_bounds(runs, policy, until)
    if bounds is None:
        return {}
    first, last = bounds
    in_window = [r for r in runs if r.as_of is not None and first <= r.as_of <= last]
    window_signals = [s for s in signals if first <= s.as_of <= last]
    costs: dict[str, float] = {}
    for r in in_window:
        costs[r.agent] = costs.get(r.agent, 0.0) + r.cost_usd
    quality = score_signals(
        window_signals,
        market,
        costs,
        policy.horizons,
        today,
        policy.primary_horizon,
        policy.min_cross_section,
        policy.min_time_series,
        policy.ic_kind,
    )
    out: dict[str, dict[str, Any]] = {}
    for agent in sorted({r.agent for r in in_window} | set(quality["agents"])):
        mine = [r for r in in_window if r.agent == agent]
        ran = [r for r in mine if r.outcome not in _NOT_JUDGED]  # skipped or stopped: not judged as runs
        errors = sum(1 for r in ran if r.outcome == "error")
        days = len({r.as_of for r in ran})
        cost = sum(r.cost_usd for r in mine)
        agent_quality = quality["agents"].get(agent)
        cell = agent_quality["horizons"][str(policy.primary_horizon)] if agent_quality else None
        ic = primary_ic(agent_quality, policy.primary_horizon, policy.ic_kind, policy.min_ic_dates) if agent_quality else {}
        last_run = max(mine, key=lambda r: (r.as_of, r.start_unix_nano), default=None)
        out[agent] = {
            "window_first": first.isoformat(),
            "window_last": last.isoformat(),
            "runs": len(ran),
            "errors": errors,
            "killed_runs": sum(1 for r in mine if r.outcome == semconv.OUTCOME_KILLED),
            "budget_stops": sum(1 for r in mine if r.outcome == semconv.OUTCOME_BUDGET_EXCEEDED),
            "error_rate": errors / len(ran) if ran else None,
            "run_days": days,
            "cost_usd": cost,
            "cost_per_day_usd": cost / days if days else None,
            "unpriced_llm_calls": sum(r.unpriced_llm_calls for r in mine),
            "simulated_llm_calls": sum(r.llm_calls for r in mine if r.simulated),
            "p95_latency_ms": percentile(sorted(r.duration_ms for r in ran), 95),
            "horizon": policy.primary_horizon,
            "scored_signals": cell["scored"] if cell else 0,
            "pending_signals": cell["pending"] if cell else 0,
            "ic": ic.get("mean"),
            "ic_kind": ic.get("kind"),
            "ic_t_stat": ic.get("t_stat"),
            "ic_t_stat_hac": ic.get("t_stat_hac"),
            "ic_hac_lags": ic.get("hac_lags"),
            "ic_n": ic.get("n", 0),
            "hit_rate": cell["hit_rate"] if cell else None,
            "brier": cell["brier"] if cell else None,
            "last_run": {"trace_id": last_run.trace_id, "span_id": last_run.span_id} if last_run else None,
        }
    returns = ForwardReturns(market, today)
    for agent, figures in out.items():
        figures.update(_worth_figures(agent, out, window_signals, in_window, returns, worth or WorthConfig()))
    return out


def _worth_figures(agent: str, figures: Mapping[str, Mapping[str, Any]], signals, runs, returns, config: WorthConfig) -> dict[str, Any]:
    """Net Sharpe and break-even capital over the window (``alpha.worth``), the cost per as-of date
    the runs' own (a combining agent's bill includes its members', as in the report's worth section)."""
    mine = [s for s in signals if s.agent == agent]
    members = sorted(m for m, w in config.members.get(agent, {}).items() if w > 0)
    parts = [agent, *members]
    cost: dict[date, float] = {}
    for r in runs:
        if r.agent in parts and r.as_of is not None:
            cost[r.as_of] = cost.get(r.as_of, 0.0) + r.cost_usd
    reasons = [
        f"{part}: {why}" if part != agent else why
        for part in parts
        if part in figures and (why := not_priced_reason(figures[part]["simulated_llm_calls"], figures[part]["unpriced_llm_calls"]))
    ]
    universe = list(config.universe) or sorted({s.symbol for s in signals})
    entry = agent_worth(mine, returns, universe, float(config.capital.get(agent, config.default_capital)), cost, "; ".join(reasons) or None)
    return {
        "portfolio_days": len(entry["curve"]["dates"]),
        "gross_sharpe": entry["gross_sharpe"],
        "net_sharpe": entry["net_sharpe"],
        "break_even_capital_usd": entry["break_even_capital_usd"],
        "capital_usd": entry["capital_usd"],
        "worth_reason": entry["reason"] or entry["break_even_reason"],
    }


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One rule against one agent's figures. ``met`` is whether the condition holds (a retire rule
    crossed, a promote bar cleared); ``judged`` is False when the evidence is below the minimum."""

    rule: str
    figure: str
    value: float | None
    op: str
    threshold: float
    met: bool
    judged: bool

    def describe(self) -> str:
        """``ic -0.09762 < -0.05`` when met; ``ic -0.01 >= 0.03: no`` when not, with why if not judged."""
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        note = (
            ""
            if self.met
            else ": no"
            if self.judged
            else ": not judged (not available)"
            if self.value is None
            else ": not judged (too little evidence)"
        )
        return f"{self.figure} {value} {self.op} {self.threshold:g}{note}"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_OPS = {">": lambda v, t: v > t, "<": lambda v, t: v < t, ">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t}
# (threshold key in the rules, figure, comparison, evidence: "runs" or "signals"), in the order rules are reported.
# The t-stat rules judge the Newey-West ic_t_stat_hac; the plain ic_t_stat is inflated at h > 1, shown only.
_RETIRE_RULES = (
    ("error_rate_above", "error_rate", ">", "runs"),
    ("cost_per_day_usd_above", "cost_per_day_usd", ">", "runs"),
    ("p95_latency_ms_above", "p95_latency_ms", ">", "runs"),
    ("ic_below", "ic", "<", "signals"),
    ("ic_t_stat_below", "ic_t_stat_hac", "<", "signals"),
    ("net_sharpe_below", "net_sharpe", "<", "days"),
    ("break_even_capital_usd_above", "break_even_capital_usd", ">", "days"),
)
_PROMOTE_RULES = (
    ("error_rate_at_most", "error_rate", "<=", "runs"),
    ("cost_per_day_usd_at_most", "cost_per_day_usd", "<=", "runs"),
    ("p95_latency_ms_at_most", "p95_latency_ms", "<=", "runs"),
    ("ic_at_least", "ic", ">=", "signals"),
    ("ic_t_stat_at_least", "ic_t_stat_hac", ">=", "signals"),
    ("hit_rate_at_least", "hit_rate", ">=", "signals"),
    ("brier_at_most", "brier", "<=", "signals"),
)


def _checks(section: str, table: tuple, figures: Mapping[str, Any], rules: RetireRules | PromoteRules) -> list[Check]:
    """The switched-on rules of ``table``; a rule with less evidence than its minimum is not judged."""
    evidence = {
        "runs": figures["runs"] >= rules.min_runs,
        "signals": figures["scored_signals"] >= rules.min_scored_signals,
        "days": figures.get("portfolio_days", 0) >= getattr(rules, "min_portfolio_days", 1),
    }
    out = []
    for key, figure, op, kind in table:
        threshold = getattr(rules, key)
        if threshold is None:
            continue
        value = figures[figure]
        judged = evidence[kind] and value is not None
        out.append(Check(f"{section}.{key}", figure, value, op, threshold, judged and _OPS[op](value, threshold), judged))
    return out


def retire_checks(figures: Mapping[str, Any], rules: RetireRules) -> list[Check]:
    return _checks("retire", _RETIRE_RULES, figures, rules)


def promote_checks(figures: Mapping[str, Any], rules: PromoteRules) -> list[Check]:
    return _checks("promote", _PROMOTE_RULES, figures, rules)


def _ic_crossed(checks: list[Check]) -> list[Check]:
    """The IC mean and its t-stat are one rule: both must be crossed (the t-stat alone if no mean)."""
    ic = [c for c in checks if c.figure in ("ic", "ic_t_stat_hac")]
    crossed = [c for c in checks if c not in ic and c.met]
    if ic and all(c.met for c in ic):
        crossed.extend(ic)
    return crossed


@dataclass(frozen=True)
class Decision:
    agent: str
    action: str  # retire | promote | keep | hold
    rule: str  # the rule that decided, e.g. retire.ic_below; "none" for keep
    reason: str
    status: str  # shadow | live before the decision
    killed: bool  # before the decision
    figures: dict[str, Any]
    checks: tuple[Check, ...] = ()
    held_by: dict[str, Any] | None = None  # the person's entry that holds a retirement/promotion

    @property
    def would(self) -> str:
        """What the policy wants: the action, or for a hold the action it holds back."""
        return self.rule.split(".")[0] if self.action == HOLD else self.action

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(would=self.would, figures=dict(self.figures), checks=[c.to_json() for c in self.checks])
        return out


def _person(entry: KillEntry | StatusEntry) -> dict[str, Any]:
    state = entry.state if isinstance(entry, KillEntry) else entry.status
    return {"by": entry.by, "at": entry.at, "reason": entry.reason, "state": state}


def decide_one(
    agent: str, figures: Mapping[str, Any], policy: Policy, status: str, kill_entry: KillEntry | None, status_entry: StatusEntry | None
) -> Decision:
    killed = kill_entry is not None and kill_entry.killed
    retire = retire_checks(figures, policy.retire)
    crossed = _ic_crossed(retire)

    def made(action: str, rule: str, reason: str, checks: list[Check], held_by: dict[str, Any] | None = None) -> Decision:
        return Decision(agent, action, rule, reason, status, killed, dict(figures), tuple(checks), held_by)

    if killed:
        return made(KEEP, "none", f"already killed by {kill_entry.by or 'unknown'}: {kill_entry.reason}", retire)
    if crossed:
        why = "; ".join(c.describe() for c in crossed)
        if kill_entry is not None:  # state revived: a person's revive wins until it is cleared
            reason = f"would retire ({why}) but {kill_entry.by} revived it at {kill_entry.at}"
            return made(HOLD, crossed[0].rule, reason, retire, _person(kill_entry))
        return made(RETIRE, crossed[0].rule, why, retire)
    if status != SHADOW:
        return made(KEEP, "none", f"{status}; no retire rule crossed", retire)
    promote = promote_checks(figures, policy.promote)
    failing = [c for c in promote if not c.met]
    if failing or not promote:
        why = "; ".join(c.describe() for c in failing) or "no promotion rule is switched on"
        return made(KEEP, "none", f"shadow; not promoted: {why}", retire + promote)
    why = "; ".join(c.describe() for c in promote)
    if status_entry is not None and status_entry.by != SUPERVISOR and status_entry.status == SHADOW:
        reason = f"would promote ({why}) but {status_entry.by} set it to shadow at {status_entry.at}"
        return made(HOLD, "promote.bar", reason, retire + promote, _person(status_entry))
    return made(PROMOTE, "promote.bar", why, retire + promote)


def decide(
    figures: Mapping[str, Mapping[str, Any]],
    policy: Policy,
    statuses: Mapping[str, str],
    kill_entries: Mapping[str, KillEntry],
    status_entries: Mapping[str, StatusEntry] | None = None,
) -> list[Decision]:
    """One decision per agent with figures, in name order. ``statuses`` is the effective status per
    agent (``live`` when unknown); ``status_entries`` the status file's entries (who set what)."""
    status_entries = status_entries or {}
    return [
        decide_one(agent, figures[agent], policy, statuses.get(agent, LIVE), kill_entries.get(agent), status_entries.get(agent))
        for agent in sorted(figures)
    ]
