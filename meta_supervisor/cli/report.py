"""Command line of the meta-supervisor report (``python meta_supervisor/build_meta_report.py``).

With no arguments: read ``telemetry/traces.jsonl`` and its rotated backups (``traces-*.jsonl``),
reuse the incremental state in ``meta_supervisor/cache/`` so only new bytes are read, and write
``meta_supervisor/reports/meta_report.json`` + ``.md`` + ``.html``. A malformed kill-switch file
does not stop the report: the error is in the report (``kill_switch.error``) and on stderr. When
nothing the report depends on changed since its files were written, they are kept as they are
("report unchanged since ...: nothing new, kept as is"; ``cli.report_record`` says what is compared;
never with ``--full``, ``--no-state`` or evaluation spans).

Environment (flags win over environment, environment over defaults):

* ``ALPHATRACE_TRACE_FILE``: the trace file (default ``telemetry/traces.jsonl``), like the exporter;
* ``ALPHATRACE_JAEGER_URL``: Jaeger UI base URL for trace links (default ``http://127.0.0.1:16686``);
* ``ALPHATRACE_REPORT_DIR``: where the report files go (default ``meta_supervisor/reports``);
* ``ALPHATRACE_REPORT_STATE_DIR``: incremental state (default ``meta_supervisor/cache``; the caches an older
  version kept in ``meta_supervisor/state/`` are removed by a build using the default, and rebuilt here);
* ``ALPHATRACE_STATE_LOCK_TIMEOUT``: seconds to wait for another build using the same state
  (default 600; ``meta_supervisor.build.state_store``);
* ``ALPHATRACE_NATIVE``: ``auto`` / ``on`` / ``off``, the compiled reader (``native_reader``);
* ``ALPHATRACE_MAX_LINE_BYTES``: the line cap (default 64 MiB): a longer line is one bad line
  (``file_reader``);
* read by the modules used here: ``ALPHATRACE_KILL_SWITCH_FILE`` (services.kill_switch),
  ``ALPHATRACE_PRICE_TABLE`` and ``ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS`` (services.pricing: a table
  older than that many days, default 90, gets a warning line in the report), ``ALPHATRACE_MARKET_DATA`` (services.market_data:
  the prices alpha signals are scored against, default ``agents/data``) and
  ``ALPHATRACE_SUPERVISOR_AUDIT_FILE`` (meta_supervisor.supervisor.audit: the supervisor's decisions) and
  ``ALPHATRACE_FLEET_CONFIG`` (services.fleet_config: each agent's ``capital_usd`` and the ensemble's
  members, for the ``worth`` section);
* ``ALPHATRACE_EVALUATION_SPANS``: ``on`` / ``off`` (default): after the report is written, add each
  matured forecast's outcome to its run's trace (``meta_supervisor.supervisor.evaluation_spans``:
  once per signal and horizon, recorded in the state folder; the spans go where the agents' go,
  ``ALPHATRACE_TRACE_FILE`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``).

The incremental state is best effort: when it cannot be used, trusted or saved the report is still
written, with a warning on stderr and in the report (``inputs.state_warnings``).

Exit status: 0 report written (or kept); 2 bad arguments or configuration (price table, market data folder,
lock timeout, an ``--input`` that does not exist or names a FIFO, device or socket: only regular
files are read), with the reason, and the report left as it was; 3 another build held the state
longer than the lock timeout (no report written; the message names its process). The default trace
file not written yet is not an error: the report says there are no spans yet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from meta_supervisor.assemble.report import DEFAULT_JAEGER_URL, ENV_JAEGER_URL, AuditState, KillSwitchState, build_report, report_day
from meta_supervisor.build.run_records import trace_specs
from meta_supervisor.locations import DEFAULT_CACHE_DIR, DEFAULT_REPORT_DIR, DEFAULT_TRACE_FILE, OLD_CACHE_DIR

ENV_TRACE_FILE = "ALPHATRACE_TRACE_FILE"
ENV_REPORT_DIR = "ALPHATRACE_REPORT_DIR"
ENV_STATE_DIR = "ALPHATRACE_REPORT_STATE_DIR"
DEFAULT_STATE_DIR = DEFAULT_CACHE_DIR


def parse_moment(text: str) -> dt.datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it says otherwise)."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r} (e.g. 2026-11-20 or 2026-11-20T10:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def parse_day(text: str) -> dt.date:
    """An ISO date: an as-of (market) day."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r} (e.g. 2017-03-01)") from None


def default_inputs() -> list[str]:
    """The trace file the exporter writes, plus its rotated backups next to it."""
    return trace_specs(Path(os.environ.get(ENV_TRACE_FILE) or DEFAULT_TRACE_FILE))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build_meta_report.py",
        description="Build the meta-supervisor report from collector trace files.",
        epilog="Environment" + __doc__.split("Environment", 1)[1].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--input",
        action="append",
        metavar="PATH",
        help=f"trace file, folder or glob; repeatable (default: ${ENV_TRACE_FILE} or telemetry/traces.jsonl, with its rotated backups)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"where meta_report.json/.md/.html go (default: ${ENV_REPORT_DIR} or meta_supervisor/reports)",
    )
    parser.add_argument(
        "--since", type=parse_moment, help="only spans starting (written) at or after this ISO date/time (UTC); market days: --as-of-since"
    )
    parser.add_argument("--until", type=parse_moment, help="only spans starting (written) before this ISO date/time (UTC)")
    parser.add_argument(
        "--as-of-since",
        type=parse_day,
        metavar="DATE",
        help="first as-of (market) day of the runs per day and the alpha signals scored (--since/--until: when spans were written)",
    )
    parser.add_argument("--as-of-until", type=parse_day, metavar="DATE", help="last as-of (market) day, included (see --as-of-since)")
    parser.add_argument("--jaeger-url", help=f"Jaeger UI base URL for trace links (default: ${ENV_JAEGER_URL} or {DEFAULT_JAEGER_URL})")
    parser.add_argument("--state-dir", type=Path, help=f"incremental state folder (default: ${ENV_STATE_DIR} or meta_supervisor/cache)")
    parser.add_argument("--full", action="store_true", help="ignore the saved state: read everything again (and save new state)")
    parser.add_argument("--no-state", action="store_true", help="neither read nor write incremental state")
    parser.add_argument("--kill-file", help="kill-switch file (default: services.kill_switch's)")
    parser.add_argument(
        "--fleet-config",
        help="fleet config TOML: each agent's capital_usd and the ensemble's members for the worth section "
        "(default: $ALPHATRACE_FLEET_CONFIG or agents/agents.toml)",
    )
    parser.add_argument("--price-table", help="price table JSON (default: $ALPHATRACE_PRICE_TABLE or services/llm_prices.json)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes for large files, the state's save and a large HTML (default: one per CPU; 1 = no extra process)",
    )
    parser.add_argument(
        "--resident-spans",
        type=int,
        metavar="N",
        help="span entries a process keeps in memory for deduplication before spilling them to the cache folder "
        "(closed runs: half as many; default: $ALPHATRACE_RESIDENT_SPANS or 500000; the report is the same)",
    )
    parser.add_argument(
        "--market-data",
        metavar="DIR",
        help="folder of <SYMBOL>.csv prices to score alpha signals against (default: $ALPHATRACE_MARKET_DATA or agents/data)",
    )
    parser.add_argument(
        "--no-alpha-quality",
        action="store_true",
        help="leave out the alpha-quality section (signals are then not kept while reading: a little faster)",
    )
    parser.add_argument(
        "--audit-log",
        help="the supervisor's audit log (default: $ALPHATRACE_SUPERVISOR_AUDIT_FILE or meta_supervisor/state/supervisor_audit.jsonl)",
    )
    parser.add_argument(
        "--evaluation-spans",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add each matured forecast's outcome to its run's trace, once (default: $ALPHATRACE_EVALUATION_SPANS or off)",
    )
    parser.add_argument("--format", default="json,md,html", help="comma-separated subset of json,md,html (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no summary line, no progress bar")
    return parser


def load_kill_state(path: str | None) -> KillSwitchState:
    from services.kill_switch import KillSwitchError, kill_switch_path, load_kill_entries

    target = kill_switch_path(path)
    try:
        return KillSwitchState(path=str(target), entries=load_kill_entries(target))
    except KillSwitchError as exc:
        return KillSwitchState(path=str(target), error=str(exc))


def load_audit(path: str | None) -> AuditState:
    from meta_supervisor.supervisor.audit import audit_path, read_audit

    target = audit_path(path)
    try:
        return AuditState(path=str(target), records=read_audit(target))
    except (OSError, UnicodeDecodeError) as exc:
        return AuditState(path=str(target), error=f"cannot read the supervisor's audit log {target}: {exc}")


def worth_config(path: str | None):
    """The worth section's configuration from the fleet config (``--fleet-config`` beats
    ``ALPHATRACE_FLEET_CONFIG`` beats ``agents/agents.toml``): capital per agent, and the members and
    weights of every ensemble (``agents.ensemble_weights``, the ensemble's own rule). The agents'
    modules are not imported: ``agents.base`` loads the whole ``openai`` client into the report's process."""
    from agents.ensemble_weights import ENSEMBLE_MODULE, member_weights
    from meta_supervisor.assemble.worth import WorthConfig
    from services.fleet_config import DEFAULT_CAPITAL_USD, load_fleet_config

    fleet = load_fleet_config(path)
    members = {name: member_weights(spec.params) for name, spec in fleet.agents.items() if spec.module == ENSEMBLE_MODULE}
    capital = {name: spec.capital_usd for name, spec in fleet.agents.items()}
    return WorthConfig(capital, DEFAULT_CAPITAL_USD, members, fleet.universe, fleet.source)


def publish_evaluations(data, market, moment: dt.datetime, state_dir: Path, lock_wait, telemetry, quiet: bool) -> None:
    """The outcome spans of every matured forecast not emitted before (``evaluation_spans``); a
    problem is a warning: the report is written already."""
    from meta_supervisor.assemble.alpha import kept_signals
    from meta_supervisor.supervisor.evaluation_spans import publish_outcomes
    from services.state_files import LockTimeout
    from settings.config_error import ConfigError

    made = []

    def handle():
        if telemetry is not None:
            return telemetry
        from otel.provider import configure_telemetry

        made.append(configure_telemetry(instrument_openai=False))
        return made[0]

    try:
        published = publish_outcomes(kept_signals(data.agents)[0], market, report_day(moment), state_dir, handle, lock_wait)
    except (ConfigError, LockTimeout) as exc:
        print(f"warning: no evaluation spans emitted: {exc}", file=sys.stderr)
        return
    finally:
        for own in made:
            own.shutdown()
    if not published.recorded:
        print(f"warning: {published.spans} evaluation spans did not export; the next build emits them again", file=sys.stderr)
    elif published.spans and not quiet:
        print(f"emitted {published.spans} evaluation spans ({published.results} forecast outcomes) into their runs' traces")


def main(argv: list[str] | None = None, now: Callable[[], dt.datetime] | None = None, telemetry=None) -> int:
    """``telemetry``: the handle evaluation spans go through (tests); made from the environment otherwise."""
    args = make_parser().parse_args(argv)
    formats = tuple(part.strip() for part in args.format.split(",") if part.strip())
    unknown = set(formats) - {"json", "md", "html"}
    if unknown:
        print(f"error: --format: unknown format(s) {', '.join(sorted(unknown))}; use json, md, html", file=sys.stderr)
        return 2
    if args.since and args.until and args.since >= args.until:
        print("error: --since must be before --until", file=sys.stderr)
        return 2
    if args.as_of_since and args.as_of_until and args.as_of_since > args.as_of_until:
        print("error: --as-of-since must not be after --as-of-until", file=sys.stderr)
        return 2
    from services.pricing import PriceTable, max_age_days
    from settings.config_error import ConfigError

    try:
        from meta_supervisor import native_core
        from meta_supervisor.reading.formats import max_line_bytes
        from meta_supervisor.reading.inputs import require_inputs

        native_core.core()  # ALPHATRACE_NATIVE checked now, not in the middle of the build
        max_line_bytes()  # and ALPHATRACE_MAX_LINE_BYTES
        from meta_supervisor.tally.open_runs import max_open_runs

        open_runs = max_open_runs()  # and ALPHATRACE_MAX_OPEN_RUNS
        from meta_supervisor.build.spill_plan import resident_spans

        resident = resident_spans(args.resident_spans)  # and ALPHATRACE_RESIDENT_SPANS
        require_inputs(args.input or [])  # before anything is written: a typo must not empty the report

        from meta_supervisor.build.state_store import lock_timeout

        wait_for_lock = lock_timeout()
        prices = PriceTable.load(args.price_table)
        price_age = max_age_days()  # ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS
        market = worth = None
        from meta_supervisor.supervisor.evaluation_spans import evaluation_spans_enabled

        evaluations = evaluation_spans_enabled(args.evaluation_spans)
        if evaluations and (args.no_state or args.no_alpha_quality):
            raise ConfigError(
                "evaluation spans need the state folder (their record of what was emitted) and the signals: "
                "drop --no-state / --no-alpha-quality, or --no-evaluation-spans"
            )
        if not args.no_alpha_quality:
            from services.market_data import CsvMarketData

            market = CsvMarketData(args.market_data)
            worth = worth_config(args.fleet_config)
    except ConfigError as exc:
        hint = "; or leave alpha quality out with --no-alpha-quality" if "market data" in str(exc) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    from meta_supervisor.build.options import BuildOptions
    from meta_supervisor.cli.progress import ProgressBar
    from meta_supervisor.render.outputs import write_report

    started = time.monotonic()
    bar = ProgressBar() if not args.quiet else None
    inputs = default_inputs() if args.input is None else args.input
    state_dir = None if args.no_state else (args.state_dir or Path(os.environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR))
    if state_dir == DEFAULT_STATE_DIR and args.state_dir is None and not os.environ.get(ENV_STATE_DIR):
        from meta_supervisor.build.state_store import remove_old_location

        remove_old_location(OLD_CACHE_DIR)  # the caches' folder before cache/: tidied, never read (a full build)
    options = BuildOptions(
        inputs=inputs,
        prices=prices,
        since=args.since,
        until=args.until,
        state_dir=state_dir,
        workers=args.workers,
        progress=bar.update if bar else None,
        force_full=args.full,
        alpha_signals=market is not None,
        lock_timeout=wait_for_lock,
        max_open_runs=open_runs,
        resident_spans=resident,
        notify=lambda message: print(f"note: {message}", file=sys.stderr),
        save_aside=True,  # the state saved by a forked process while the report is assembled (build.save_aside)
    )
    from meta_supervisor.cli import report_record
    from services.state_files import LockTimeout

    out_dir = args.out or Path(os.environ.get(ENV_REPORT_DIR) or DEFAULT_REPORT_DIR)
    record = seen = None
    if state_dir is not None:  # the report record lives beside the state (report_record)
        record = report_record.Record(state_dir, options, out_dir, formats)
        seen = report_record.inputs_seen(options.inputs, market)  # before anything is read: what the report will be of
        if not args.full and not evaluations and record.path.exists():
            try:
                kept = _kept_report(record, seen, args, prices, price_age, worth, now)
            except LockTimeout as exc:
                return _state_busy(exc)
            if kept is not None:
                for stream, line in kept.lines:
                    print(line, file=sys.stderr if stream == "stderr" else sys.stdout)
                if not args.quiet:
                    print(
                        f"report unchanged since {kept.generated_at}: nothing new, kept as is ({', '.join(kept.outputs)}: "
                        f"{kept.summary}; checked in {time.monotonic() - started:.3f} s)"
                    )
                return 0
    from meta_supervisor.build.dispatch import build_inputs
    from meta_supervisor.build.heap_trim import map_large_blocks
    from meta_supervisor.build.incremental import abandon_saving
    from meta_supervisor.build.save_aside import may_fork_aside

    map_large_blocks()  # the build's transient large buffers returned when freed (peak RSS; glibc only)
    try:
        data, stats = build_inputs(options)
    except LockTimeout as exc:
        return _state_busy(exc)
    except ConfigError as exc:  # an --input that is not a regular file (reading.inputs), a bad line cap
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar:
            bar.finish()
    for warning in stats.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    lines: list[list[str]] = []  # what is said about the report, said again when it is kept

    def warn(text: str) -> None:
        print(text, file=sys.stderr)
        lines.append(["stderr", text])

    try:  # the state may still be being saved by another process (save_aside): until finish_saving
        report, kill, audit, jaeger_url, moment = _assemble(args, data, stats, prices, price_age, market, worth, evaluations, now, warn)
    except BaseException:
        abandon_saving(stats)
        raise
    if not evaluations:  # the tallies are in the report now (1,000 agents: ~15 MB): freed before the files are made
        data.agents = {}
    if report["prices"]["warning"]:
        warn(f"warning: {report['prices']['warning']}")
    files_written: dict = {}
    written = write_report(report, out_dir, formats, files_written, html_aside=may_fork_aside(args.workers))  # a large HTML beside
    for message in data.messages:
        warn(f"note: {message}")
    losses = report["inputs"]["telemetry_losses"]
    if losses["spans_dropped"] or losses["spans_export_failed"]:
        warn(
            f"warning: the agents' telemetry lost spans before export ({losses['spans_dropped']} dropped by a full queue, "
            f"{losses['spans_export_failed']} failed to export, in {losses['processes_with_losses']} of {losses['processes']} "
            "processes); the report undercounts (inputs.telemetry_losses)"
        )
    if record is not None:  # after a build whose state was saved or found unchanged, and trusted
        trusted = bool(stats.state) and not stats.warnings
        depends = record.dependencies(seen, **_report_inputs(args, prices, price_age, worth, kill, audit, jaeger_url)) if trusted else None
        record.save(depends, report_day(moment), report, files_written, stats.state, lines)
    if evaluations:
        publish_evaluations(data, market, moment, state_dir, wait_for_lock, telemetry, args.quiet)
    if not args.quiet:
        print(
            f"wrote {', '.join(str(p) for p in written)}: {report_record.summary_line(report)} "
            f"({stats.mode} build, {stats.bytes_read / 1e6:.1f} MB read in {time.monotonic() - started:.2f} s"
            f"{'; ' + stats.rebuild_reason if stats.rebuild_reason else ''})"
        )
    return 0


def _assemble(args, data, stats, prices, price_age, market, worth, evaluations: bool, now, warn):
    """The report of ``data``, with the state's save (when aside) finished: a save that failed is a
    warning in the report's ``inputs.state_warnings`` as when the state is saved before it."""
    from meta_supervisor.build import alpha_cache
    from meta_supervisor.build.incremental import finish_saving, saved_state

    data.as_of_since, data.as_of_until = args.as_of_since, args.as_of_until
    kill = load_kill_state(args.kill_file)
    if kill.error:
        warn(f"warning: {kill.error}; the report shows the kill-switch state as unknown")
    jaeger_url = _jaeger_url(args)
    audit = load_audit(args.audit_log)
    if audit.error:
        warn(f"warning: {audit.error}; the report shows no supervisor decisions")
    moment = _now(now)
    as_of = (args.as_of_since, args.as_of_until)
    kill_names = sorted(kill.entries) if kill.error is None else None

    state_dir, state = saved_state(stats)  # also while a forked process saves it: named already
    key = alpha_cache.cache_key(state, market, report_day(moment), as_of) if market is not None else None
    worth_key = alpha_cache.worth_key(key, worth, kill_names)
    cached, cached_worth = alpha_cache.load_sections(state_dir, state, key, worth_key)
    report = build_report(
        data,
        prices,
        kill,
        moment,
        jaeger_url,
        market=market,
        audit=audit,
        alpha_quality=cached,
        worth=worth,
        price_max_age_days=price_age,
        spend_tallies=not evaluations,  # after the report the tallies are needed only to publish evaluations
        worth_figures=cached_worth,
    )
    if cached is None or (cached_worth is None and report["worth"] is not None):  # beside the state's save, if aside
        alpha_cache.save(state_dir, state, key, report["alpha_quality"], worth_key, report["worth"])
    not_saved = finish_saving(stats)  # a state not saved after all takes the sections' file with it
    if not_saved:
        warn(f"warning: {not_saved}")
        report["inputs"]["state_warnings"].append(not_saved)
    return report, kill, audit, jaeger_url, moment


def _state_busy(exc) -> int:
    from meta_supervisor.build.state_store import ENV_LOCK_TIMEOUT

    print(
        f"error: the incremental state is in use by {exc.holder} (lock {exc.lock_path}, waited {exc.waited:g} s, "
        f"${ENV_LOCK_TIMEOUT}); try again later, or build without it (--no-state)",
        file=sys.stderr,
    )
    return 3


def _jaeger_url(args) -> str:
    return args.jaeger_url or os.environ.get(ENV_JAEGER_URL) or DEFAULT_JAEGER_URL


def _now(now: Callable[[], dt.datetime] | None) -> dt.datetime:
    return (now or (lambda: dt.datetime.now(dt.UTC)))()


def _report_inputs(args, prices, price_age, worth, kill, audit, jaeger_url) -> dict:
    """What the report is made with, for its record (``report_record.dependencies``)."""
    as_of = (args.as_of_since, args.as_of_until)
    return dict(as_of=as_of, kill=kill, audit=audit, jaeger_url=jaeger_url, worth=worth, prices=prices, price_age=price_age)


def _kept_report(record, seen, args, prices, price_age, worth, now):
    """The record's ``Kept`` when the report files are what this build would write, else None."""
    kill = load_kill_state(args.kill_file)
    audit = load_audit(args.audit_log)
    jaeger_url = _jaeger_url(args)
    depends = record.dependencies(seen, **_report_inputs(args, prices, price_age, worth, kill, audit, jaeger_url))
    return record.kept(depends, report_day(_now(now)))
