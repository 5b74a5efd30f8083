"""The report's ``alpha_quality`` and ``supervisor`` sections: pure functions of what the build read.

``alpha_quality_section`` scores the signals the build kept (the last per agent, symbol and as-of
day: ``signal_store``) with ``alpha.quality.score_signals`` against the market data it is handed,
with each agent's priced LLM cost from the report, and adds what only the report knows: how many
``alphatrace.alpha.signal`` events could not be scored at all, and which market data was used. Per-date IC
lists (``daily``) are left out when the section would hold more than ``MAX_DAILY_POINTS`` of them,
so the report stays small (``daily_omitted`` says so).

Symbols come from span data, which anyone can write: ``services.market_data.CsvMarketData`` only loads
the symbols its folder lists, so a symbol such as ``../../x`` is "no data", never a file path.

``supervisor_section`` is the supervisor's latest audited decision per agent next to the kill-switch
entries as they are now (``assemble.decisions.decisions_section``), so a person's revive is shown
beside the retirement the policy holds back.

Reads no environment variables, no files and no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel import semconv

MAX_DAILY_POINTS = 1000


def _source(market: Any) -> str | None:
    folder = getattr(market, "folder", None)
    return str(folder) if folder is not None else type(market).__name__


def kept_signals(tallies: Mapping[str, Any], as_of: tuple[dt.date | None, dt.date | None] = (None, None)) -> tuple[list, int, int]:
    """The signals the build kept (``SignalRecord``s, agents by name) with an as-of day in ``as_of``
    (first, last: both included; None: open), and how many were superseded and unusable."""
    signals = []
    superseded = unusable = 0
    since, until = as_of
    for name in sorted(tallies):
        store = tallies[name].signals
        if store is None:
            continue
        signals.extend(r for r in store.records(name) if (since is None or r.as_of >= since) and (until is None or r.as_of <= until))
        superseded += store.total - len(store)
        unusable += store.unusable
    return signals, superseded, unusable


def alpha_quality_section(
    tallies: Mapping[str, Any],
    agents: Mapping[str, Mapping[str, Any]],
    market: Any,
    today: dt.date,
    as_of: tuple[dt.date | None, dt.date | None] = (None, None),
) -> dict[str, Any]:
    """``alpha_quality``: ``tallies`` name -> ``AgentTally`` (with ``signals``), ``agents`` the report's
    per-agent sections (for ``cost_usd``), ``today`` the last day a forward return may end on; only
    signals with an as-of day in ``as_of`` (first, last: both included; None: open) are scored."""
    from alpha.quality import score_signals

    signals, superseded, unusable = kept_signals(tallies, as_of)
    costs = {name: report["cost_usd"] for name, report in agents.items() if report["cost_usd"]}
    section = score_signals(signals, market, costs, today=today, superseded=superseded)
    section["unusable_signals"] = unusable
    section["market_data"] = _source(market)
    cells = [cell for agent in section["agents"].values() for cell in agent["horizons"].values()]
    points = sum(len(cell["ic_cross_sectional"]["daily"]) for cell in cells)
    section["daily_omitted"] = points > MAX_DAILY_POINTS
    if section["daily_omitted"]:
        for cell in cells:
            cell["ic_cross_sectional"]["daily"] = None
    return section


@dataclass
class AuditState:
    """The supervisor's audit log as read (``meta_supervisor.supervisor.audit.read_audit``), or why it could not be."""

    path: str
    records: Sequence[Mapping[str, Any]] = field(default_factory=list)
    error: str | None = None


def kill_entry_json(entry: Any) -> dict[str, Any]:
    """A kill-switch entry as the report shows it: always with its ``state``."""
    body = entry.to_json() if hasattr(entry, "to_json") else {"reason": str(getattr(entry, "reason", ""))}
    return {"state": getattr(entry, "state", "killed"), **body}


def supervisor_section(audit: AuditState | None, kill_entries: Mapping[str, Any]) -> dict[str, Any]:
    """``supervisor``: the latest decision per agent, the kill-switch entries now, and the log read."""
    from meta_supervisor.assemble.decisions import decisions_section

    section = decisions_section(audit.records if audit else [], {name: kill_entry_json(e) for name, e in kill_entries.items()})
    held = sorted(name for name, d in section["agents"].items() if d.get("action") == "hold")
    return {
        "audit_log": audit.path if audit else None,
        "error": audit.error if audit else None,
        "held": held,
        **section,
    }


# --- what the Markdown and HTML pages show of the two sections ---------------------------------------


def trimmed_alpha(section: Mapping[str, Any], max_agents: int, max_symbols: int) -> tuple[dict[str, Any], int]:
    """The section with at most ``max_agents`` agents (most scored signals at the primary horizon,
    then name) and ``max_symbols`` symbols each in the per-symbol breakdown; and how many agents were
    left out. The JSON keeps everything; the pages must stay readable (and a PR comment short)."""
    h = str(section["primary_horizon"])
    agents = section["agents"]

    def scored(name: str) -> int:
        cell = agents[name]["horizons"].get(h)
        return cell["scored"] if cell else 0

    keep = sorted(sorted(agents, key=lambda name: (-scored(name), name))[:max_agents])
    out: dict[str, Any] = {}
    for name in keep:
        data = agents[name]
        cell = data["horizons"].get(h)
        if cell and len(cell["by_symbol"]) > max_symbols:
            by_symbol = cell["by_symbol"]
            top = sorted(sorted(by_symbol, key=lambda s: (-by_symbol[s]["scored"], s))[:max_symbols])
            data = {**data, "horizons": {**data["horizons"], h: {**cell, "by_symbol": {s: by_symbol[s] for s in top}}}}
        out[name] = data
    return {**section, "agents": out}, len(agents) - len(out)


def alpha_notes(unusable: int, left_out: int, rest_in: str, event: str = semconv.EVENT_ALPHA_SIGNAL) -> list[str]:
    """The notes under the alpha-quality tables, as plain text for the page to escape: ``unusable``
    signals that could not be scored, ``left_out`` agents (``trimmed_alpha``) that are only in ``rest_in``."""
    notes = []
    if unusable:
        notes.append(f"{unusable:,} {event} events lack what scoring needs (as-of date, horizon, numbers) and are not scored.")
    if left_out:
        notes.append(f"{left_out:,} more agents in {rest_in}.")
    return notes


def trimmed_supervisor(section: Mapping[str, Any], max_rows: int) -> tuple[dict[str, Any], int]:
    """At most ``max_rows`` decisions (holds first, then retire/promote, then the rest, by name) and
    kill-switch entries (a person's revive first); and how many were left out."""
    rank = {"hold": 0, "retire": 1, "promote": 1}
    decisions = section["agents"]
    keep = sorted(sorted(decisions, key=lambda name: (rank.get(decisions[name].get("action"), 2), name))[:max_rows])
    entries = section["kill_switch"]
    keep_entries = sorted(sorted(entries, key=lambda name: (entries[name].get("state") == "killed", name))[:max_rows])
    left_out = len(decisions) - len(keep) + len(entries) - len(keep_entries)
    return {**section, "agents": {n: decisions[n] for n in keep}, "kill_switch": {n: entries[n] for n in keep_entries}}, left_out
