"""``meta_report.md``: the report as a pull-request comment (summary table, needs attention, links).

Every string that came from spans (agent names, error messages, models, symbols) goes through the one
escaper, ``alpha.quality_render.md_escape``: escaped for Markdown and for the HTML that GitHub renders
inside Markdown, ``@mentions``, ``#1``/``GH-1`` references and URLs made inert (nobody is notified, no
issue cross-referenced), bidirectional controls shown as ``[U+202E]``, and cut, once escaped, to a
readable length; so a hostile agent name can neither break the table nor inject markup.

The comment always fits GitHub's 65,536-character limit (``meta_supervisor.render.md_budget``: at most
``MAX_PAGE_CHARS`` UTF-16 code units, each section at most ``MAX_SECTION_CHARS``, measured after
escaping, "… and N more" where a section is cut). Besides: the agent table shows at most
``MAX_AGENT_ROWS`` rows (by cost), the tool calls ``MAX_TOOL_ROWS`` rows (agents with most tool calls
first, each one's most called tools first), the calls per run and stops ``MAX_STEP_ROWS`` rows
(agents whose runs made LLM or tool calls, or were stopped, by name), the failing and slowest runs ``MAX_RUN_LINKS`` links, the
alpha-quality section (``alpha.quality_render``) ``MAX_ALPHA_AGENTS`` agents and ``MAX_ALPHA_SYMBOLS``
symbols each, the worth ranking (``render.worth``) ``MAX_MD_ROWS`` agents, the supervisor's decisions
(``meta_supervisor.supervisor.audit``) ``MAX_DECISION_ROWS``. When the
page is too long, sections give up rows in ``TRIM_ORDER``.

Reads no environment variables.
"""

from __future__ import annotations

from typing import Any

from meta_supervisor.assemble.agents import cost_text, error_text, llm_calls_text, per_run_text, stops_text, window_text
from meta_supervisor.render.md_budget import REST_IN, Section, fit_page
from meta_supervisor.render.numbers import num, pct, shown_hosts
from meta_supervisor.render.paths import for_pages
from meta_supervisor.tally.open_runs import ENV_MAX_OPEN_RUNS
from otel import semconv
from services.markup_text import md_escape

MAX_ATTENTION_ITEMS = 15
MAX_AGENT_ROWS = 40
MAX_TOOL_ROWS = 60
MAX_STEP_ROWS = 40
MAX_RUN_LINKS = 120
MAX_LINKS_PER_AGENT = 3
MAX_ALPHA_AGENTS = 8
MAX_ALPHA_SYMBOLS = 12
MAX_DECISION_ROWS = 20
MAX_INPUT_NOTES = 5
TRIM_ORDER = ("runs", "tools", "steps", "hosts", "inputs", "supervisor", "alpha", "worth", "agents", "attention")  # the first goes first


def md_text(value: Any, limit: int = 80) -> str:
    """Plain text safe inside a Markdown table cell or list item, at most ``limit`` characters once
    escaped (``alpha.quality_render.md_escape``)."""
    return md_escape(value, limit)


def _link(label: str, url: str) -> str:
    safe_url = url.replace("(", "%28").replace(")", "%29").replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")
    return f"[{label}]({safe_url})"


def render_markdown(report: dict[str, Any]) -> str:
    report = for_pages(report)  # no absolute local path on a page (report_paths)
    fleet = report["fleet"]
    lines = ["## alphatrace meta report \u2014 " + md_text(report["generated_at"]), ""]
    span = md_text(window_text(report["window"]), 200)
    lines.append(
        f"**{fleet['agents']} agents \u00b7 {num(fleet['runs'])} runs \u00b7 {num(fleet['errors'])} errors "
        f"({pct(fleet['error_rate'])}) \u00b7 {num(fleet['skipped_killed'])} skipped (killed) \u00b7 "
        f"LLM cost {md_text(cost_text(fleet), 200)} \u00b7 {num(fleet['alpha_signals'])} alpha signals** "
        f"({span})"
    )
    extras = []
    if fleet["simulated_llm_calls"]:
        extras.append(f"{num(fleet['simulated_llm_calls'])} of {num(fleet['llm_calls'])} LLM calls were **simulated** (not priced)")
    if fleet["unpriced_llm_calls"]:
        extras.append(f"{num(fleet['unpriced_llm_calls'])} LLM calls **unpriced** ({md_text(', '.join(fleet['unpriced_models']), 200)})")
    if fleet["tool_calls"]:
        extras.append(f"{num(fleet['tool_calls'])} tool calls, {num(fleet['tool_errors'])} failed")
    if fleet["stops"]["killed_mid_run"] or fleet["stops"]["budget_exceeded"]:
        extras.append(f"runs stopped: {md_text(stops_text(fleet['stops']), 300)} (not errors)")
    consistency = fleet["consistency"]
    if consistency["mismatched"] or consistency["orphan_llm_spans"]:
        extras.append(
            f"{num(consistency['mismatched'])} runs whose totals do not match their LLM or tool spans, "
            f"{num(consistency['orphan_llm_spans'])} LLM spans without a run"
        )
    evicted = report["inputs"]["evicted_open_runs"]
    if evicted["roots_waiting_for_llm_spans"] or evicted["llm_runs_waiting_for_root"]:
        extras.append(
            f"{num(evicted['roots_waiting_for_llm_spans'] + evicted['llm_runs_waiting_for_root'])} runs left **unchecked**: "
            f"their spans were too far apart in the files (more than ${ENV_MAX_OPEN_RUNS} runs open at once)"
        )
    if not report["kill_switch"]["ok"]:
        extras.append(f"kill-switch file unreadable: {md_text(report['kill_switch']['error'], 200)}")
    if report["prices"].get("warning"):
        extras.append(f"**prices out of date**: {md_text(report['prices']['warning'], 300)}")
    for extra in extras:
        lines.append(f"- {extra}")
    lines.append("")

    sections = [_attention(report), _agents(report), _steps(report), _tools(report), _runs(report)]
    sections += [_alpha_quality(report), _worth(report), _supervisor(report), _hosts(report), _inputs(report)]
    return fit_page(lines, [s for s in sections if s is not None], [], TRIM_ORDER)


def _attention(report: dict[str, Any]) -> Section:
    items = []
    for item in report["needs_attention"][:MAX_ATTENTION_ITEMS]:
        who = f"**{md_text(item['agent'], 60)}**: " if item["agent"] is not None else ""
        items.append(f"- {who}{md_text(item['why'], 200)}")
    if not items:
        return Section("attention", ["### Needs attention", "- nothing", ""], [], "items")
    return Section("attention", ["### Needs attention"], items, "items", len(report["needs_attention"]), [""])


def _agents(report: dict[str, Any]) -> Section:
    agents = report["agents"]
    if not agents:
        return Section("agents", ["### Agents", "No agent runs in the input.", ""], [], "agents")
    head = [
        "### Agents",
        "| agent | runs | errors | error rate | p50 ms | p95 ms | p99 ms | max ms | LLM calls | tokens | LLM cost "
        "| signals | invalid | killed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = []
    ordered = sorted(agents.items(), key=lambda item: (-(item[1]["cost_usd"] or 0.0), -item[1]["runs"], item[0]))
    for name, agent in ordered[:MAX_AGENT_ROWS]:
        killed = "unknown" if agent["killed"] is None else ("**yes**: " + md_text(agent["kill_reason"], 60) if agent["killed"] else "no")
        rows.append(
            f"| {md_text(name, 60)} | {num(agent['runs'])} | {num(agent['errors'])} | {pct(agent['error_rate'])} | "
            f"{num(agent['p50_latency_ms'], 1)} | {num(agent['p95_latency_ms'], 1)} | {num(agent['p99_latency_ms'], 1)} | "
            f"{num(agent['max_latency_ms'], 1)} | {md_text(llm_calls_text(agent), 80)} | {num(agent['tokens'])} | "
            f"{md_text(cost_text(agent), 80)} | {num(agent['alpha_signals'])} | {num(agent['invalid_signals'])} | {killed} |"
        )
    return Section("agents", head, rows, "agents", len(agents), [""])


def _tools(report: dict[str, Any]) -> Section | None:
    """Tool calls per agent and tool (``execute_tool`` spans and other instrumentations' tool spans)."""
    rows, total = [], 0
    for name, agent in sorted(report["agents"].items(), key=lambda item: (-item[1]["tool_calls"], item[0])):
        tools = sorted(agent["tools"].items(), key=lambda item: (-item[1]["calls"], item[0]))
        total += len(tools)
        for tool, t in tools[: max(0, MAX_TOOL_ROWS - len(rows))]:
            rows.append(
                f"| {md_text(name, 60)} | {md_text(tool, 60)} | {num(t['calls'])} | {num(t['errors'])} | {pct(t['error_rate'])} | "
                f"{num(t['p50_latency_ms'], 1)} | {num(t['p95_latency_ms'], 1)} | {num(t['max_latency_ms'], 1)} |"
            )
    if not rows:
        return None
    head = [
        "### Tool calls",
        "| agent | tool | calls | errors | error rate | p50 ms | p95 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    return Section("tools", head, rows, "tools", total, [""])


def _steps(report: dict[str, Any]) -> Section | None:
    """LLM and tool calls per run (mean and max over the runs that ran) and the runs stopped, for the
    agents whose runs made calls or were stopped."""
    rows, total = [], 0
    for name, agent in sorted(report["agents"].items()):
        llm, tools, stops = agent["llm_calls_per_run"], agent["tool_calls_per_run"], agent["stops"]
        stopped = stops["killed_before_start"] + stops["killed_mid_run"] + stops["budget_exceeded"]
        if not (llm["max"] or tools["max"] or stopped):
            continue
        total += 1
        if len(rows) < MAX_STEP_ROWS:
            rows.append(f"| {md_text(name, 60)} | {per_run_text(llm)} | {per_run_text(tools)} | {md_text(stops_text(stops), 160)} |")
    if not rows:
        return None
    head = [
        "### Calls per run and stops",
        "| agent | LLM calls / run | tool calls / run | stopped runs |",
        "|---|---:|---:|---|",
    ]
    return Section("steps", head, rows, "agents", total, [""])


def _runs(report: dict[str, Any]) -> Section | None:
    """Each agent's first failing runs and its slowest run, with Jaeger links."""
    links, total = [], 0
    for name, agent in report["agents"].items():
        failing, slowest = agent["failing_runs"][:MAX_LINKS_PER_AGENT], agent["slowest_runs"][:1]
        total += len(failing) + len(slowest)
        if len(links) >= MAX_RUN_LINKS:
            continue
        for run in failing:
            links.append(
                f"- {md_text(name, 60)} failed: {_link(md_text(run['trace_id'], 40), run['jaeger_url'])} {md_text(error_text(run), 160)}"
            )
        for run in slowest:
            links.append(
                f"- {md_text(name, 60)} slowest: {_link(md_text(run['trace_id'], 40), run['jaeger_url'])} {num(run['latency_ms'], 1)} ms"
            )
    if not links:
        return None
    head = ["<details><summary>Failing and slowest runs (Jaeger)</summary>", ""]
    return Section("runs", head, links[:MAX_RUN_LINKS], "runs", total, ["", "</details>", ""])


def _hosts(report: dict[str, Any]) -> Section | None:
    """Per host and shard; left out for a fleet on one unnamed host (no ``host.name`` or shard)."""
    hosts = shown_hosts(report)
    if not hosts:
        return None
    head = [
        "### Hosts",
        "| host | shard | processes | runs | errors | LLM calls | spans | run cost | spans lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [
        f"| {md_text(row['host'], 60)} | {md_text(row['shard'], 40)} | {num(row['processes'])} | {num(row['runs'])} | "
        f"{num(row['errors'])} | {num(row['llm_calls'])} | {num(row['spans'])} | ${row['cost_usd']:.4f} | "
        f"{num(row['spans_dropped'] + row['spans_export_failed'])} |"
        for row in hosts
    ]
    return Section("hosts", head, rows, "hosts", tail=[""])


def _inputs(report: dict[str, Any]) -> Section:
    inputs = report["inputs"]
    head = [
        f"Inputs: {len(inputs['files'])} file{'' if len(inputs['files']) == 1 else 's'}, {num(inputs['spans'])} spans, "
        f"{num(inputs['duplicate_spans'])} duplicates dropped, "
        f"{num(inputs['conflicting_spans'])} conflicting duplicates (same ids, other content) dropped, "
        f"{num(inputs['bad_lines'])} bad lines, {num(inputs['bad_spans'])} bad spans."
    ]
    if inputs["tail_sampled_spans"]:
        head.append(
            f"**Sampled input**: {num(inputs['tail_sampled_spans'])} spans come from a tail-sampling collector: "
            "counts are of the traces kept, not totals."
        )
    losses = inputs["telemetry_losses"]
    if losses["processes"]:
        head.append(
            f"Telemetry losses (agents' SDK, before export): {num(losses['spans_dropped'])} dropped, "
            f"{num(losses['spans_export_failed'])} failed to export, across {num(losses['processes'])} "
            f"process{'' if losses['processes'] == 1 else 'es'}."
        )
    items = [
        f"- conflicting duplicate: trace {md_text(example['trace_id'], 64)} span {md_text(example['span_id'], 64)}"
        for example in inputs["conflicting_span_examples"]
    ]
    items += [f"- {md_text(p['file'], 80)}:{p['line']}: {md_text(p['error'], 160)}" for p in inputs["problems"][:MAX_INPUT_NOTES]]
    items += [f"- {md_text(message, 200)}" for message in inputs["messages"][:MAX_INPUT_NOTES]]
    total = len(inputs["conflicting_span_examples"]) + len(inputs["problems"]) + len(inputs["messages"])
    return Section("inputs", head, items, "problems and messages", total, [""])


def _fragment(key: str, text: str, noun: str, tail: list[str]) -> Section:
    """A section rendered elsewhere, its headings one level down (the report's sections are ``###``):
    the first line is its heading; table rows and list items are what may be cut."""
    lines = ["#" + line if line.startswith("#") else line for line in text.rstrip("\n").split("\n")]
    body = lines[1:]
    header = {i - 1 for i, line in enumerate(body) if line.startswith("|---")}
    rows = [line.startswith("|") and i not in header and not line.startswith("|---") for i, line in enumerate(body)]
    flags = [row or line.startswith("- ") for row, line in zip(rows, body, strict=True)]
    return Section(key, lines[:1], body, noun, None, ["", *tail], flags)


def _alpha_quality(report: dict[str, Any]) -> Section:
    section = report.get("alpha_quality")
    if section is None:
        return Section("alpha", ["### Alpha quality", "", "Left out (`--no-alpha-quality`).", ""], [], "rows")
    from alpha.quality_render import render_markdown as render_alpha
    from meta_supervisor.assemble.alpha import alpha_notes, trimmed_alpha

    shown, left_out = trimmed_alpha(section, MAX_ALPHA_AGENTS, MAX_ALPHA_SYMBOLS)
    notes = alpha_notes(section["unusable_signals"], left_out, REST_IN, f"`{semconv.EVENT_ALPHA_SIGNAL}`")
    return _fragment("alpha", render_alpha(shown), "rows", [*notes, ""] if notes else [])


def _worth(report: dict[str, Any]) -> Section | None:
    """Each agent's signals as a portfolio, gross and net of its LLM bill, ranked by net Sharpe."""
    if report.get("alpha_quality") is None and report.get("worth") is None:
        return None  # left out with the alpha quality (--no-alpha-quality)
    from meta_supervisor.render.worth import render_worth_markdown

    head, rows, total = render_worth_markdown(report.get("worth"))
    return Section("worth", head, rows, "agents", total, [""])


def _supervisor(report: dict[str, Any]) -> Section | None:
    section = report.get("supervisor")
    if section is None:
        return None
    from meta_supervisor.assemble.alpha import trimmed_supervisor
    from meta_supervisor.render.decisions import render_decisions_markdown

    shown, left_out = trimmed_supervisor(section, MAX_DECISION_ROWS)
    tail = []
    if section["error"]:
        tail += [f"- {md_text(section['error'], 300)}", ""]
    if left_out:
        tail += [f"{left_out} more decisions and kill-switch entries in meta_report.json.", ""]
    return _fragment("supervisor", render_decisions_markdown(shown), "decisions and entries", tail)
