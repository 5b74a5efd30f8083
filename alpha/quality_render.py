"""Markdown and HTML snippets for the report's ``alpha_quality`` section (from ``alpha.quality``).

``render_markdown(section)`` and ``render_html(section)`` return a fragment the report embeds: the
per-agent, per-horizon table (cross-sectional and per-symbol time-series IC in separate, labelled
columns), cost efficiency, the per-symbol breakdown at the primary horizon (folded in a
``<details>`` element in HTML) and, in HTML, self-contained inline SVG charts (IC by horizon per
agent, one chart per IC kind, and the calibration curve). Every string from the
data is escaped with ``html.escape`` in HTML, and for Markdown and HTML in Markdown (agent and symbol
names come from spans, which anyone can write) by ``md_escape``, the report's one Markdown escaper,
which also makes ``@mentions`` and issue references inert in a GitHub comment and shows bidirectional
controls (``services.markup_text.bidi_visible`` does that for the HTML page).

Reads no environment variables.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from otel import semconv
from services.markup_text import md_escape
from services.pricing import format_usd

PALETTE = ("#3b6ea5", "#c0504d", "#5a8f5a", "#8064a2", "#d08c2b", "#4bacc6", "#7f7f7f", "#a05a2c")
CELL_CHARS = 80  # escaped characters in a Markdown table cell
_XS = "cross-sectional IC"
_TS = "per-symbol time-series IC"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _hit(cell: Mapping[str, Any]) -> str:
    """The hit rate beside its base rate: the share of scored signals whose symbol went up (``up_rate``),
    which an agent that always says ``up`` would hit."""
    if cell["hit_rate"] is None:
        return "–"
    return f"{_pct(cell['hit_rate'])} (base {_pct(cell['up_rate'])})"


def _ic(summary: Mapping[str, Any]) -> str:
    if summary["mean"] is None:
        return "–"
    t = f", t={summary['t_stat']:.2f}" if summary["t_stat"] is not None else ""
    hac = summary.get("t_stat_hac")  # absent from a section written before it existed
    t += f", HAC t={hac:.2f}" if hac is not None and summary.get("hac_lags") else ""  # with 0 lags it is t
    return f"{summary['mean']:+.3f} (n={summary['n']}{t})"


def _rows(section: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for agent, data in section["agents"].items():
        for h, cell in data["horizons"].items():
            rows.append(
                [
                    agent,
                    h,
                    str(cell["scored"]),
                    str(cell["pending"]),
                    _hit(cell),
                    _ic(cell["ic_cross_sectional"]),
                    _ic(cell["ic_time_series"]),
                    _num(cell["brier"], 4),
                    _pct(cell["mean_return_long"], 2),
                    _pct(cell["mean_return_short"], 2),
                ]
            )
    return rows


_HEAD = [
    "agent",
    "horizon (days)",
    "scored",
    "pending",
    "hit rate (base)",
    _XS + " (dates)",
    _TS + " (symbols)",
    "Brier",
    "mean return long",
    "mean return short (good: negative)",
]
_COST_HEAD = ["agent", "cost USD", "scored signals", "cost per scored signal", "IC (kind)", "IC per dollar"]
_SYMBOL_HEAD = [
    "agent",
    "symbol",
    "scored",
    "hit rate (base)",
    "time-series IC",
    "Brier",
    "mean return long",
    "mean return short (good: negative)",
]


def _cost_rows(section: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for agent, data in section["agents"].items():
        c = data["cost"]
        kind = {"cross_sectional": "cross-sectional", "time_series": "time-series"}.get(c["ic_kind"] or "", "–")
        per_dollar = "no priced cost" if c["ic_per_dollar"] is None and not c["cost_usd"] else _num(c["ic_per_dollar"], 2)
        rows.append(
            [
                agent,
                format_usd(c["cost_usd"]),
                str(c["scored_signals"]),
                format_usd(c["cost_per_scored_signal_usd"]),
                f"{_num(c['ic'])} ({kind})",
                per_dollar,
            ]
        )
    return rows


def _symbol_rows(section: Mapping[str, Any]) -> list[list[str]]:
    h = str(section["primary_horizon"])
    rows = []
    for agent, data in section["agents"].items():
        for symbol, cell in data["horizons"].get(h, {}).get("by_symbol", {}).items():
            rows.append(
                [
                    agent,
                    symbol,
                    str(cell["scored"]),
                    _hit(cell),
                    _num(cell["ic_time_series"]),
                    _num(cell["brier"], 4),
                    _pct(cell["mean_return_long"], 2),
                    _pct(cell["mean_return_short"], 2),
                ]
            )
    return rows


def _intro(section: Mapping[str, Any]) -> str:
    horizons = ", ".join(str(h) for h in section["horizons"])
    today = f"; returns after {section['today']} are pending" if section["today"] else ""
    return (
        f"Every `{semconv.EVENT_ALPHA_SIGNAL}` scored against its symbol's realised forward return over {horizons} trading days{today}. "
        f"Hit rate leaves `flat` signals out; a zero return is a miss; beside it its base rate, the share of scored signals "
        f"whose symbol went up (`up_rate`: what always saying `up` would hit). "
        f"Mean return long / short: the mean forward return of the symbols `up` / `down` signals named, as the symbol moved "
        f"(not the short position's P&L), so a good short has a **negative** mean return short. "
        f"**Cross-sectional IC**: Spearman of score vs return across symbols on each as-of date with at least "
        f"{section['min_cross_section']} symbols, then mean over dates (Alphalens' IC). **Per-symbol time-series IC**: Spearman "
        f"over dates for each symbol with at least {section['min_time_series']} signals, then mean over symbols. "
        f"t: mean / std × √n. **HAC t** (cross-sectional, h > 1): Newey-West t-stat with h - 1 lags, valid although "
        f"daily h-day returns overlap; the plain t is inflated, and the policy judges the HAC t. "
        f"Brier: mean (prob_up - [return > 0])^2, 0.25 for a coin. {section['duplicates_dropped']} superseded duplicate signal(s) dropped."
    )


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md_escape(c, CELL_CHARS) for c in row) + " |" for row in rows]
    return lines


def render_markdown(section: Mapping[str, Any]) -> str:
    lines = ["## Alpha quality", "", _intro(section), ""]
    if not section["agents"]:
        return "\n".join([*lines, "No alpha signals in the input.", ""])
    lines += _md_table(_HEAD, _rows(section))
    lines += ["", f"### Cost efficiency (horizon {section['primary_horizon']})", ""]
    lines += ["IC per dollar = IC / cost per scored signal; simulated and rule agents cost nothing priced.", ""]
    lines += _md_table(_COST_HEAD, _cost_rows(section))
    lines += ["", f"### Per symbol (horizon {section['primary_horizon']})", ""]
    lines += _md_table(_SYMBOL_HEAD, _symbol_rows(section))
    return "\n".join(lines) + "\n"


# --- HTML ------------------------------------------------------------------------------------


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr></thead><tbody>{body}</tbody></table>"


def _legend(agents: list[str], x: float, y: float) -> str:
    e = html.escape
    parts = []
    for i, agent in enumerate(agents):
        color = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{x:.1f}" y="{y + 16 * i:.1f}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y + 16 * i + 9:.1f}" font-size="11">{e(agent)}</text>')
    return "".join(parts)


def ic_by_horizon_svg(section: Mapping[str, Any], kind: str) -> str:
    """Grouped bars: one group per horizon, one bar per agent, y = mean IC of ``kind``."""
    e = html.escape
    agents = list(section["agents"])
    horizons = [str(h) for h in section["horizons"]]
    values = {(a, h): section["agents"][a]["horizons"][h][f"ic_{kind}"]["mean"] for a in agents for h in horizons}
    top = max([abs(v) for v in values.values() if v is not None] + [0.05])
    width, height, left, plot_w, plot_h, top_pad = 520, 230, 50, 330, 170, 20
    zero = top_pad + plot_h / 2
    title = _XS if kind == "cross_sectional" else _TS
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{e(title)} by horizon per agent</title>",
        f'<line x1="{left}" y1="{zero:.1f}" x2="{left + plot_w}" y2="{zero:.1f}" stroke="#333"/>',
        f'<text x="{left - 4}" y="{top_pad + 4}" font-size="10" text-anchor="end">{top:+.2f}</text>',
        f'<text x="{left - 4}" y="{zero + 4:.1f}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h + 4}" font-size="10" text-anchor="end">{-top:+.2f}</text>',
    ]
    group_w = plot_w / max(1, len(horizons))
    bar_w = group_w * 0.8 / max(1, len(agents))
    for gi, h in enumerate(horizons):
        x0 = left + gi * group_w + group_w * 0.1
        parts.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{height - 8}" font-size="11" text-anchor="middle">{e(h)}d</text>')
        for ai, agent in enumerate(agents):
            value = values[(agent, h)]
            if value is None:
                continue
            bar_h = abs(value) / top * plot_h / 2
            y = zero - bar_h if value >= 0 else zero
            parts.append(
                f'<rect x="{x0 + ai * bar_w:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" height="{bar_h:.1f}" '
                f'fill="{PALETTE[ai % len(PALETTE)]}">'
                f"<title>{e(agent)}, {e(h)}d: {value:+.4f}</title></rect>"
            )
    parts.append(_legend(agents, left + plot_w + 15, top_pad))
    parts.append("</svg>")
    return "".join(parts)


def calibration_svg(section: Mapping[str, Any]) -> str:
    """Observed up-rate against mean ``prob_up`` per bin, one line per agent, at the primary horizon."""
    e = html.escape
    agents = list(section["agents"])
    h = str(section["primary_horizon"])
    size, left, top_pad, legend_w = 220, 40, 15, 150
    width, height = left + size + legend_w, top_pad + size + 35

    def sx(v: float) -> float:
        return left + v * size

    def sy(v: float) -> float:
        return top_pad + (1 - v) * size

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>Calibration at {e(h)} trading days: observed up-rate against predicted prob_up</title>",
        f'<rect x="{left}" y="{top_pad}" width="{size}" height="{size}" fill="none" stroke="#999"/>',
        f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" stroke="#bbb" stroke-dasharray="4 3"/>',
        f'<text x="{sx(0.5)}" y="{height - 5}" font-size="11" text-anchor="middle">predicted prob_up</text>',
        f'<text x="12" y="{sy(0.5)}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {sy(0.5)})">observed up-rate</text>',
        f'<text x="{left - 6}" y="{sy(1) + 4}" font-size="10" text-anchor="end">1</text>',
        f'<text x="{left - 6}" y="{sy(0) + 4}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{sx(0)}" y="{sy(0) + 14}" font-size="10" text-anchor="middle">0</text>',
        f'<text x="{sx(0.5)}" y="{sy(0) + 14}" font-size="10" text-anchor="middle">0.5</text>',
        f'<text x="{sx(1)}" y="{sy(0) + 14}" font-size="10" text-anchor="middle">1</text>',
    ]
    for ai, agent in enumerate(agents):
        color = PALETTE[ai % len(PALETTE)]
        cells = [c for c in section["agents"][agent]["horizons"].get(h, {}).get("calibration", []) if c["count"]]
        points = [(sx(c["mean_prob_up"]), sy(c["observed_up_rate"]), c) for c in cells]
        if len(points) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)}"/>'
            )
        for x, y, c in points:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{e(agent)}: predicted {c["mean_prob_up"]:.3f}, '
                f"observed {c['observed_up_rate']:.3f}, {c['count']} signals</title></circle>"
            )
    parts.append(_legend(agents, left + size + 15, top_pad))
    parts.append("</svg>")
    return "".join(parts)


def render_html(section: Mapping[str, Any]) -> str:
    e = html.escape
    intro = e(_intro(section)).replace("**", "").replace("`", "")
    out = ['<section class="alpha-quality"><h2>Alpha quality</h2>', f"<p>{intro}</p>"]
    if not section["agents"]:
        return "".join([*out, "<p>No alpha signals in the input.</p></section>"])
    out.append('<div class="charts">')
    out.append(f'<div class="chart"><h3>{e(_XS)} by horizon</h3>{ic_by_horizon_svg(section, "cross_sectional")}</div>')
    out.append(f'<div class="chart"><h3>{e(_TS)} by horizon</h3>{ic_by_horizon_svg(section, "time_series")}</div>')
    out.append(f'<div class="chart"><h3>Calibration ({e(str(section["primary_horizon"]))} days)</h3>{calibration_svg(section)}</div>')
    out.append("</div>")
    out.append(_html_table(_HEAD, _rows(section)))
    out.append(f"<h3>Cost efficiency (horizon {e(str(section['primary_horizon']))})</h3>")
    out.append("<p>IC per dollar = IC / cost per scored signal; simulated and rule agents cost nothing priced.</p>")
    out.append(_html_table(_COST_HEAD, _cost_rows(section)))
    symbol_rows = _symbol_rows(section)
    out.append(
        f"<details><summary>Per symbol (horizon {e(str(section['primary_horizon']))}): {len(symbol_rows)} rows</summary>"
        f"{_html_table(_SYMBOL_HEAD, symbol_rows)}</details>"
    )
    out.append("</section>")
    return "".join(out)
