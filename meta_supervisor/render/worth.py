"""The ``worth`` section on the pages: a compact ranking table for the pull-request comment, and
in HTML the same table, each combining agent's attribution and, per agent, its cumulative PnL
curves gross and net of its LLM bill and its drawdown (inline SVG, ``svg_charts.line_chart``).

Agent names come from span data: the Markdown goes through ``md_escape``, the HTML through ``html.escape``.

Reads no environment variables.
"""

from __future__ import annotations

from html import escape
from typing import Any

from meta_supervisor.render.numbers import DASH, num, pct
from meta_supervisor.render.svg_charts import COLORS, line_chart
from services.markup_text import md_escape

MAX_MD_ROWS = 15
MAX_HTML_CHARTS = 12
NET_COLOR = "#2e8b57"
ABOUT = (
    "Each agent's signals as a daily long-short portfolio held one trading day (factor-weighted by score; "
    "directional: long up, short down), before and after its LLM bill on its notional capital; no "
    "transaction costs; overlapping forecasts, a survivor universe (docs/alpha-quality.md)."
)


def _usd(value: float | None) -> str:
    return DASH if value is None else f"${value:,.0f}"


def _sharpe(value: float | None) -> str:
    return num(value, 2)


def _net(entry: dict[str, Any]) -> str:
    return _sharpe(entry["net_sharpe"]) if entry["reason"] is None else "n/a"


def _break_even(entry: dict[str, Any]) -> str:
    if entry["reason"] is not None:
        return "n/a"
    if entry["break_even_capital_usd"] is None:
        return "never" if entry["cost_usd"] else _usd(0.0)
    return _usd(entry["break_even_capital_usd"])


def _rows(section: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    return [(i + 1, row["agent"], section["agents"][row["agent"]]) for i, row in enumerate(section["ranking"])]


def render_worth_markdown(section: dict[str, Any] | None) -> tuple[list[str], list[str], int]:
    """(head lines, one table row per agent in ranking order, how many agents): the ``Section``'s parts."""
    if section is None:
        return ["### What each agent is worth", "", "No scored alpha signals.", ""], [], 0
    head = [
        "### What each agent is worth",
        "",
        ABOUT,
        "",
        "| # | agent | book | gross Sharpe | net Sharpe | cum. return | max DD | LLM cost | break-even capital | note |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = []
    for rank, name, e in _rows(section)[:MAX_MD_ROWS]:
        book = e[e["portfolio"]]
        note = md_escape(e["reason"], 80) if e["reason"] else (md_escape(e["break_even_reason"], 60) if e["break_even_reason"] else "")
        rows.append(
            f"| {rank} | {md_escape(name, 60)} | {e['portfolio']} | {_sharpe(e['gross_sharpe'])} | {_net(e)} | "
            f"{pct(book['cumulative_return'])} | {pct(book['max_drawdown'])} | "
            f"{_usd(e['cost_usd']) if e['reason'] is None else 'n/a'} | {_break_even(e)} | {note} |"
        )
    return head, rows, len(section["ranking"])


def _attribution_html(name: str, attribution: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td class=name>{escape(member)}</td><td class=n>{num(part['weight'], 2)}</td>"
        f"<td class=n>{pct(part['pnl_share'])}</td><td class=n>{pct(part['cost_share'])}</td></tr>"
        for member, part in attribution["members"].items()
    )
    return (
        f"<h3>Who carries {escape(name)}</h3><table><tr><th>member</th><th class=n>weight</th>"
        f"<th class=n>share of PnL</th><th class=n>share of cost</th></tr>{rows}</table>"
    )


def _drawdown(curve: list[float]) -> list[float]:
    peak, out = 1.0, []
    for value in curve:
        wealth = 1.0 + value
        peak = max(peak, wealth)
        out.append(wealth / peak - 1.0)
    return out


def render_worth_html(section: dict[str, Any] | None) -> str:
    if section is None:
        return '<h2>What each agent is worth</h2><p class="muted">No scored alpha signals.</p>'
    header = (
        "<tr><th class=n>#</th><th>agent</th><th>book</th><th class=n>gross Sharpe</th><th class=n>net Sharpe</th>"
        "<th class=n>cum. return</th><th class=n>ann. return</th><th class=n>ann. vol.</th><th class=n>max DD</th>"
        "<th>drawdown</th><th class=n>positive days</th><th class=n>turnover</th><th class=n>beta</th>"
        "<th class=n>capital</th><th class=n>gross PnL</th><th class=n>LLM cost</th><th class=n>cost / PnL</th>"
        "<th class=n>break-even capital</th><th>note</th></tr>"
    )
    body, charts, attributions = [], [], []
    for rank, name, e in _rows(section):
        b = e[e["portfolio"]]
        note = e["reason"] or e["break_even_reason"] or ""
        dd = f"{b['max_drawdown_peak'] or 'start'} to {b['max_drawdown_trough'] or DASH}" if b["max_drawdown_trough"] else DASH
        body.append(
            f"<tr><td class=n>{rank}</td><td class=name>{escape(name)}</td><td>{e['portfolio']}</td>"
            f"<td class=n>{_sharpe(e['gross_sharpe'])}</td><td class=n>{_net(e)}</td><td class=n>{pct(b['cumulative_return'])}</td>"
            f"<td class=n>{pct(b['annual_return'])}</td><td class=n>{pct(b['annual_volatility'])}</td>"
            f"<td class=n>{pct(b['max_drawdown'])}</td><td>{escape(dd)}</td><td class=n>{pct(b['positive_days'])}</td>"
            f"<td class=n>{pct(b['mean_daily_turnover'])}</td><td class=n>{num(b['beta'], 2)}</td>"
            f"<td class=n>{_usd(e['capital_usd'])}</td><td class=n>{_usd(e['gross_pnl_usd'])}</td>"
            f"<td class=n>{_usd(e['cost_usd']) if e['reason'] is None else 'n/a'}</td>"
            f"<td class=n>{pct(e['cost_share_of_gross_pnl'])}</td><td class=n>{_break_even(e)}</td><td>{escape(note)}</td></tr>"
        )
        curve = e["curve"]
        if curve and curve["dates"] and len(charts) < MAX_HTML_CHARTS:
            lines = [("gross", curve["gross"], COLORS["bar"])]
            if curve["net"] is not None:
                lines.append(("net of LLM bill", curve["net"], NET_COLOR))
            underwater = [("drawdown (gross)", _drawdown(curve["gross"]), COLORS["error"])]
            charts.append(
                f'<div class="chart"><h3>{escape(name)}: cumulative return ({escape(e["portfolio"])})</h3>'
                f"{line_chart(f'{name} cumulative return', curve['dates'], lines, pct)}"
                f"{line_chart(f'{name} drawdown', curve['dates'], underwater, pct, height=140)}"
                "</div>"
            )
        if e["attribution"]:
            attributions.append(_attribution_html(name, e["attribution"]))
    notes = [ABOUT, f"Benchmark of beta: the equal-weight return of {', '.join(section['universe'])}."]
    if section["curves_omitted"]:
        notes.append(f"Daily curves of {section['curves_omitted']:,} more agents are left out of the report.")
    return (
        '<section class="worth"><h2>What each agent is worth</h2>'
        f"<table>{header}{''.join(body)}</table>"
        f"{''.join(attributions)}"
        f'<div class="charts">{"".join(charts)}</div>' + "".join(f'<p class="muted">{escape(note)}</p>' for note in notes) + "</section>"
    )
