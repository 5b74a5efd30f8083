"""The per-agent section of the report, and the number formatting every section shares.

Pure functions of an agent's tally: latencies (percentiles by linear interpolation, numpy's
default), LLM calls and cost by model (priced from integer token sums, so the total does not depend
on the order spans were read in; cached input tokens at the cached rate; simulated calls never
priced; a model missing from the price table makes its calls unpriced, never $0), alpha signals,
kill-switch state, slowest and failing runs with Jaeger links, the consistency check, the days, LLM
calls per operation and tool calls per tool (``tool_tallies.tool_report``), LLM and tool calls per run
(``calls_per_run``) and the runs stopped before they ended (``stops``). A
failing run's error type and message go through ``otel.redaction.redact``: a trace file written by an
older version or another process may still hold an API key, and the report is published.

Reads no environment variables.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from meta_supervisor.tally.aggregates import AgentTally, note_mismatch
from meta_supervisor.tally.bounds import (
    CONSISTENT,
    DAY_ALPHA,
    DAY_ALPHA_INVALID,
    DAY_ERROR,
    DAY_KILLED,
    DAY_OK,
    LLM_CACHED,
    LLM_CALLS,
    LLM_ERRORS,
    LLM_IN,
    LLM_OUT,
    MISMATCHED,
    RS_LLM_RUNS,
    RS_TOOL_RUNS,
    UNCHECKED,
)
from meta_supervisor.tally.tool_tallies import tool_report
from otel import semconv
from otel.redaction import known_secrets, redact
from services.pricing import format_usd

TOP_REASONS = 20


def is_killed(entry: Any) -> bool:
    """A kill-switch entry stops its agent unless it records a person's revive (``state: revived``)."""
    return bool(getattr(entry, "killed", True))


UNKNOWN_DATE = "unknown"
ELLIPSIS = "\u2026"


def ms(nanoseconds: float | None) -> float | None:
    return None if nanoseconds is None else round(nanoseconds / 1e6, 3)


def usd(amount: float) -> float:
    return float(round(amount, 8))


_EPOCH = dt.datetime(1970, 1, 1)
_LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z: the last moment a datetime holds


def iso_time(nanoseconds: int) -> str | None:
    """The UTC moment ``nanoseconds`` after the epoch, to the microsecond (``2026-11-20T10:00:00.500000Z``,
    ``datetime.isoformat``'s text; no fraction when it is whole), or None for 0, a negative time or one
    past the year 9999. The date's text is made once a day (``_epoch_date``), the time's from
    tables (1,000 agents: ~10,000 times a report; 2.5x cheaper than adding a timedelta to the epoch,
    itself twice as fast as ``fromtimestamp``)."""
    if not nanoseconds or nanoseconds <= 0:
        return None
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    if seconds > _LAST_SECOND:
        return None
    days, second = divmod(seconds, 86_400)
    minute, second = divmod(second, 60)
    micro = rest // 1000
    if micro:
        return f"{_epoch_date(days)}T{_HOUR_MINUTE[minute]}{_SECOND[second]}.{micro:06d}Z"
    return f"{_epoch_date(days)}T{_HOUR_MINUTE[minute]}{_SECOND[second]}Z"


_HOUR_MINUTE = tuple(f"{minute // 60:02d}:{minute % 60:02d}:" for minute in range(1440))  # "HH:MM:" by minute of the day
_SECOND = tuple(f"{second:02d}" for second in range(60))


@functools.lru_cache(maxsize=4096)
def _epoch_date(days: int) -> str:
    """The date ``days`` after 1970-01-01 (``date.isoformat``: ``0001``-style years kept to four digits)."""
    return (_EPOCH + dt.timedelta(days=days)).date().isoformat()


@functools.lru_cache(maxsize=4096)  # one string a day shared by every agent's rows (1,000 agents x 30 days: ~2 MB)
def iso_day(day_index: int) -> str:
    if day_index <= 0:
        return UNKNOWN_DATE
    try:
        return (dt.date(1970, 1, 1) + dt.timedelta(days=day_index)).isoformat()
    except OverflowError:
        return UNKNOWN_DATE


_URL_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


_URL_SAFE_TEXT = re.compile(r"[A-Za-z0-9._~-]*")


def url_segment(text: str) -> str:
    """Percent-encode ``text`` as one URL path segment (``urllib.parse.quote(text, safe='')``)."""
    if (text.isascii() and text.isalnum()) or _URL_SAFE_TEXT.fullmatch(text):  # a trace id: nothing to encode (1,000 agents: ~9,000 links)
        return text
    return "".join(chr(b) if b in _URL_SAFE else f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass"))


def jaeger_link(base_url: str, trace_id: str) -> str:
    return f"{base_url.rstrip('/')}/trace/{url_segment(trace_id)}"


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def window_text(window: Mapping[str, Any]) -> str:
    """The report's windows as the pages say them: "all time", "2026-01-01T00:00:00+00:00 to now",
    then "as-of 2017-03-01 to 2017-03-31" when an as-of window is set. Plain text: the page escapes it."""
    since, until = window["since"], window["until"]
    text = "all time" if not (since or until) else f"{since or ELLIPSIS} to {until or 'now'}"
    first, last = window.get("as_of_since"), window.get("as_of_until")
    if first or last:
        text += f"; as-of days {first or ELLIPSIS} to {last or 'the last'}"
    return text


def error_text(run: Mapping[str, Any]) -> str:
    """A failing run's error as the pages show it: ``RuntimeError: boom``, its type said once (the
    status message of an exception recorded by the SDK starts with the type already)."""
    error_type, message = run["error_type"] or "", run["message"] or ""
    if not error_type or message.startswith(error_type):
        return message or error_type
    return f"{error_type}: {message}" if message else error_type


def priced_sum(costs: Iterable[float | None]) -> float | None:
    """The sum of the costs that were priced; ``None`` when none was (never a $0 for unpriced calls)."""
    priced = [cost for cost in costs if cost is not None]
    return usd(sum(priced)) if priced else None


def cost_text(figures: Mapping[str, Any]) -> str:
    """An agent's (or the fleet's) LLM cost as the pages show it: the priced cost
    (``services.pricing.format_usd``), then what it leaves out, "unpriced (model, ...)" and
    "simulated, not priced"; "–" without LLM calls. Plain text: the page escapes it."""
    parts = [] if figures["cost_usd"] is None else [format_usd(figures["cost_usd"])]
    if figures["unpriced_llm_calls"]:
        parts.append(f"unpriced ({', '.join(figures['unpriced_models'])})")
    if figures["simulated_llm_calls"]:
        parts.append("simulated, not priced")
    return " + ".join(parts) or "\u2013"


def llm_calls_text(figures: Mapping[str, Any]) -> str:
    """An agent's (or the fleet's) LLM calls as the pages show them: ``8``, or with its operations when
    any is not a chat: ``4 (chat 3, embeddings 1)``. Plain text: the page escapes it."""
    operations = figures["llm_operations"]
    count = f"{figures['llm_calls']:,}"
    if set(operations) <= {semconv.OPERATION_CHAT}:
        return count
    return f"{count} ({', '.join(f'{operation} {calls:,}' for operation, calls in operations.items())})"


def calls_per_run(runs: int, calls: int, most: int) -> dict[str, Any]:
    """LLM (or tool) calls per run: over ``runs`` runs that ran and carry the total, ``calls`` in all,
    at most ``most`` in one; ``mean`` and ``max`` are ``null`` without such runs."""
    return {"runs": runs, "calls": calls, "mean": round(calls / runs, 3) if runs else None, "max": most if runs else None}


def fleet_calls_per_run(figures: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``calls_per_run`` over the fleet, from the agents' (``runs`` and ``calls`` add, ``max`` the largest)."""
    figures = [f for f in figures if f["runs"]]
    return calls_per_run(sum(f["runs"] for f in figures), sum(f["calls"] for f in figures), max((f["max"] for f in figures), default=0))


def stops_section(outcomes: Mapping[str, int], killed_mid_run: Mapping[str, int], budget_stops: Mapping[str, int]) -> dict[str, Any]:
    """Runs that did not end by themselves: killed before they started, stopped mid-run by the kill
    switch (by the step they stopped before), stopped by a budget (by the budget's name)."""
    mid_run = sum(killed_mid_run.values())
    return {
        "killed_before_start": outcomes.get(semconv.OUTCOME_KILLED, 0) - mid_run,
        "killed_mid_run": mid_run,
        "killed_before_step": dict(sorted(killed_mid_run.items())),
        "budget_exceeded": outcomes.get(semconv.OUTCOME_BUDGET_EXCEEDED, 0),
        "budget_exceeded_by_budget": dict(sorted(budget_stops.items())),
    }


def stops_text(stops: Mapping[str, Any]) -> str:
    """An agent's (or the fleet's) stops as the pages show them: ``2 killed (1 before start, 1 mid-run),
    3 over budget (day_cost 2, run_cost 1)``; ``–`` without any. Plain text: the page escapes it."""
    parts = []
    killed = stops["killed_before_start"] + stops["killed_mid_run"]
    if killed:
        parts.append(f"{killed:,} killed ({stops['killed_before_start']:,} before start, {stops['killed_mid_run']:,} mid-run)")
    if stops["budget_exceeded"]:
        by_budget = ", ".join(f"{name} {count:,}" for name, count in stops["budget_exceeded_by_budget"].items())
        parts.append(f"{stops['budget_exceeded']:,} over budget ({by_budget})")
    return ", ".join(parts) or "\u2013"


def per_run_text(figures: Mapping[str, Any]) -> str:
    """Calls per run as the pages show them: ``2.5 (max 4)``; ``–`` without runs carrying the total."""
    return "\u2013" if figures["mean"] is None else f"{figures['mean']:g} (max {figures['max']:,})"


# --- per agent --------------------------------------------------------------------------------------


def _latency_fields(summary: Mapping[str, Any]) -> dict[str, Any]:
    count = summary["count"]
    return {
        "avg_latency_ms": ms(summary["sum_ns"] / count) if count else None,
        "p50_latency_ms": ms(summary["p50_ns"]),
        "p95_latency_ms": ms(summary["p95_ns"]),
        "p99_latency_ms": ms(summary["p99_ns"]),
        "max_latency_ms": ms(summary["max_ns"]),
    }


def _models(tally: AgentTally, prices) -> tuple[dict[str, dict[str, Any]], dict[int, float], dict[int, int]]:
    """Per model (sorted by name): calls and tokens, and the priced cost; also cost and LLM calls per
    day (one pass over the day-model rows)."""
    models: dict[str, dict[str, Any]] = {}
    token_sums: dict[str, list[int]] = {}  # model -> priced [uncached, cached, out] (non-simulated)
    day_tokens: dict[tuple[int, str], list[int]] = {}
    day_calls: dict[int, int] = {}
    for (day, model, simulated), counts in tally.day_models.items():
        calls, tokens_in, cached, tokens_out = counts[LLM_CALLS], counts[LLM_IN], counts[LLM_CACHED], counts[LLM_OUT]
        day_calls[day] = day_calls.get(day, 0) + calls
        entry = models.get(model)
        if entry is None:
            entry = models[model] = {
                "calls": 0,
                "simulated_calls": 0,
                "errors": 0,
                "tokens_in": 0,
                "tokens_out": 0,
                "tokens_cached": 0,
                "cost_usd": None,
                "priced": None,
            }
        entry["calls"] += calls
        entry["errors"] += counts[LLM_ERRORS]
        entry["tokens_in"] += tokens_in
        entry["tokens_out"] += tokens_out
        entry["tokens_cached"] += cached
        if simulated:
            entry["simulated_calls"] += calls
        else:
            for sums, key in ((token_sums, model), (day_tokens, (day, model))):
                target = sums.get(key)
                if target is None:
                    sums[key] = [tokens_in, cached, tokens_out]
                else:
                    target[0] += tokens_in
                    target[1] += cached
                    target[2] += tokens_out
    for model, (tokens_in, cached, tokens_out) in token_sums.items():
        cost = prices.cost(model, tokens_in, tokens_out, cached) if prices is not None else None
        models[model]["priced"] = cost is not None
        models[model]["cost_usd"] = None if cost is None else usd(cost)
    day_cost: dict[int, float] = {}
    for (day, model), (tokens_in, cached, tokens_out) in sorted(day_tokens.items()):
        cost = prices.cost(model, tokens_in, tokens_out, cached) if prices is not None else None
        if cost is not None:
            day_cost[day] = day_cost.get(day, 0.0) + cost
    return (dict(sorted(models.items())) if len(models) > 1 else models), day_cost, day_calls


def agent_report(
    name: str,
    tally: AgentTally,
    latency: Mapping[str, Any],
    prices,
    kill_entry: Any,
    kill_known: bool,
    jaeger_url: str,
    orphans: int,
    extra_mismatches: list[tuple],
    secrets: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Agent ``name``'s section. ``secrets``: ``otel.redaction.known_secrets()`` when the caller
    looked them up once for every agent (``build_report``); else looked up here when needed."""
    outcomes = dict(sorted(tally.outcomes.items()))
    ok = outcomes.get("ok", 0)
    errors = outcomes.get("error", 0)
    runs = ok + errors
    models, day_cost, day_calls = _models(tally, prices)
    tools = tool_report(tally.tools)
    # the models' figures summed in one pass (an agent has one model or a few)
    llm_calls = simulated_calls = llm_errors = unpriced_calls = tokens_in = tokens_out = tokens_cached = 0
    unpriced_models = []
    for model, m in models.items():  # by name: the unpriced ones come out sorted
        llm_calls += m["calls"]
        simulated_calls += m["simulated_calls"]
        llm_errors += m["errors"]
        tokens_in += m["tokens_in"]
        tokens_out += m["tokens_out"]
        tokens_cached += m["tokens_cached"]
        if m["priced"] is False:
            unpriced_models.append(model)
            unpriced_calls += m["calls"] - m["simulated_calls"]
    cost = priced_sum(m["cost_usd"] for m in models.values())
    tool_calls = tool_errors = 0
    for t in tools.values():
        tool_calls += t["calls"]
        tool_errors += t["errors"]
    trace_link = f"{jaeger_url.rstrip('/')}/trace/"  # jaeger_link's prefix, made once an agent
    alpha_by_symbol: dict[str, dict[str, int]] = {}
    for (symbol, direction), count in sorted(tally.alpha.items()):
        by_direction = alpha_by_symbol.get(symbol)
        if by_direction is None:  # not setdefault: no new dict made for each of the symbol's directions
            by_direction = alpha_by_symbol[symbol] = {}
        by_direction[direction] = count
    alpha_signals = sum(tally.alpha.values())
    invalid = sum(tally.invalid_reasons.values())
    reasons = sorted(tally.invalid_reasons.items(), key=lambda item: (-item[1], item[0]))
    steps = tally.run_steps
    consistency = list(tally.consistency)
    mismatches = list(tally.mismatches)
    for trace_id, run_id, detail in extra_mismatches:
        consistency[MISMATCHED] += 1
        note_mismatch(mismatches, trace_id, run_id, detail)
    if not tally.failing:
        secrets = ()
    elif secrets is None:
        secrets = known_secrets()  # once an agent, not twice a failing run
    entry = kill_entry if kill_known else None
    killed = entry is not None and is_killed(entry)
    days = []
    day_runs = dict(tally.day_runs.items())  # looked up by day (a packed table is a list of keys)
    for day in sorted(day_runs.keys() | day_calls.keys()):
        row = day_runs.get(day, (0, 0, 0, 0, 0))
        calls = day_calls.get(day, 0)
        days.append(
            {
                "date": iso_day(day),
                "runs": row[DAY_OK] + row[DAY_ERROR],
                "errors": row[DAY_ERROR],
                "skipped_killed": row[DAY_KILLED],
                "llm_calls": calls,
                "cost_usd": usd(day_cost.get(day, 0.0)),
                "alpha_signals": row[DAY_ALPHA],
                "invalid_signals": row[DAY_ALPHA_INVALID],
            }
        )
    as_of_days = [
        {"date": iso_day(day), "runs": row[DAY_OK] + row[DAY_ERROR], "errors": row[DAY_ERROR], "skipped_killed": row[DAY_KILLED]}
        for day, row in sorted(tally.asof_runs.items())
    ]
    report = {
        "runs": runs,
        "errors": errors,
        "error_rate": rate(errors, runs),
        "skipped_killed": outcomes.get(semconv.OUTCOME_KILLED, 0),
        "skipped_stale_data": outcomes.get(semconv.OUTCOME_STALE_DATA, 0),
        "outcomes": outcomes,
        "runs_without_outcome": tally.outcome_missing,
        **_latency_fields(latency),
        "runs_without_latency": tally.bad_durations,
        "llm_calls": llm_calls,
        "llm_errors": llm_errors,
        "simulated_llm_calls": simulated_calls,
        "unpriced_llm_calls": unpriced_calls,
        "unpriced_models": unpriced_models,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "tokens_cached": tokens_cached,
        "tokens": tokens_in + tokens_out,
        "bad_token_values": tally.bad_token_values,
        "cost_usd": cost,
        "models": models,
        "llm_operations": dict(sorted(tally.llm_operations.items())),
        "tool_calls": tool_calls,
        "tool_errors": tool_errors,
        "tools": tools,
        "llm_calls_per_run": calls_per_run(*steps[RS_LLM_RUNS : RS_LLM_RUNS + 3]),
        "tool_calls_per_run": calls_per_run(*steps[RS_TOOL_RUNS : RS_TOOL_RUNS + 3]),
        "stops": stops_section(outcomes, tally.killed_mid_run, tally.budget_stops),
        "alpha_signals": alpha_signals,
        "alpha_by_symbol": alpha_by_symbol,
        "invalid_signals": invalid,
        "invalid_signal_reasons": dict(reasons[:TOP_REASONS]),
        "first_run_at": iso_time(tally.first_start_ns),
        "last_run_at": iso_time(tally.last_start_ns),
        "killed": killed if kill_known else None,
        "kill_reason": entry.reason if killed else None,
        "killed_by": entry.by if killed else None,
        "killed_at": entry.at if killed else None,
        "kill_switch_entry": None
        if entry is None
        else {"state": getattr(entry, "state", "killed"), "reason": entry.reason, "by": entry.by, "at": entry.at},
        "last_skip_reason": tally.last_kill[1] if tally.last_kill else None,
        "last_skip_at": iso_time(tally.last_kill[0]) if tally.last_kill else None,
        "kill_switch_errors_seen": tally.kill_switch_errors,
        "slowest_runs": [
            {
                "trace_id": trace_id,
                "run_id": run_id,
                "latency_ms": ms(latency),
                "started_at": iso_time(start),
                "jaeger_url": trace_link + url_segment(trace_id),
            }
            for latency, trace_id, run_id, start in sorted(tally.slowest, key=lambda item: (-item[0], item[1]))
        ],
        "failing_runs": [
            {
                "trace_id": trace_id,
                "run_id": run_id,
                "error_type": redact(error_type, secrets),
                "message": redact(message, secrets),
                "started_at": iso_time(start),
                "jaeger_url": trace_link + url_segment(trace_id),
            }
            for start, trace_id, run_id, error_type, message in sorted(tally.failing, key=lambda item: (-item[0], item[1]))
        ],
        "consistency": {
            "checked": consistency[CONSISTENT] + consistency[MISMATCHED],
            "consistent": consistency[CONSISTENT],
            "mismatched": consistency[MISMATCHED],
            "unchecked": consistency[UNCHECKED],
            "orphan_llm_spans": orphans,
            "mismatch_examples": [
                {"trace_id": trace_id, "run_id": run_id, "detail": detail, "jaeger_url": trace_link + url_segment(trace_id)}
                for trace_id, run_id, detail in mismatches
            ],
        },
        "days": days,
        "as_of_days": as_of_days,
    }
    return report
