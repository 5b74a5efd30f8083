"""The meta report as a pure function: tallies + price table + kill-switch state + clock -> a dict.

No I/O here: ``build_report`` is handed everything it needs, including ``now`` (so golden tests are
deterministic), the kill-switch state and the supervisor's audit log already read (or the error
reading them produced) and the market data to score alpha signals against (``alpha``). The dict
it returns is what ``meta_report.json`` holds; its keys are documented in ``docs/report-schema.md``
and only ever added to, never renamed, while ``schema_version`` stays 1.

Numbers: latencies in milliseconds rounded to 3 decimals, percentiles by linear interpolation
between closest ranks (numpy's default), costs in USD rounded to 8 decimals and priced from integer
token sums per model (so the total does not depend on the order spans were read in); cached input
tokens are billed at the cached rate; simulated calls are counted and labelled, never priced; a model
missing from the price table makes its calls ``unpriced`` (listed by name), never $0.

Reads no environment variables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from meta_supervisor.assemble.agents import (  # the number helpers are re-exported from here
    agent_report,
    fleet_calls_per_run,
    is_killed,
    iso_day,
    iso_time,
    jaeger_link,
    ms,
    priced_sum,
    rate,
    stops_section,
    url_segment,
    usd,
)
from meta_supervisor.assemble.alpha import AuditState, alpha_quality_section, supervisor_section
from meta_supervisor.assemble.attention import count_of as _count
from meta_supervisor.assemble.attention import threshold_items
from meta_supervisor.assemble.worth import WorthConfig, worth_section
from meta_supervisor.build.options import BuildInputs
from meta_supervisor.tally.agent_counts import with_deferred
from meta_supervisor.tally.aggregates import AgentTally
from meta_supervisor.tally.bounds import (
    H_COST_NANO_USD,
    H_DROPPED,
    H_ERRORS,
    H_FAILED,
    H_LLM_CALLS,
    H_RUNS,
    H_SPANS,
    P_AGENT,
    P_CALLS,
    P_ROOT,
    P_RUN,
    P_TOOLS,
    P_TRACE,
)
from meta_supervisor.tally.consistency import fewer_llm_spans, fewer_tool_spans
from meta_supervisor.tally.latency import latency_summary, percentile
from meta_supervisor.tally.latency_runs import summary_of
from otel.redaction import known_secrets

SCHEMA_VERSION = 1
DEFAULT_JAEGER_URL = "http://127.0.0.1:16686"
ENV_JAEGER_URL = "ALPHATRACE_JAEGER_URL"  # the Jaeger UI base URL for links (report and supervisor alerts)


@dataclass
class KillSwitchState:
    """What ``services.kill_switch.load_kill_entries`` said, or why it could not say it."""

    path: str
    entries: Mapping[str, Any] = field(default_factory=dict)  # name -> KillEntry(agent, reason, by, at)
    error: str | None = None


__all__ = [
    "AuditState",
    "BuildInputs",
    "KillSwitchState",
    "WorthConfig",
    "build_report",
    "iso_day",
    "iso_time",
    "jaeger_link",
    "latency_summary",
    "ms",
    "percentile",
    "report_day",
]
__all__ += ["rate", "url_segment", "usd"]


# --- the whole report ----------------------------------------------------------------------------------


def _pending_by_agent(pending: Mapping[str, list]) -> tuple[dict[str, int], dict[str, list[tuple]]]:
    """Open runs at report time: LLM spans without a root (orphans) and roots missing LLM spans."""
    orphans: dict[str, int] = {}
    short: dict[str, list[tuple]] = {}
    for entry in pending.values():
        agent = entry[P_AGENT]
        root = entry[P_ROOT]
        if root is None:
            if entry[P_CALLS]:
                orphans[agent] = orphans.get(agent, 0) + entry[P_CALLS]
        else:
            missing = []
            if entry[P_CALLS] < root[0]:
                missing.append(fewer_llm_spans(entry[P_CALLS], root[0]))
            if root[6] is not None and entry[P_TOOLS] < root[6]:
                missing.append(fewer_tool_spans(entry[P_TOOLS], root[6]))
            short.setdefault(agent, []).append((entry[P_TRACE], entry[P_RUN], "; ".join(missing)))
    return orphans, short


def _needs_attention(
    agents: dict[str, dict[str, Any]], inputs: dict[str, Any], kill: KillSwitchState, supervisor: Mapping[str, Any]
) -> list[dict[str, Any]]:
    items = threshold_items(agents)
    for name, report in agents.items():
        if report["killed"]:
            items.append({"kind": "killed", "agent": name, "value": None, "why": f"killed: {report['kill_reason'] or 'no reason given'}"})
        if report["skipped_stale_data"]:
            count = report["skipped_stale_data"]
            items.append(
                {
                    "kind": "stale_data",
                    "agent": name,
                    "value": count,
                    "why": f"{_count(count, 'live run')} refused: market data older than the staleness limit",
                }
            )
        if report["consistency"]["mismatched"]:
            count = report["consistency"]["mismatched"]
            items.append(
                {
                    "kind": "totals_mismatch",
                    "agent": name,
                    "value": count,
                    "why": f"{_count(count, 'run')} whose root totals differ from their LLM or tool spans",
                }
            )
        if report["unpriced_llm_calls"]:
            models = ", ".join(report["unpriced_models"])
            items.append(
                {
                    "kind": "unpriced",
                    "agent": name,
                    "value": report["unpriced_llm_calls"],
                    "why": f"{_count(report['unpriced_llm_calls'], 'LLM call')} unpriced ({models}): not in the cost",
                }
            )
    for name, decision in supervisor["agents"].items():
        held_by = decision.get("held_by")
        if decision.get("action") == "hold" and isinstance(held_by, Mapping):
            items.append(
                {
                    "kind": "policy_held",
                    "agent": name,
                    "value": decision.get("rule"),
                    "why": f"the policy would {decision.get('would')} it ({decision.get('rule')}) but {held_by.get('by')} "
                    f"{held_by.get('state')} it at {held_by.get('at')}: the person's entry holds the decision",
                }
            )
    if kill.error is not None:
        items.append({"kind": "kill_switch_unreadable", "agent": None, "value": None, "why": kill.error})
    losses = inputs["telemetry_losses"]
    lost = losses["spans_dropped"] + losses["spans_export_failed"]
    if lost:
        items.append(
            {
                "kind": "telemetry_losses",
                "agent": None,
                "value": lost,
                "why": f"{_count(lost, 'span')} lost by the agents' telemetry before export ({losses['spans_dropped']} dropped by a full "
                f"queue, {losses['spans_export_failed']} failed to export) in "
                f"{_count(losses['processes_with_losses'], 'process', 'processes')}: the figures above undercount",
            }
        )
    if inputs["tail_sampled_spans"]:
        items.append(
            {
                "kind": "tail_sampled",
                "agent": None,
                "value": inputs["tail_sampled_spans"],
                "why": f"{_count(inputs['tail_sampled_spans'], 'span')} come from a tail-sampling collector (alphatrace.sampling): "
                "the runs, costs and signals above are of the traces it kept, not totals, and rates lean towards what it "
                "always keeps (errors, stopped runs, slow runs); Prometheus's spanmetrics count every run",
            }
        )
    if inputs["bad_lines"] or inputs["bad_spans"]:
        items.append(
            {
                "kind": "bad_input",
                "agent": None,
                "value": inputs["bad_lines"] + inputs["bad_spans"],
                "why": f"{inputs['bad_lines']} unreadable lines, {inputs['bad_spans']} unreadable spans",
            }
        )
    if inputs["conflicting_spans"]:
        items.append(
            {
                "kind": "conflicting_spans",
                "agent": None,
                "value": inputs["conflicting_spans"],
                "why": f"{_count(inputs['conflicting_spans'], 'span')} reusing the trace and span ids of another span with other "
                "content (two processes wrote the same ids?): the first copy of each is counted, the others are not; e.g. trace "
                f"{inputs['conflicting_span_examples'][0]['trace_id']} span {inputs['conflicting_span_examples'][0]['span_id']}",
            }
        )
    return items


MAX_LOSS_PROCESSES = 20  # processes listed by name in the report (the totals cover all of them)


def telemetry_losses(by_process: Mapping[tuple, list[int]]) -> dict[str, Any]:
    """Spans the agents' own telemetry lost before they reached any file (a full SDK queue, an
    exporter that gave up), from the cumulative counters on each process's latest root span.

    A loss after a process's last root span is on no span (only in its shutdown log line)."""
    lossy = sorted(
        (
            (dropped + failed, service, instance, dropped, failed)
            for (service, instance), (dropped, failed) in by_process.items()
            if dropped or failed
        ),
        key=lambda item: (-item[0], item[1], item[2]),  # most lost first; ties by name
    )
    return {
        "processes": len(by_process),
        "spans_dropped": sum(dropped for dropped, _ in by_process.values()),
        "spans_export_failed": sum(failed for _, failed in by_process.values()),
        "processes_with_losses": len(lossy),
        "by_process": [
            {"service_name": service, "service_instance_id": instance, "spans_dropped": dropped, "spans_export_failed": failed}
            for _, service, instance, dropped, failed in lossy[:MAX_LOSS_PROCESSES]
        ],
    }


def hosts(host_processes: Mapping[tuple, list[int]]) -> list[dict[str, Any]]:
    """Per host and shard (``host.name``, ``alphatrace.shard`` on the spans' resource): its processes
    (``service.instance.id``), runs (ok + error, as an agent's), errors, LLM calls, spans, the cost
    its runs recorded (``alphatrace.run.cost_usd``) and what its processes' telemetry lost; the
    most runs first. Processes past MAX_HOST_PROCESSES are one "(other)" row."""
    groups: dict[tuple, list[int]] = {}
    for (host, shard, _instance), row in host_processes.items():
        group = groups.setdefault((host, shard), [0] * (len(row) + 1))
        group[-1] += 1
        for column, value in enumerate(row):
            group[column] += value
    rows = [
        {
            "host": host,
            "shard": shard,
            "processes": group[-1],
            "runs": group[H_RUNS],
            "errors": group[H_ERRORS],
            "llm_calls": group[H_LLM_CALLS],
            "spans": group[H_SPANS],
            "cost_usd": round(group[H_COST_NANO_USD] / 1e9, 9),
            "spans_dropped": group[H_DROPPED],
            "spans_export_failed": group[H_FAILED],
        }
        for (host, shard), group in groups.items()
    ]
    return sorted(rows, key=lambda row: (-row["runs"], -row["spans"], row["host"], row["shard"]))


def in_as_of_window(day: str | dt.date, since: dt.date | None, until: dt.date | None) -> bool:
    """The as-of window (``--as-of-since`` / ``--as-of-until``, both days included, as the supervisor's
    window): applied after reading, to what the tallies keep per as-of day, the runs per as-of day
    (``as_of_days``) and the alpha signals scored; the other figures follow ``--since``/``--until``."""
    text = day.isoformat() if isinstance(day, dt.date) else day
    return (since is None or text >= since.isoformat()) and (until is None or text <= until.isoformat())


def report_day(now: dt.datetime) -> dt.date:
    """The (UTC) day a report generated at ``now`` is for: the "today" of its alpha scoring."""
    return now.astimezone(dt.UTC).date()


def build_report(
    data: BuildInputs,
    prices,
    kill: KillSwitchState,
    now: dt.datetime,
    jaeger_url: str = DEFAULT_JAEGER_URL,
    market=None,
    audit: AuditState | None = None,
    alpha_quality: dict[str, Any] | None = None,
    worth: WorthConfig | None = None,
    price_max_age_days: int | None = None,
    spend_tallies: bool = False,
    worth_figures: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report dict. Pure: the same arguments always give the same dict.

    ``market``: the market data (``services.market_data.MarketData``) the alpha signals are scored
    against; without it, or when the build kept no signals, ``alpha_quality`` is null. ``audit``: the
    supervisor's audit log as read; without it the ``supervisor`` section has no decisions.
    ``alpha_quality``: the section as computed before for exactly these tallies, market data and day
    (``alpha_cache``); the market data are then not consulted for it. ``worth``: capital per agent,
    the combining agents' members and the universe (``agents/agents.toml``) for the ``worth`` section
    (each agent's signals as a portfolio, net of its LLM bill; null without market data or signals).
    ``worth_figures``: that section as computed before for exactly these tallies, market data, day,
    configuration and kill-switch names (``alpha_cache.worth_key``); not computed again then.
    ``spend_tallies``: the caller needs ``data.agents`` no more (the CLI without evaluation spans):
    each agent's tally is swapped for its alpha signals alone (all the sections after the agents'
    read) as soon as its section is made, so 1,000 agents' sections are built in the memory their
    tallies free instead of on top of it (peak RSS; the report the same)."""
    orphans, short = _pending_by_agent(data.pending)
    tallies = with_deferred(data.agents, data.pending)
    names = set(tallies) | set(orphans) | set(short)
    if kill.error is None:
        names |= set(kill.entries)
    empty = AgentTally()
    latencies = data.latency if data.latency is not None else {name: summary_of(t) for name, t in data.agents.items()}
    no_runs = latency_summary(())
    as_of = (data.as_of_since, data.as_of_until)
    secrets = known_secrets()  # looked up once for every agent's failing runs
    agents = {}
    for name in sorted(names):
        agents[name] = agent_report(
            name,
            tallies.get(name, empty),
            latencies.get(name, no_runs),
            prices,
            kill.entries.get(name) if kill.error is None else None,
            kill.error is None,
            jaeger_url,
            orphans.get(name, 0),
            short.get(name, []),
            secrets,
        )
        if spend_tallies:
            _spend(data.agents, tallies, name)
    if as_of != (None, None):
        for report in agents.values():
            report["as_of_days"] = [row for row in report["as_of_days"] if in_as_of_window(row["date"], *as_of)]
    tally = data.inputs
    inputs = {
        "files": [f["path"] for f in data.files],
        "spans": tally.spans,
        "bad_lines": tally.bad_lines,
        "duplicate_spans": tally.duplicate_spans,
        "conflicting_spans": tally.conflicting_spans,
        "conflicting_span_examples": [{"trace_id": t, "span_id": s} for t, s in tally.conflicting_examples],
        "bad_spans": tally.bad_spans,
        "problems": [{"file": file, "line": line, "error": error} for file, line, error in tally.bad_line_examples],
        "partial_tails": [{"file": f["path"], "bytes": f["partial_tail_bytes"]} for f in data.files if f.get("partial_tail_bytes")],
        "file_details": data.files,
        "spans_outside_window": tally.outside_window,
        "spans_without_id": tally.spans_without_id,
        "other_spans": tally.other_spans,
        "supervisor_spans": tally.supervisor_spans,
        "evaluation_spans": tally.evaluation_spans,
        "tail_sampled_spans": tally.tail_sampled_spans,
        "duplicate_run_roots": tally.duplicate_run_roots,
        "evicted_open_runs": {
            "roots_waiting_for_llm_spans": tally.evicted_roots,
            "llm_runs_waiting_for_root": tally.evicted_llm_runs,
            "llm_spans_waiting_for_root": tally.evicted_llm_spans,
        },
        "telemetry_losses": telemetry_losses(tally.telemetry_losses),
        "messages": list(data.messages),
        "state_warnings": list(data.state_warnings),
    }
    fleet = _fleet(agents, latencies.values())
    today = report_day(now)
    alpha = None
    if not (data.alpha_signals and market is not None):
        worth_figures = None
    else:
        alpha = alpha_quality if alpha_quality is not None else alpha_quality_section(data.agents, agents, market, today, as_of)
        if worth_figures is None:
            worth_figures = worth_section(data.agents, agents, market, today, worth or WorthConfig(), as_of)
    supervisor = supervisor_section(audit, kill.entries if kill.error is None else {})
    report = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": now.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "window": {
            "since": data.since.isoformat() if data.since else None,
            "until": data.until.isoformat() if data.until else None,
            "as_of_since": data.as_of_since.isoformat() if data.as_of_since else None,
            "as_of_until": data.as_of_until.isoformat() if data.as_of_until else None,
        },
        "inputs": inputs,
        "prices": _prices_section(prices, report_day(now), price_max_age_days),
        "kill_switch": {
            "path": kill.path,
            "ok": kill.error is None,
            "error": kill.error,
            "killed": sorted(name for name, entry in kill.entries.items() if is_killed(entry)) if kill.error is None else None,
        },
        "jaeger_url": jaeger_url,
        "fleet": fleet,
        "hosts": hosts(data.inputs.host_processes),
        "needs_attention": [],
        "days": _days(agents),
        "as_of_days": _days(agents, "as_of_days"),
        "agents": agents,
        "alpha_quality": alpha,
        "worth": worth_figures,
        "supervisor": supervisor,
    }
    report["needs_attention"] = _needs_attention(agents, inputs, kill, supervisor)
    return report


class _SignalsOnly:
    """What is left of a spent tally (``build_report``'s ``spend_tallies``): its alpha signals."""

    __slots__ = ("signals",)

    def __init__(self, signals) -> None:
        self.signals = signals


def _spend(agents: dict, tallies: Mapping, name: str) -> None:
    """Let go of agent ``name``'s tally but for its signals (in ``agents`` and in the report's copy)."""
    tally = agents.get(name)
    if tally is not None:
        agents[name] = _SignalsOnly(tally.signals)
    if tallies is not agents and isinstance(tallies, dict):
        tallies.pop(name, None)


def _prices_section(prices, today: dt.date, max_age_days: int | None) -> dict[str, Any]:
    """The price table's version and file, the age it may reach, and the warning when it is older."""
    warning = prices.age_warning(today, max_age_days) if max_age_days is not None and hasattr(prices, "age_warning") else None
    return {
        "version": getattr(prices, "version", None),
        "source": getattr(prices, "source_path", None),
        "max_age_days": max_age_days,
        "warning": warning,
    }


_SUMMED = (
    "runs",
    "errors",
    "skipped_killed",
    "skipped_stale_data",
    "llm_calls",
    "llm_errors",
    "simulated_llm_calls",
    "unpriced_llm_calls",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "tokens",
    "alpha_signals",
    "invalid_signals",
    "tool_calls",
    "tool_errors",
)


def _fleet(agents: dict[str, dict[str, Any]], latencies: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    fleet: dict[str, Any] = {"agents": len(agents)}
    reports = list(agents.values())
    for key in _SUMMED:  # summed in C (itemgetter), in the agents' order as before
        fleet[key] = sum(map(itemgetter(key), reports))
    fleet["error_rate"] = rate(fleet["errors"], fleet["runs"])
    fleet["cost_usd"] = priced_sum(map(itemgetter("cost_usd"), reports))
    fleet["llm_simulated"] = fleet["simulated_llm_calls"] > 0
    fleet["unpriced_models"] = sorted({m for report in agents.values() for m in report["unpriced_models"]})
    operations = [report["llm_operations"] for report in agents.values()]
    fleet["llm_operations"] = {op: sum(o.get(op, 0) for o in operations) for op in sorted({op for o in operations for op in o})}
    summaries = [summary for summary in latencies if summary["count"]]
    count = sum(summary["count"] for summary in summaries)
    fleet["avg_latency_ms"] = ms(sum(summary["sum_ns"] for summary in summaries) / count) if count else None
    fleet["max_latency_ms"] = ms(max(summary["max_ns"] for summary in summaries)) if count else None
    for key in ("llm_calls_per_run", "tool_calls_per_run"):
        fleet[key] = fleet_calls_per_run(report[key] for report in agents.values())
    fleet["stops"] = _fleet_stops([report["stops"] for report in agents.values()])
    consistency = [report["consistency"] for report in agents.values()]
    fleet["consistency"] = {
        key: sum(map(itemgetter(key), consistency)) for key in ("checked", "consistent", "mismatched", "unchecked", "orphan_llm_spans")
    }
    return fleet


def _fleet_stops(stops: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The agents' ``stops`` summed (the counts by step and by budget too)."""
    out: dict[str, Any] = {}
    for key, value in stops_section({}, {}, {}).items():
        if isinstance(value, dict):
            merged: dict[str, int] = {}
            for agent_stops in stops:
                for name, count in agent_stops[key].items():
                    merged[name] = merged.get(name, 0) + count
            out[key] = dict(sorted(merged.items()))
        else:
            out[key] = sum(agent_stops[key] for agent_stops in stops)
    return out


def _days(agents: dict[str, dict[str, Any]], section: str = "days") -> list[dict[str, Any]]:
    """The agents' ``days`` (or ``as_of_days``) summed per date, fleet-wide."""
    days: dict[str, dict[str, Any]] = {}
    for report in agents.values():
        for row in report[section]:
            target = days.get(row["date"])
            if target is None:  # not setdefault: its zeroed row was made for each of 2,000 rows (1,000 agents)
                target = days[row["date"]] = {key: 0 for key in row if key != "date"}
            for key, value in row.items():
                if key != "date":
                    target[key] += value
    out = []
    for date in sorted(days):
        row = days[date]
        if "cost_usd" in row:
            row["cost_usd"] = usd(row["cost_usd"])
        out.append({"date": date, **row})
    return out
