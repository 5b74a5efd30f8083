"""The supervisor: judge every agent against the policy, print the decisions, and with ``--apply`` act.

    python -m meta_supervisor.supervise                 # same as --dry-run
    python -m meta_supervisor.supervise --dry-run       # print each decision and its figures; write nothing
    python -m meta_supervisor.supervise --apply         # also write the kill switch / agent status,
                                                        # the audit log and alphatrace.supervisor.decide spans
    python -m meta_supervisor.supervise --json          # the decisions as JSON (dry run unless --apply)

``--apply`` retires through ``services.kill_switch.update_kill_file`` (read-change-write under the
lock, atomic replace): it only adds entries, never removes or changes one a person wrote, and skips an
agent a person revived (``state: revived``) until that entry is cleared. An entry it writes has
``by: supervisor``, the time, a reason, and ``rule``, ``figures``, ``thresholds``, ``window`` and
``policy`` as extra keys. Promotion writes ``live`` to the agent status file the same way, unless a
person's entry pins the agent to ``shadow``. Every decision is appended to the audit log (fsynced)
before either file is written, with both files' locks held, so no change is ever applied without its
audit record; then each is emitted as a span (``meta_supervisor/supervisor/audit.py``). Exit status: 0; 2 with the
reason on bad configuration; 1 when a file cannot be written (an audit log that cannot be written, a
folder or a full disk, means nothing was applied).

Options beat environment variables, which beat defaults. Environment: ``ALPHATRACE_TRACE_FILE``
(input, and where the spans go with the embedded exporter), ``ALPHATRACE_POLICY_FILE``,
``ALPHATRACE_KILL_SWITCH_FILE``, ``ALPHATRACE_AGENT_STATUS_FILE``, ``ALPHATRACE_SUPERVISOR_AUDIT_FILE``,
``ALPHATRACE_FLEET_CONFIG``, ``ALPHATRACE_MARKET_DATA`` and the ``OTEL_*`` variables
``otel/provider.py`` reads.

Traces are read with the report's reader (``meta_supervisor.build.run_records``): the trace file and its
rotated backups (``traces-*.jsonl``), or a folder, in any shape the collector writes (JSON lines,
framed protobuf, zstd), spans seen twice counted once. Every value printed on the terminal (agent
names from spans, names and reasons from the state files, paths, error messages) goes through
``services.terminal_text.term``: no control character reaches the terminal raw (``--json`` is escaped JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TextIO

from meta_supervisor.assemble.agents import jaeger_link
from meta_supervisor.assemble.report import DEFAULT_JAEGER_URL, ENV_JAEGER_URL
from meta_supervisor.build.run_records import read_records, trace_specs
from meta_supervisor.cli.report import worth_config
from meta_supervisor.reading.inputs import resolve_inputs
from meta_supervisor.supervisor.actions import ApplyError, apply_audited, audit_records, stamp
from meta_supervisor.supervisor.audit import audit_path
from meta_supervisor.supervisor.decision_spans import emit_decision_spans
from meta_supervisor.supervisor.policy import PROMOTE, RETIRE, Decision, agent_figures, decide, load_policy, policy_path
from otel.provider import Telemetry, choose_export, configure_telemetry, trace_file_path
from services.agent_status import AgentStatusBook, load_agent_status
from services.alerts import ALERT_SUPERVISOR_PROMOTE, ALERT_SUPERVISOR_RETIRE, Alert, AlertSink, alerts_from_env
from services.fleet_config import load_fleet_config
from services.kill_switch import load_kill_entries
from services.market_data import CsvMarketData, MarketData
from services.pricing import cost_per_day_text, format_usd
from services.terminal_text import term
from settings.config_error import ConfigError


def format_decision(d: Decision) -> str:
    f = d.figures

    def num(key: str, fmt: str) -> str:
        value = f.get(key)
        return "n/a" if value is None else format(value, fmt)

    head = f"{d.action.upper():8} {term(d.agent):16} rule {term(d.rule)}: {term(d.reason)}"
    body = (
        f"{'':8} {term(d.status)}{', killed' if d.killed else ''}; window {f.get('window_first')}..{f.get('window_last')}: "
        f"runs {f.get('runs')}, errors {f.get('errors')} ({num('error_rate', '.1%')}), cost {format_usd(f.get('cost_usd'), 'n/a')} "
        f"= {cost_per_day_text(f)} over {f.get('run_days')} days, p95 {num('p95_latency_ms', ',.1f')} ms; "
        f"{f.get('horizon')}d signals scored {f.get('scored_signals')} (pending {f.get('pending_signals')}), "
        f"IC {num('ic', '+.4f')} ({term(f.get('ic_kind') or 'n/a')}, t {num('ic_t_stat', '+.2f')}, "
        f"HAC t {num('ic_t_stat_hac', '+.2f')} with {f.get('ic_hac_lags')} lags, n {f.get('ic_n')}), "
        f"hit rate {num('hit_rate', '.1%')}, Brier {num('brier', '.4f')}; "
        f"worth over {f.get('portfolio_days', 0)} portfolio days: Sharpe gross {num('gross_sharpe', '+.2f')}, "
        f"net {num('net_sharpe', '+.2f')}, "
        f"break-even capital {format_usd(f.get('break_even_capital_usd'), 'n/a')}"
        + (f" ({term(f['worth_reason'])})" if f.get("worth_reason") else "")
    )
    held = ""
    if d.held_by:
        who = {key: term(d.held_by.get(key)) for key in ("by", "state", "at", "reason")}
        held = f"\n{'':8} held by {who['by']} ({who['state']} at {who['at']}: {who['reason']})"
    return f"{head}\n{body}{held}"


# The figures an alert carries (the rest are in the audit log and the decision span).
ALERT_FIGURES = ("runs", "error_rate", "cost_usd", "p95_latency_ms", "scored_signals", "ic", "hit_rate")


def send_decision_alerts(alerts: AlertSink, audit: list[dict], link: str) -> None:
    """One alert per retirement or promotion that was written, linked to the decision spans' trace;
    delivered within a few seconds (the notifier's thread), never failing the command."""
    for record in audit:
        if not record["applied"] or record["action"] not in (RETIRE, PROMOTE):
            continue
        cause = ALERT_SUPERVISOR_RETIRE if record["action"] == RETIRE else ALERT_SUPERVISOR_PROMOTE
        figures = {name: record["figures"][name] for name in ALERT_FIGURES if record["figures"].get(name) is not None}
        summary = f"{record['action']} ({record['rule']}): {record['reason']}"
        alerts.send(Alert(cause, record["agent"], summary, figures, link, record["at"]))
    alerts.close()


def _check_span_destination(traces) -> None:
    """``--apply`` with the embedded exporter appends its spans as JSON lines to the trace file: refuse
    when that would mix them into a folder or into a collector's protobuf or compressed file."""
    from meta_supervisor.reading.shapes import FORMAT_EMPTY, FORMAT_JSON_LINES, sniff

    if choose_export(trace_file=traces).kind != "file":
        return
    if traces.is_dir():
        shape = "a folder"
    else:
        with open(traces, "rb") as handle:
            shape = sniff(handle.read(64))
        if shape in (FORMAT_EMPTY, FORMAT_JSON_LINES):
            return
        shape = f"{shape} data"
    raise ConfigError(
        f"--apply would append its decision spans as JSON lines to {traces}, which is {shape}: send them to the "
        "collector (OTEL_EXPORTER_OTLP_ENDPOINT) or pass the collector's JSON-lines file with --traces"
    )


def _date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m meta_supervisor.supervise", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print each decision and its figures, write nothing (default)")
    mode.add_argument("--apply", action="store_true", help="write kill switch / status, audit log and spans")
    parser.add_argument("--json", action="store_true", help="print the decisions as JSON")
    parser.add_argument(
        "--traces",
        help="trace file (with its rotated backups) or folder, any collector format "
        "(default: $ALPHATRACE_TRACE_FILE or telemetry/traces.jsonl)",
    )
    parser.add_argument("--policy", help="policy file (default: $ALPHATRACE_POLICY_FILE or meta_supervisor/policy.yaml)")
    parser.add_argument("--kill-file", help="kill-switch file (default: $ALPHATRACE_KILL_SWITCH_FILE)")
    parser.add_argument("--status-file", help="agent status file (default: $ALPHATRACE_AGENT_STATUS_FILE)")
    parser.add_argument("--audit-log", help="audit log (default: $ALPHATRACE_SUPERVISOR_AUDIT_FILE)")
    parser.add_argument("--fleet-config", help="fleet config with each agent's initial status (default: $ALPHATRACE_FLEET_CONFIG)")
    parser.add_argument("--until", type=_date_arg, help="last as-of day of the window (default: the latest run's)")
    parser.add_argument("--today", type=_date_arg, help="forward returns ending after this day are pending (default: today, UTC)")
    return parser


def main(
    argv: list[str] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    telemetry: Telemetry | None = None,
    market: MarketData | None = None,
    out: TextIO | None = None,
    alerts: AlertSink | None = None,
) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.apply and alerts is None:
            alerts = alerts_from_env(os.environ)
        policy = load_policy(args.policy)
        traces = trace_file_path(args.traces)
        if not traces.is_file() and not traces.is_dir():
            if traces.exists():  # a FIFO, a device, a socket: refused, never opened
                resolve_inputs([str(traces)])
            raise ConfigError(f"trace file {traces} does not exist (run the agents first, or pass --traces)")
        if args.apply and telemetry is None:
            _check_span_destination(traces)
        read = read_records(trace_specs(traces))
        for message in read.messages:
            print(f"note: {term(message)}", file=sys.stderr)
        records = read.records
        market = market or CsvMarketData()
        configured = {name: spec.status for name, spec in load_fleet_config(args.fleet_config).agents.items()}
        book = AgentStatusBook(configured, args.status_file)
        status_entries = load_agent_status(args.status_file)
        kill_entries = load_kill_entries(args.kill_file)
        today = args.today or now().astimezone(UTC).date()
        figures = agent_figures(records.runs, records.signals, market, policy, args.until, today, worth_config(args.fleet_config))
        decisions = decide(figures, policy, {agent: book.status_of(agent) for agent in figures}, kill_entries, status_entries)
        audit = (
            apply_audited(decisions, policy, now, args.audit_log, args.kill_file, args.status_file)
            if args.apply
            else audit_records(decisions, {}, stamp(now), policy, False)
        )
    except ConfigError as exc:
        print(f"error: {term(exc)}", file=sys.stderr)
        return 2
    except ApplyError as exc:
        print(f"error: {term(exc)}", file=sys.stderr)
        return 1
    results = {record["agent"]: record["result"] for record in audit}
    window = (next(iter(figures.values()))["window_first"], next(iter(figures.values()))["window_last"]) if figures else None
    if args.json:
        print(json.dumps(audit, indent=2, sort_keys=True), file=out)
    else:
        mode = "apply" if args.apply else "dry run"
        span = f"{window[0]}..{window[1]} ({policy.window_days} days)" if window else "empty (no run with an as-of date)"
        backups = f" (+{len(read.files) - 1} rotated)" if len(read.files) > 1 else ""
        print(
            f"supervisor {mode}: {term(policy_path(args.policy))}, window {span}, {len(records.runs)} runs and "
            f"{len(records.signals)} signals in {term(traces)}{backups}",
            file=out,
        )
        for d in decisions:
            print(format_decision(d), file=out)
            if args.apply:
                print(f"{'':8} -> {term(results.get(d.agent, 'no change'))}", file=out)
        changing = sum(1 for d in decisions if d.action in (RETIRE, PROMOTE))
        if not args.apply:
            print(f"{changing} decision(s) would change something; --apply writes them.", file=out)
    if args.apply:
        own = telemetry is None
        handle = telemetry or configure_telemetry(trace_file=traces, instrument_openai=False)
        try:
            trace_id = emit_decision_spans(handle.tracer(), audit, policy.source, window)
        finally:
            if own:
                handle.shutdown()
        if alerts is not None:
            send_decision_alerts(alerts, audit, jaeger_link(os.environ.get(ENV_JAEGER_URL) or DEFAULT_JAEGER_URL, trace_id))
        if not args.json:
            print(f"audit: {term(audit_path(args.audit_log))}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
