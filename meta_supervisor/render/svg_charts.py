"""Inline SVG charts for the HTML report: horizontal bars per agent, stacked bars per day, lines over days.

Plain SVG strings, no scripts, no external assets; every label goes through ``html.escape`` (the
labels are agent names and dates taken from span data).

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

BAR_HEIGHT = 22
LABEL_WIDTH = 170
VALUE_WIDTH = 90
MAX_LABEL_CHARS = 24
COLORS = {"bar": "#3b6fb6", "error": "#c8553d", "ok": "#7fa7d9", "axis": "#8a8f98", "text": "#1f2328"}


def _size(width: int, height: int) -> str:
    """Scale down with the page (never up): the viewBox keeps the drawing's proportions."""
    return f'viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px;height:auto"'


def _no_data(title: str, width: int, text: str = "no data") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" {_size(width, 40)} role="img" aria-label="{escape(title)}">'
        f'<text x="0" y="24" fill="{COLORS["axis"]}" font-size="13">{escape(text)}</text></svg>'
    )


def _short(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def horizontal_bars(
    title: str,
    items: Sequence[tuple[str, float]],
    fmt: Callable[[float], str],
    width: int = 560,
    color: str = COLORS["bar"],
    empty: str = "no data",
) -> str:
    """One bar per (label, value), largest first as given; an empty list draws ``empty`` instead."""
    if not items:
        return _no_data(title, width, empty)
    top = max(value for _, value in items) or 1.0
    plot = width - LABEL_WIDTH - VALUE_WIDTH
    height = len(items) * (BAR_HEIGHT + 6) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" {_size(width, height)} role="img" aria-label="{escape(title)}" font-size="12">']
    for i, (label, value) in enumerate(items):
        y = 4 + i * (BAR_HEIGHT + 6)
        length = max(plot * (value / top), 1 if value else 0)
        parts.append(f"<g><title>{escape(label)}: {escape(fmt(value))}</title>")
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end" fill="{COLORS["text"]}">{escape(_short(label))}</text>')
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" rx="3" fill="{color}"/>')
        parts.append(f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 15}" fill="{COLORS["text"]}">{escape(fmt(value))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_days(title: str, days: Sequence[tuple[str, int, int]], width: int = 1100, height: int = 220) -> str:
    """Per day (date, ok runs, error runs): errors stacked on ok runs, with a y axis and date labels."""
    if not days:
        return _no_data(title, width)
    left, bottom, top_pad = 48, 34, 10
    plot_w = width - left - 10
    plot_h = height - bottom - top_pad
    peak = max(ok + err for _, ok, err in days) or 1
    slot = plot_w / len(days)
    bar_w = max(min(slot * 0.8, 40), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" {_size(width, height)} role="img" aria-label="{escape(title)}" font-size="11">']
    for fraction in (0, 0.5, 1):
        y = top_pad + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{COLORS["axis"]}">{round(peak * fraction):,}</text>')
    label_every = max(1, round(len(days) / 12))
    for i, (date, ok, err) in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        ok_h = plot_h * ok / peak
        err_h = plot_h * err / peak
        base = top_pad + plot_h
        parts.append(f"<g><title>{escape(date)}: {ok + err:,} runs, {err:,} errors</title>")
        parts.append(f'<rect x="{x:.1f}" y="{base - ok_h:.1f}" width="{bar_w:.1f}" height="{ok_h:.1f}" fill="{COLORS["ok"]}"/>')
        parts.append(
            f'<rect x="{x:.1f}" y="{base - ok_h - err_h:.1f}" width="{bar_w:.1f}" height="{err_h:.1f}" fill="{COLORS["error"]}"/></g>'
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 12}" text-anchor="middle" fill="{COLORS["axis"]}">{escape(date)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    title: str,
    dates: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], str]],
    fmt: Callable[[float], str],
    width: int = 560,
    height: int = 200,
) -> str:
    """One polyline per (label, values, colour) over the same ``dates``, a zero line, a y axis with the
    lowest, zero and highest values, and the first and last dates; a legend under the plot."""
    drawn = [(label, values, color) for label, values, color in series if values]
    if not dates or not drawn:
        return _no_data(title, width)
    left, right, top_pad, bottom = 64, 10, 10, 40
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    low = min(0.0, *(min(values) for _, values, _ in drawn))
    high = max(0.0, *(max(values) for _, values, _ in drawn))
    span = (high - low) or 1.0
    step = plot_w / max(len(dates) - 1, 1)

    def y(value: float) -> float:
        return top_pad + plot_h * (high - value) / span

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" {_size(width, height)} role="img" aria-label="{escape(title)}" font-size="11">']
    for value in sorted({low, 0.0, high}):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" fill="{COLORS["axis"]}">{escape(fmt(value))}</text>')
    for label, values, color in drawn:
        points = " ".join(f"{left + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f"<g><title>{escape(label)}: {escape(fmt(values[-1]))} at {escape(dates[len(values) - 1])}</title>")
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/></g>')
    base = height - bottom + 14
    parts.append(f'<text x="{left}" y="{base}" fill="{COLORS["axis"]}">{escape(dates[0])}</text>')
    parts.append(f'<text x="{width - right}" y="{base}" text-anchor="end" fill="{COLORS["axis"]}">{escape(dates[-1])}</text>')
    x = left
    for label, _, color in drawn:
        parts.append(f'<rect x="{x}" y="{base + 10}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="{base + 19}" fill="{COLORS["text"]}">{escape(_short(label))}</text>')
        x += 24 + 7 * len(_short(label))
    parts.append("</svg>")
    return "".join(parts)
