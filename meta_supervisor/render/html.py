"""``meta_report.html``: one self-contained page (inline CSS and SVG, no scripts, no external assets).

In the Markdown's order: the needs-attention list, the agent table, then charts (cost per agent,
p95 latency per agent, runs and errors per as-of day when runs carry one, else per UTC day), the
alpha-quality section (``alpha.quality_render``: tables and inline SVG charts of IC by horizon per
agent and the calibration curve), the supervisor's decisions beside the kill-switch entries
(``meta_supervisor.supervisor.audit``), per-agent details (models, LLM calls per operation, tool calls per tool,
signals, slowest and failing runs with Jaeger links, consistency) and the inputs. Every string from
the report goes through ``html.escape`` (agent names, messages, models, symbols, file names come from
span data), and links are emitted only for http(s) URLs, so an agent named
``<script>alert(1)</script>`` is shown as text; bidirectional controls are shown as ``[U+202E]``
(``services.markup_text.bidi_visible``), so no text displays in another order than it is written.

Reads no environment variables.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from html import escape
from typing import Any

from meta_supervisor.assemble.agents import cost_text, error_text, llm_calls_text, per_run_text, stops_text, window_text
from meta_supervisor.render.numbers import DASH, num, pct, shown_hosts
from meta_supervisor.render.paths import for_pages
from meta_supervisor.render.svg_charts import horizontal_bars, stacked_days
from services.markup_text import bidi_visible
from services.pricing import format_usd

CHART_AGENTS = 25
TABLE_AGENTS = 500
ALPHA_AGENTS = 8  # one colour each in the alpha charts
ALPHA_SYMBOLS = 40
DECISION_ROWS = 200

CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#f6f8fa;--accent:#3b6fb6;--bad:#c8553d;--warn:#b7791f}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:16px 0 6px}.muted{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(125px,1fr));gap:10px;margin:16px 0}
.card{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card b{display:block;font-size:20px}.card span{color:var(--muted);font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.chart{border:1px solid var(--line);border-radius:8px;padding:10px 12px;min-width:0}
.chart h3{margin-top:0}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}td.n,th.n{text-align:right}tr:nth-child(even) td{background:#fbfcfd}
.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:var(--bg);border:1px solid var(--line)}
.tag.bad{background:#fbeae6;border-color:#efc2b8;color:#8a2f1d}.tag.warn{background:#fdf3e1;border-color:#f0d6a6;color:#7a5312}
.tag.ok{background:#e8f3ea;border-color:#bcdcc3;color:#1e5f2d}
ul.attention li{margin:3px 0}details{border:1px solid var(--line);border-radius:8px;padding:6px 12px;margin:8px 0}
summary{cursor:pointer;font-weight:600}.name{word-break:break-all}code{font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;border-radius:2px}
section.alpha-quality .chart svg{max-width:100%;height:auto}section.alpha-quality td{white-space:nowrap}
section.worth td{white-space:nowrap}
section.alpha-quality h2,section.supervisor h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
tr.held td{background:#fdf3e1}
"""


_TO_ESCAPE = re.compile("[&<>\"']")  # what ``html.escape(quote=True)`` replaces


def esc(value: Any) -> str:
    text = value if type(value) is str else "" if value is None else str(value)
    # most cells (numbers, ids, names) have nothing to escape: returned as they are, as escape would
    return escape(text, quote=True) if _TO_ESCAPE.search(text) else text


def link(url: str, text: str) -> str:
    if not url[:8].lower().startswith(("http://", "https://")):  # the scheme's case only (8 characters, not the URL, lowered)
        return esc(text)
    return f'<a href="{esc(url)}" rel="noopener noreferrer">{esc(text)}</a>'


def _cards(report: dict[str, Any]) -> str:
    fleet = report["fleet"]
    cards = [
        ("agents", num(fleet["agents"])),
        ("runs", num(fleet["runs"])),
        ("errors", f"{num(fleet['errors'])} ({pct(fleet['error_rate'])})"),
        ("skipped (killed)", num(fleet["skipped_killed"])),
        ("LLM calls", num(fleet["llm_calls"])),
        ("tokens", num(fleet["tokens"])),
        ("LLM cost", cost_text(fleet)),
        ("alpha signals", num(fleet["alpha_signals"])),
    ]
    if fleet["tool_calls"]:
        cards.insert(5, ("tool calls", _calls_failed(fleet["tool_calls"], fleet["tool_errors"])))
    if fleet["stops"]["killed_mid_run"] or fleet["stops"]["budget_exceeded"]:
        cards.insert(4, ("runs stopped (not errors)", stops_text(fleet["stops"])))
    return '<div class="cards">' + "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in cards) + "</div>"


def _calls_failed(calls: int, errors: int) -> str:
    return f"{num(calls)} ({num(errors)} failed)" if errors else num(calls)


def _notes(report: dict[str, Any]) -> str:
    fleet = report["fleet"]
    notes = []
    if fleet["simulated_llm_calls"]:
        notes.append(
            f'<span class="tag warn">simulated LLM</span> {num(fleet["simulated_llm_calls"])} of {num(fleet["llm_calls"])} '
            "LLM calls were simulated and are not priced."
        )
    if fleet["unpriced_llm_calls"]:
        notes.append(
            f'<span class="tag warn">unpriced</span> {num(fleet["unpriced_llm_calls"])} LLM calls use models missing from the price '
            f"table: {esc(', '.join(fleet['unpriced_models']))}."
        )
    if not report["kill_switch"]["ok"]:
        notes.append(f'<span class="tag bad">kill switch unreadable</span> {esc(report["kill_switch"]["error"])}')
    if report["prices"].get("warning"):
        notes.append(f'<span class="tag warn">prices out of date</span> {esc(report["prices"]["warning"])}')
    for message in report["inputs"]["messages"]:
        notes.append(f'<span class="tag">note</span> {esc(message)}')
    return "".join(f"<p>{n}</p>" for n in notes)


def _charts(report: dict[str, Any]) -> str:
    agents = report["agents"]
    by_cost = sorted(((name, a["cost_usd"]) for name, a in agents.items() if a["cost_usd"]), key=lambda item: (-item[1], item[0]))[
        :CHART_AGENTS
    ]
    by_p95 = sorted(
        ((name, a["p95_latency_ms"]) for name, a in agents.items() if a["p95_latency_ms"] is not None), key=lambda item: (-item[1], item[0])
    )[:CHART_AGENTS]
    # by the market day each run saw when runs carry one (a replay runs a year of days in one afternoon)
    by_as_of = bool(report["as_of_days"])
    rows = report["as_of_days"] if by_as_of else report["days"]
    days = [(row["date"], row["runs"] - row["errors"], row["errors"]) for row in rows if row["runs"] or row["errors"]]
    day_title = "Runs and errors per as-of day (the market day each run saw)" if by_as_of else "Runs and errors per day (UTC)"
    cost_chart = horizontal_bars("LLM cost per agent", by_cost, format_usd, empty="no priced LLM calls")
    p95_chart = horizontal_bars("p95 latency per agent", by_p95, lambda v: f"{v:,.1f} ms", color="#5a8f5a")
    return (
        '<div class="charts">'
        f'<div class="chart"><h3>LLM cost per agent (USD)</h3>{cost_chart}</div>'
        f'<div class="chart"><h3>p95 run latency per agent (ms)</h3>{p95_chart}</div>'
        "</div>"
        f'<div class="chart" style="margin-top:16px"><h3>{day_title}</h3>'
        '<div class="legend muted"><span style="background:#7fa7d9"></span>ok runs<span style="background:#c8553d"></span>errors</div>'
        f"{stacked_days('runs and errors per day', days)}</div>"
    )


def _attention(report: dict[str, Any]) -> str:
    items = report["needs_attention"]
    if not items:
        return '<p class="muted">Nothing needs attention.</p>'
    rows = []
    for item in items:
        who = f'<b class="name">{esc(item["agent"])}</b>: ' if item["agent"] is not None else ""
        rows.append(f'<li><span class="tag">{esc(item["kind"])}</span> {who}{esc(item["why"])}</li>')
    return '<ul class="attention">' + "".join(rows) + "</ul>"


def _agent_table(report: dict[str, Any]) -> str:
    agents = sorted(report["agents"].items(), key=lambda item: (-(item[1]["cost_usd"] or 0.0), -item[1]["runs"], item[0]))
    head = (
        "<tr><th>agent</th><th class=n>runs</th><th class=n>errors</th><th class=n>error rate</th><th class=n>killed runs</th>"
        "<th class=n>p50 ms</th><th class=n>p95 ms</th><th class=n>p99 ms</th><th class=n>max ms</th><th class=n>LLM calls</th>"
        "<th class=n>tool calls</th>"
        "<th class=n>tokens in / out</th><th class=n>LLM cost</th><th class=n>signals</th><th class=n>invalid</th><th>kill switch</th></tr>"
    )
    rows = []
    for name, a in agents[:TABLE_AGENTS]:
        if a["killed"] is None:
            state = '<span class="tag warn">unknown</span>'
        elif a["killed"]:
            state = f'<span class="tag bad">killed</span> {esc(a["kill_reason"])}'
        else:
            state = '<span class="tag ok">running</span>'
        rows.append(
            f'<tr><td class="name">{esc(name)}</td><td class=n>{num(a["runs"])}</td><td class=n>{num(a["errors"])}</td>'
            f"<td class=n>{pct(a['error_rate'])}</td><td class=n>{num(a['skipped_killed'])}</td>"
            f"<td class=n>{num(a['p50_latency_ms'], 1)}</td><td class=n>{num(a['p95_latency_ms'], 1)}</td>"
            f"<td class=n>{num(a['p99_latency_ms'], 1)}</td><td class=n>{num(a['max_latency_ms'], 1)}</td>"
            f"<td class=n>{esc(llm_calls_text(a))}</td><td class=n>{esc(_calls_failed(a['tool_calls'], a['tool_errors']))}</td>"
            f"<td class=n>{num(a['tokens_in'])} / {num(a['tokens_out'])}</td><td class=n>{esc(cost_text(a))}</td>"
            f"<td class=n>{num(a['alpha_signals'])}</td><td class=n>{num(a['invalid_signals'])}</td><td>{state}</td></tr>"
        )
    more = f'<p class="muted">{len(agents) - TABLE_AGENTS} more agents in meta_report.json.</p>' if len(agents) > TABLE_AGENTS else ""
    return f"<table>{head}{''.join(rows)}</table>{more}"


def _table(headers: Sequence[str], rows: list[list[str]], numeric: AbstractSet[int] = frozenset()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head, row_markup = _table_markup(tuple(headers), frozenset(numeric))
    width = len(headers)
    if all(len(row) == width for row in rows):
        # each row filled into the row's markup in C (1,000 agents: ~3,500 tables a page); the
        # cells are arguments, never part of the template, so a brace in one is kept as it is
        body = "".join([row_markup.format(*row) for row in rows])
    else:
        body = "".join(
            "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>" for row in rows
        )
    return f"<table><tr>{head}</tr>{body}</table>"


@functools.lru_cache(maxsize=256)  # a handful of tables, made for every agent
def _table_markup(headers: tuple[str, ...], numeric: frozenset[int]) -> tuple[str, str]:
    """A table's header cells, and one row's markup with a ``{}`` for each cell."""
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    row = "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{{}}</td>" for i in range(len(headers))) + "</tr>"
    return head, row


# the agent details' tables, made for each of up to 500 agents
_MODEL_HEADERS = ("model", "calls", "simulated", "errors", "tokens in", "cached", "tokens out", "cost")
_MODEL_NUMERIC = frozenset(range(1, 8))
_TOOL_HEADERS = ("tool", "calls", "errors", "error rate", "avg ms", "p50 ms", "p95 ms", "max ms", "without latency")
_TOOL_NUMERIC = frozenset(range(1, 9))
_SLOW_HEADERS = ("trace", "run id", "latency ms", "started")
_SLOW_NUMERIC = frozenset({2})
_FAILING_HEADERS = ("trace", "error", "started")


def _agent_details(name: str, a: dict[str, Any]) -> str:
    models = _table(
        _MODEL_HEADERS,
        [
            [
                esc(model),
                num(m["calls"]),
                num(m["simulated_calls"]),
                num(m["errors"]),
                num(m["tokens_in"]),
                num(m["tokens_cached"]),
                num(m["tokens_out"]),
                "unpriced" if m["priced"] is False else format_usd(m["cost_usd"], "simulated, not priced"),
            ]
            for model, m in a["models"].items()
        ],
        _MODEL_NUMERIC,
    )
    tools = _table(
        _TOOL_HEADERS,
        [
            [
                esc(tool),
                num(t["calls"]),
                num(t["errors"]),
                pct(t["error_rate"]),
                num(t["avg_latency_ms"], 1),
                num(t["p50_latency_ms"], 1),
                num(t["p95_latency_ms"], 1),
                num(t["max_latency_ms"], 1),
                num(t["calls_without_latency"]),
            ]
            for tool, t in a["tools"].items()
        ],
        _TOOL_NUMERIC,
    )
    directions = sorted({d for by_dir in a["alpha_by_symbol"].values() for d in by_dir})
    signals = _table(
        ["symbol", *directions],
        [[esc(sym), *[num(by.get(d, 0)) for d in directions]] for sym, by in a["alpha_by_symbol"].items()],
        set(range(1, len(directions) + 1)),
    )
    invalid = _table(["invalid signal reason", "count"], [[esc(r), num(c)] for r, c in a["invalid_signal_reasons"].items()], {1})
    slow = _table(
        _SLOW_HEADERS,
        [
            [link(r["jaeger_url"], r["trace_id"]), esc(r["run_id"]), num(r["latency_ms"], 1), esc(r["started_at"])]
            for r in a["slowest_runs"]
        ],
        _SLOW_NUMERIC,
    )
    failing = _table(
        _FAILING_HEADERS,
        [[link(r["jaeger_url"], r["trace_id"]), esc(error_text(r)), esc(r["started_at"])] for r in a["failing_runs"]],
    )
    c = a["consistency"]
    consistency = (
        f"<p>{num(c['consistent'])} of {num(c['checked'])} runs' root totals match their LLM and tool spans; "
        f"<b>{num(c['mismatched'])}</b> do not; "
        f"{num(c['unchecked'])} carry no totals; {num(c['orphan_llm_spans'])} LLM spans have no run.</p>"
        + _table(["trace", "what differs"], [[link(m["jaeger_url"], m["trace_id"]), esc(m["detail"])] for m in c["mismatch_examples"]])
    )
    window = f"first run {esc(a['first_run_at'] or DASH)}, last run {esc(a['last_run_at'] or DASH)}" if a["runs"] else "no runs"
    return (
        f'<details><summary class="name">{esc(name)}</summary>'
        f'<p class="muted">{window}; {num(a["simulated_llm_calls"])} simulated LLM calls, '
        f"{num(a['unpriced_llm_calls'])} unpriced; LLM calls {esc(llm_calls_text(a))}</p>"
        f"<p>LLM calls per run {esc(per_run_text(a['llm_calls_per_run']))}, tool calls per run "
        f"{esc(per_run_text(a['tool_calls_per_run']))} (over the runs that ran and carry the total); "
        f"stopped runs: {esc(stops_text(a['stops']))}</p>"
        f"<h3>LLM calls by model</h3>{models}<h3>Tool calls</h3>{tools}"
        f"<h3>Alpha signals by symbol and direction</h3>{signals}{invalid}"
        f"<h3>Slowest runs</h3>{slow}<h3>Failing runs</h3>{failing}<h3>Consistency</h3>{consistency}</details>"
    )


def _inputs(report: dict[str, Any]) -> str:
    i = report["inputs"]
    files = _table(
        ["file", "format", "bytes", "records", "incomplete tail"],
        [[esc(f["path"]), esc(f["format"]), num(f["bytes"]), num(f["records"]), num(f["partial_tail_bytes"])] for f in i["file_details"]],
        {2, 3, 4},
    )
    problems = _table(["file", "line", "problem"], [[esc(p["file"]), num(p["line"]), esc(p["error"])] for p in i["problems"]], {1})
    losses = i["telemetry_losses"]
    lossy = _table(
        ["service.name", "service.instance.id", "dropped (full queue)", "failed to export"],
        [
            [esc(p["service_name"]), esc(p["service_instance_id"]), num(p["spans_dropped"]), num(p["spans_export_failed"])]
            for p in losses["by_process"]
        ],
        {2, 3},
    )
    conflicts = "".join(
        f"<p>Conflicting duplicate: trace <code>{esc(e['trace_id'])}</code> span <code>{esc(e['span_id'])}</code></p>"
        for e in i["conflicting_span_examples"]
    )
    return (
        f"<p>{num(i['spans'])} spans read; {num(i['duplicate_spans'])} duplicates dropped; "
        f"{num(i['conflicting_spans'])} conflicting duplicates (same ids, other content) dropped; "
        f"{num(i['bad_lines'])} unreadable lines and "
        f"{num(i['bad_spans'])} unreadable spans skipped; {num(i['spans_outside_window'])} outside the window.</p>"
        f"{conflicts}"
        f"<p>Telemetry losses before export (the agents' SDK): {num(losses['spans_dropped'])} spans dropped by a full queue, "
        f"{num(losses['spans_export_failed'])} failed to export, across {num(losses['processes'])} processes.</p>"
        f"{lossy if losses['by_process'] else ''}"
        f"{files}<h3>Problems (first ones)</h3>{problems}"
    )


def _alpha_quality(report: dict[str, Any]) -> str:
    section = report.get("alpha_quality")
    if section is None:
        return '<h2>Alpha quality</h2><p class="muted">Left out (--no-alpha-quality).</p>'
    from alpha.quality_render import render_html as render_alpha
    from meta_supervisor.assemble.alpha import alpha_notes, trimmed_alpha

    shown, left_out = trimmed_alpha(section, ALPHA_AGENTS, ALPHA_SYMBOLS)
    notes = [esc(note) for note in alpha_notes(section["unusable_signals"], left_out, "meta_report.json")]
    notes.append(f"Market data (what the signals are scored against): {esc(section['market_data'])}.")
    return render_alpha(shown) + "".join(f'<p class="muted">{note}</p>' for note in notes)


def _worth(report: dict[str, Any]) -> str:
    if report.get("alpha_quality") is None and report.get("worth") is None:
        return ""
    from meta_supervisor.render.worth import render_worth_html

    return render_worth_html(report.get("worth"))


def _supervisor(report: dict[str, Any]) -> str:
    section = report.get("supervisor")
    if section is None:
        return ""
    from meta_supervisor.assemble.alpha import trimmed_supervisor
    from meta_supervisor.render.decisions import render_decisions_html

    shown, left_out = trimmed_supervisor(section, DECISION_ROWS)
    notes = [f"Audit log: {esc(section['audit_log'])}."] if section["audit_log"] else []
    if section["error"]:
        notes.append(f'<span class="tag bad">unreadable</span> {esc(section["error"])}')
    if left_out:
        notes.append(f"{num(left_out)} more decisions and kill-switch entries in meta_report.json.")
    return render_decisions_html(shown) + "".join(f'<p class="muted">{note}</p>' for note in notes)


def _hosts(report: dict[str, Any]) -> str:
    """Per host and shard (docs/several-hosts.md); nothing for a fleet on one unnamed host."""
    hosts = shown_hosts(report)
    if not hosts:
        return ""
    rows = [
        [
            esc(row["host"]),
            esc(row["shard"]),
            num(row["processes"]),
            num(row["runs"]),
            num(row["errors"]),
            num(row["llm_calls"]),
            num(row["spans"]),
            esc(format_usd(row["cost_usd"])),
            num(row["spans_dropped"] + row["spans_export_failed"]),
        ]
        for row in hosts
    ]
    headers = ["host", "shard", "processes", "runs", "errors", "LLM calls", "spans", "run cost", "spans lost"]
    return "<h2>Hosts</h2>" + _table(headers, rows, numeric=set(range(2, 9)))


def render_html(report: dict[str, Any]) -> str:
    return "".join(html_pieces(report))


def html_pieces(report: dict[str, Any]) -> Iterator[str]:
    """The page of ``render_html`` as pieces for ``write_atomically``, made as they are written: the
    agents' details one agent at a time (1,000 agents: a 2.2 MB page, two-byte characters, made and
    then copied whole by the join, the bidi check and the encoding held ~10 MB at the build's peak)."""
    report = for_pages(report)  # no absolute local path on a page (report_paths)
    span = window_text(report["window"])
    agents = list(report["agents"].items())[:TABLE_AGENTS]
    # the page's own text has no bidi control: every one came from span data; shown piece by piece
    # (``bidi_visible`` maps characters one by one, so the pieces' texts join to the page's)
    yield bidi_visible(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>alphatrace meta report {esc(report['generated_at'])}</title><style>{CSS}</style></head><body><main>"
        f'<h1>alphatrace meta report</h1><p class="muted">generated {esc(report["generated_at"])} \u00b7 {esc(span)} \u00b7 '
        f"LLM prices {esc(report['prices']['version'])} \u00b7 schema {esc(report['schema_version'])}</p>"
        f"{_cards(report)}{_notes(report)}"
        f"<h2>Needs attention</h2>{_attention(report)}"
        f"<h2>Agents</h2>{_agent_table(report)}"
        f"<h2>Charts</h2>{_charts(report)}"
        f"{_alpha_quality(report)}"
        f"{_worth(report)}"
        f"{_supervisor(report)}"
        f"{_hosts(report)}"
        "<h2>Agent details</h2>"
    )
    shown = False
    for name, a in agents:
        piece = _agent_details(name, a)
        shown = shown or bool(piece)
        yield bidi_visible(piece)
    if not shown:
        yield "<p class=muted>No agents.</p>"
    yield bidi_visible(f"<h2>Inputs</h2>{_inputs(report)}</main></body></html>\n")
