"""The record of the supervisor's decisions: an audit log (JSON lines) and ``supervisor.decide`` spans.

Every decision ``--apply`` makes is appended to the audit log as one JSON object per line (all of a
command's lines in one ``write()`` under the state-file lock, fsynced before anything is applied: a
log that cannot be written is ``AuditWriteError`` and the command applies nothing) and emitted as a span: one
``supervisor.run`` span per command, one ``supervisor.decide`` child per agent, linked to the agent's
latest run span so Jaeger shows it beside the runs it judged. ``decisions_section`` and the
renderers give the report the latest decision per agent, a person's hold shown next to what the
policy wanted.

Audit line keys: ``at``, ``agent``, ``action``, ``would``, ``rule``, ``reason``, ``status``, ``killed``,
``figures``, ``checks``, ``held_by``, ``applied``, ``result``, ``policy``, ``dry_run``.

Environment: ``ALPHATRACE_SUPERVISOR_AUDIT_FILE`` (default ``meta_supervisor/state/supervisor_audit.jsonl``).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpha.quality_render import md_escape
from meta_supervisor import locations
from otel import semconv
from services.pricing import cost_per_day_text
from services.state_files import fsync_folder

if TYPE_CHECKING:  # the report reads the log without loading OpenTelemetry
    from opentelemetry.trace import Link, Tracer

PROJECT_ROOT = locations.PROJECT_ROOT
ENV_AUDIT_FILE = "ALPHATRACE_SUPERVISOR_AUDIT_FILE"
DEFAULT_AUDIT_FILE = PROJECT_ROOT / "meta_supervisor" / "state" / "supervisor_audit.jsonl"
_SPAN_FIGURES = (
    "runs",
    "errors",
    "error_rate",
    "cost_usd",
    "cost_per_day_usd",
    "p95_latency_ms",
    "scored_signals",
    "pending_signals",
    "ic",
    "ic_t_stat",
    "ic_t_stat_hac",
    "ic_hac_lags",
    "ic_n",
    "hit_rate",
    "brier",
    "horizon",
)


def audit_path(path: str | os.PathLike | None = None) -> Path:
    """Argument beats ``ALPHATRACE_SUPERVISOR_AUDIT_FILE`` beats the default."""
    return Path(path or os.environ.get(ENV_AUDIT_FILE) or DEFAULT_AUDIT_FILE)


class AuditWriteError(Exception):
    """The audit log could not be written durably: whatever it would have recorded must not be applied."""


def append_audit(records: Sequence[Mapping[str, Any]], path: str | os.PathLike | None = None) -> Path:
    """Append ``records`` as JSON lines in one write under the lock other writers take, and fsync them
    (and the folder, when the log is new) before returning. On any failure (the path is a folder, the
    disk is full) the log is cut back to what it was and ``AuditWriteError`` says why."""
    from services.state_files import locked_for_update

    target = audit_path(path)
    if not records:
        return target
    text = "".join(json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n" for record in records)
    try:
        with locked_for_update(target):
            created = not target.exists()
            fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _append_durably(fd, text.encode("utf-8"))
            finally:
                os.close(fd)
            if created:
                fsync_folder(target.parent)  # a new file's name is durable once its folder is synced
    except OSError as exc:
        raise AuditWriteError(f"cannot write the audit log {target}: {exc}") from None
    return target


def _append_durably(fd: int, data: bytes) -> None:
    start = os.fstat(fd).st_size
    if start and os.pread(fd, 1, start - 1) != b"\n":
        data = b"\n" + data  # a line torn by an earlier crash stays apart from these
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)  # no half record left behind for the next append to glue onto
        raise


def read_audit(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The audit log's records, oldest first; unreadable lines are skipped."""
    try:
        lines = audit_path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("agent"), str):
            out.append(record)
    return out


def _link(last_run: Mapping[str, str] | None) -> list[Link]:
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    if not last_run:
        return []
    try:
        context = SpanContext(
            int(last_run["trace_id"], 16), int(last_run["span_id"], 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
    except (KeyError, TypeError, ValueError):
        return []
    return [Link(context)] if context.is_valid else []


def emit_decision_spans(tracer: Tracer, records: Sequence[Mapping[str, Any]], policy_source: str, window: tuple[str, str] | None) -> None:
    """One ``supervisor.run`` span with a ``supervisor.decide`` child per audit record."""
    run_attributes: dict[str, Any] = {semconv.SUPERVISOR_DECISIONS: len(records), semconv.SUPERVISOR_POLICY_FILE: policy_source}
    if window:
        run_attributes[semconv.SUPERVISOR_WINDOW_FIRST], run_attributes[semconv.SUPERVISOR_WINDOW_LAST] = window
    with tracer.start_as_current_span(semconv.SPAN_SUPERVISOR_RUN, attributes=run_attributes):
        for record in records:
            attributes: dict[str, Any] = {
                semconv.SUPERVISOR_AGENT: record["agent"],
                semconv.SUPERVISOR_ACTION: record["action"],
                semconv.SUPERVISOR_WOULD: record["would"],
                semconv.SUPERVISOR_RULE: record["rule"],
                semconv.SUPERVISOR_REASON: record["reason"][:1000],
                semconv.SUPERVISOR_RESULT: record["result"],
                semconv.SUPERVISOR_APPLIED: bool(record["applied"]),
                semconv.SUPERVISOR_STATUS: record["status"],
            }
            if record.get("held_by"):
                attributes[semconv.SUPERVISOR_HELD_BY] = str(record["held_by"].get("by", ""))
            figures = record.get("figures", {})
            for name in _SPAN_FIGURES:
                value = figures.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    attributes[semconv.SUPERVISOR_FIGURE_PREFIX + name] = value
            if isinstance(figures.get("ic_kind"), str):
                attributes[semconv.SUPERVISOR_FIGURE_PREFIX + "ic_kind"] = figures["ic_kind"]
            with tracer.start_as_current_span(semconv.SPAN_SUPERVISOR_DECIDE, attributes=attributes, links=_link(figures.get("last_run"))):
                pass


# --- for the report --------------------------------------------------------------------------


def decisions_section(records: Iterable[Mapping[str, Any]], kill_entries: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The latest audited decision per agent, and the kill-switch entries now (a person's revive
    beside the policy's held retirement). ``kill_entries``: ``{agent: KillEntry.to_json()}``."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        latest[record["agent"]] = record
    keys = ("at", "action", "would", "rule", "reason", "result", "applied", "status", "held_by", "figures")
    return {
        "agents": {agent: {key: latest[agent].get(key) for key in keys} for agent in sorted(latest)},
        "kill_switch": {agent: dict(entry) for agent, entry in sorted((kill_entries or {}).items())},
    }


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
