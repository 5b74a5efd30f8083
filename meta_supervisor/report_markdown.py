"""``meta_report.md``: the report as a pull-request comment (summary table, needs attention, links).

Every string that came from spans (agent names, error messages, models, symbols) is escaped for
Markdown and for the HTML that GitHub renders inside Markdown, and cut to a readable length, so a
hostile agent name can neither break the table nor inject markup. The whole comment stays well
under GitHub's 65,536-character limit: the agent table is cut after ``MAX_AGENT_ROWS`` rows (by cost),
the alpha-quality section (``alpha.quality_render``) after ``MAX_ALPHA_AGENTS`` agents and
``MAX_ALPHA_SYMBOLS`` symbols each, the supervisor's decisions (``meta_supervisor.audit``) after
``MAX_DECISION_ROWS``, and each section after ``MAX_SECTION_CHARS`` characters.

Reads no environment variables.
"""

from __future__ import annotations

from typing import Any

from alpha.quality_render import md_escape

ELLIPSIS = "\u2026"
MAX_AGENT_ROWS = 40
MAX_ALPHA_AGENTS = 8
MAX_ALPHA_SYMBOLS = 12
MAX_DECISION_ROWS = 20
MAX_SECTION_CHARS = 20_000
MAX_LINKS_PER_AGENT = 3


def md_text(value: Any, limit: int = 80) -> str:
    """Plain text safe inside a Markdown table cell (no markup, no HTML, no line breaks); ``#`` is
    left as it is here (``alpha.quality_render.md_escape``)."""
    return md_escape(value, limit, hash_sign=False)


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _link(label: str, url: str) -> str:
    safe_url = url.replace("(", "%28").replace(")", "%29").replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")
    return f"[{label}]({safe_url})"


def render_markdown(report: dict[str, Any]) -> str:
    fleet = report["fleet"]
    inputs = report["inputs"]
    lines = ["## alphatrace meta report \u2014 " + md_text(report["generated_at"]), ""]
    window = report["window"]
    span = (
        "all time"
        if not (window["since"] or window["until"])
        else f"{md_text(window['since'] or ELLIPSIS)} to {md_text(window['until'] or 'now')}"
    )
    lines.append(
        f"**{fleet['agents']} agents \u00b7 {_num(fleet['runs'])} runs \u00b7 {_num(fleet['errors'])} errors "
        f"({_pct(fleet['error_rate'])}) \u00b7 {_num(fleet['skipped_killed'])} skipped (killed) \u00b7 "
        f"${fleet['cost_usd']:,.4f} LLM cost \u00b7 {_num(fleet['alpha_signals'])} alpha signals** "
        f"({span})"
    )
    extras = []
    if fleet["simulated_llm_calls"]:
        extras.append(f"{_num(fleet['simulated_llm_calls'])} of {_num(fleet['llm_calls'])} LLM calls were **simulated** (not priced)")
    if fleet["unpriced_llm_calls"]:
        extras.append(f"{_num(fleet['unpriced_llm_calls'])} LLM calls **unpriced** ({md_text(', '.join(fleet['unpriced_models']), 200)})")
    consistency = fleet["consistency"]
    if consistency["mismatched"] or consistency["orphan_llm_spans"]:
        extras.append(
            f"{_num(consistency['mismatched'])} runs whose totals do not match their LLM spans, "
            f"{_num(consistency['orphan_llm_spans'])} LLM spans without a run"
        )
    if not report["kill_switch"]["ok"]:
        extras.append(f"kill-switch file unreadable: {md_text(report['kill_switch']['error'], 200)}")
    for extra in extras:
        lines.append(f"- {extra}")
    lines.append("")

    lines.append("### Needs attention")
    if report["needs_attention"]:
        for item in report["needs_attention"][:15]:
            who = f"**{md_text(item['agent'], 60)}**: " if item["agent"] is not None else ""
            lines.append(f"- {who}{md_text(item['why'], 200)}")
    else:
        lines.append("- nothing")
    lines.append("")

    agents = report["agents"]
    lines.append("### Agents")
    if not agents:
        lines.append("No agent runs in the input.")
    else:
        lines.append("| agent | runs | errors | error rate | p50 ms | p95 ms | LLM calls | tokens | cost USD | signals | killed |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        ordered = sorted(agents.items(), key=lambda item: (-item[1]["cost_usd"], -item[1]["runs"], item[0]))
        for name, agent in ordered[:MAX_AGENT_ROWS]:
            killed = (
                "unknown" if agent["killed"] is None else ("**yes**: " + md_text(agent["kill_reason"], 60) if agent["killed"] else "no")
            )
            lines.append(
                f"| {md_text(name, 60)} | {_num(agent['runs'])} | {_num(agent['errors'])} | {_pct(agent['error_rate'])} | "
                f"{_num(agent['p50_latency_ms'], 1)} | {_num(agent['p95_latency_ms'], 1)} | {_num(agent['llm_calls'])} | "
                f"{_num(agent['tokens'])} | {agent['cost_usd']:,.4f} | {_num(agent['alpha_signals'])} | {killed} |"
            )
        if len(ordered) > MAX_AGENT_ROWS:
            lines.append(f"\n{len(ordered) - MAX_AGENT_ROWS} more agents in meta_report.json / meta_report.html.")
    lines.append("")

    links = []
    for name, agent in agents.items():
        for run in agent["failing_runs"][:MAX_LINKS_PER_AGENT]:
            links.append(
                f"- {md_text(name, 60)} failed: {_link(md_text(run['trace_id'], 40), run['jaeger_url'])} "
                f"{md_text(run['error_type'], 60)} {md_text(run['message'], 100)}"
            )
        for run in agent["slowest_runs"][:1]:
            links.append(
                f"- {md_text(name, 60)} slowest: {_link(md_text(run['trace_id'], 40), run['jaeger_url'])} {_num(run['latency_ms'], 1)} ms"
            )
    if links:
        lines.append("<details><summary>Failing and slowest runs (Jaeger)</summary>")
        lines.append("")
        lines.extend(links[:120])
        lines.append("")
        lines.append("</details>")
        lines.append("")

    lines.extend(_alpha_quality(report))
    lines.extend(_supervisor(report))

    lines.append(
        f"Inputs: {len(inputs['files'])} file{'' if len(inputs['files']) == 1 else 's'}, {_num(inputs['spans'])} spans, "
        f"{_num(inputs['duplicate_spans'])} duplicates dropped, "
        f"{_num(inputs['conflicting_spans'])} conflicting duplicates (same ids, other content) dropped, "
        f"{_num(inputs['bad_lines'])} bad lines, {_num(inputs['bad_spans'])} bad spans."
    )
    losses = inputs["telemetry_losses"]
    if losses["processes"]:
        lines.append(
            f"Telemetry losses (agents' SDK, before export): {_num(losses['spans_dropped'])} dropped, "
            f"{_num(losses['spans_export_failed'])} failed to export, across {_num(losses['processes'])} "
            f"process{'' if losses['processes'] == 1 else 'es'}."
        )
    for example in inputs["conflicting_span_examples"]:
        lines.append(f"- conflicting duplicate: trace {md_text(example['trace_id'], 64)} span {md_text(example['span_id'], 64)}")
    for problem in inputs["problems"][:5]:
        lines.append(f"- {md_text(problem['file'], 80)}:{problem['line']}: {md_text(problem['error'], 160)}")
    for message in inputs["messages"][:5]:
        lines.append(f"- {md_text(message, 200)}")
    lines.append("")
    return "\n".join(lines)


def _demoted(text: str) -> list[str]:
    """A section rendered elsewhere, its headings one level down (the report's sections are ``###``),
    cut at a line boundary after MAX_SECTION_CHARS characters."""
    out, size = [], 0
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("#"):
            line = "#" + line
        size += len(line) + 1
        if size > MAX_SECTION_CHARS:
            out.append(f"{ELLIPSIS} (cut here; the whole section is in meta_report.json / meta_report.html)")
            break
        out.append(line)
    return [*out, ""]


def _alpha_quality(report: dict[str, Any]) -> list[str]:
    section = report.get("alpha_quality")
    if section is None:
        return ["### Alpha quality", "", "Left out (`--no-alpha-quality`).", ""]
    from alpha.quality_render import render_markdown as render_alpha
    from meta_supervisor.report_alpha import alpha_notes, trimmed_alpha

    shown, left_out = trimmed_alpha(section, MAX_ALPHA_AGENTS, MAX_ALPHA_SYMBOLS)
    lines = _demoted(render_alpha(shown))
    rest_in = "meta_report.json / meta_report.html"
    notes = alpha_notes(section["unusable_signals"], left_out, rest_in, "`alpha.signal`")
    return lines + ([*notes, ""] if notes else [])


def _supervisor(report: dict[str, Any]) -> list[str]:
    section = report.get("supervisor")
    if section is None:
        return []
    from meta_supervisor.audit import render_decisions_markdown
    from meta_supervisor.report_alpha import trimmed_supervisor

    shown, left_out = trimmed_supervisor(section, MAX_DECISION_ROWS)
    lines = _demoted(render_decisions_markdown(shown))
    if section["error"]:
        lines += [f"- {md_text(section['error'], 300)}", ""]
    if left_out:
        lines += [f"{left_out} more decisions and kill-switch entries in meta_report.json.", ""]
    return lines
