"""The supervisor's decisions as the pages show them: a Markdown table and an HTML table, one row per
agent (decision, rule, result, the figures behind it, a person's hold), and the kill switch now.

Every value from the audit log goes through the one Markdown escaper (``md``) or ``html.escape``.
Reads no environment variables.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from services.markup_text import md_escape
from services.pricing import cost_per_day_text


def _figures_text(figures: Any) -> str:
    if not isinstance(figures, Mapping):  # a hand-edited log line: shown, never a crash
        figures = {}

    def f(key: str, fmt: str) -> str:
        value = figures.get(key)
        if value is None:
            return "n/a"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        return format(value, fmt)

    return (
        f"runs {figures.get('runs', 0)}, error rate {f('error_rate', '.1%')}, cost {cost_per_day_text(figures)}, "
        f"p95 {f('p95_latency_ms', ',.1f')} ms, IC {f('ic', '+.4f')} ({figures.get('ic_kind') or 'n/a'}, "
        f"t {f('ic_t_stat', '+.2f')}, HAC t {f('ic_t_stat_hac', '+.2f')}), "
        f"hit rate {f('hit_rate', '.1%')}, Brier {f('brier', '.4f')}"
    )


def md(value: Any, limit: int = 300) -> str:
    """Text safe in a Markdown table cell or list item: one line, no markup, no HTML."""
    return md_escape(value, limit)


def _held_text(d: Mapping[str, Any]) -> str:
    held = d.get("held_by")
    if not isinstance(held, Mapping):
        return ""
    return f"{held.get('by')} ({held.get('state')}, {held.get('at')}): {held.get('reason', '')}"


def _decision_cells(agent: str, d: Mapping[str, Any]) -> list[Any]:
    """One decision's row, as both renderers show it: agent, at, decision, rule, result, figures, held by."""
    decision = d["action"] if d["action"] != "hold" else f"hold (policy: {d['would']})"
    return [agent, d.get("at") or "", decision, d["rule"], d.get("result") or "", _figures_text(d.get("figures") or {}), _held_text(d)]


def render_decisions_markdown(section: Mapping[str, Any]) -> str:
    lines = ["## Supervisor decisions", ""]
    if not section["agents"] and not section["kill_switch"]:
        return "\n".join([*lines, "No decision recorded.", ""])
    if section["agents"]:
        lines += ["| agent | at | decision | rule | result | figures | held by |", "|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(md(c) for c in _decision_cells(agent, d)) + " |" for agent, d in section["agents"].items()]
    if section["kill_switch"]:
        lines += ["", "Kill switch now:", ""]
        for agent, entry in section["kill_switch"].items():
            lines.append(
                f"- {md(agent)}: {md(entry.get('state', 'killed'))} by {md(entry.get('by', ''))} at {md(entry.get('at', ''))}: "
                f"{md(entry.get('reason', ''))}"
            )
    return "\n".join(lines) + "\n"


def render_decisions_html(section: Mapping[str, Any]) -> str:
    e = html.escape
    out = ['<section class="supervisor"><h2>Supervisor decisions</h2>']
    if not section["agents"] and not section["kill_switch"]:
        return "".join([*out, "<p>No decision recorded.</p></section>"])
    if section["agents"]:
        head = "".join(f"<th>{name}</th>" for name in ("agent", "at", "decision", "rule", "result", "figures", "held by"))
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for agent, d in section["agents"].items():
            row = "".join(f"<td>{e(str(c))}</td>" for c in _decision_cells(agent, d))
            out.append(f'<tr class="held">{row}</tr>' if d["action"] == "hold" else f"<tr>{row}</tr>")
        out.append("</tbody></table>")
    if section["kill_switch"]:
        items = "".join(
            f"<li>{e(agent)}: {e(str(entry.get('state', 'killed')))} by {e(str(entry.get('by', '')))} at {e(str(entry.get('at', '')))}: "
            f"{e(str(entry.get('reason', '')))}</li>"
            for agent, entry in section["kill_switch"].items()
        )
        out.append(f"<p>Kill switch now:</p><ul>{items}</ul>")
    out.append("</section>")
    return "".join(out)
