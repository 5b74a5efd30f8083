"""Runs the agent fleet on APScheduler, every run traced. Read this file top to bottom to follow a run.

    python scheduler.py                 # live: each agent on its interval until Ctrl-C / SIGTERM
    python scheduler.py --once          # live: every agent once, then exit
    python scheduler.py --cycles 3      # live: stop once every agent has run 3 times
    python scheduler.py --replay        # demo: replay history, one trading day per cycle

One run: APScheduler's thread pool calls ``_job`` -> ``AgentRunWrapper.run`` opens the root span
(``services/agent_run_wrapper.py``) -> ``_run_agent`` asks the kill switch (``services/kill_switch.py``)
-> in live mode, the data's age (``services/data_freshness.py``: a stale run is refused or stands on the
last bar) -> the agent computes signals (``agents/``), the LLM analyst calling the model through
``services/ai_analysis.py`` (a child span from the official instrumentation), the research analyst
looping over model calls and tool steps (``services/tool_loop.py``: ``execute_tool`` child spans; the
kill switch checked again before each call and step), the ensemble combining
the others' signals from the signal book (``services/signal_book.py``; members run first in a cycle,
``services/run_order.py``) -> ``emit_alpha_signal`` (``alpha/emit.py``) records them as events and the
book keeps them -> the wrapper records outcome and totals -> the batch
processor hands the spans to the exporter (``otel/provider.py``): the embedded file exporter or OTLP to
a collector -> ``meta_supervisor/build_meta_report.py`` reads the file.

Errors by layer: the LLM span is marked ERROR by the instrumentation and the error re-raised; the run
wrapper records the outcome and re-raises; ``_job`` logs it and the schedule goes on.

Start-up checks everything before any agent runs (arguments, ``ALPHATRACE_LOG_LEVEL``, the fleet
config and every agent's parameters, the market data of every symbol of the universe, the kill-switch
file, the LLM settings, where spans go): a mistake exits 2 with one line naming the setting, the value
and the fix. A live scheduler then takes the lease of its shard (``services/shard_lease.py``): one
already held by another scheduler exits 2 the same way; a run starts only while the lease is held.

Budgets (``services/budgets.py``): each run gets a budget check beside the kill switch's, run before
every LLM call, and its calls' spend recorded in the spend ledger (``services/spend_ledger.py``).

Environment: everything ``otel/provider.py``, ``services/ai_analysis.py``, ``services/fleet_config.py``,
``services/kill_switch.py``, ``services/budgets.py``, ``services/shard_lease.py`` and ``services/market_data.py``
document; ``ALPHATRACE_LOG_LEVEL`` (``DEBUG``/``INFO``/``WARNING``/``ERROR``/``CRITICAL``, default ``INFO``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agents.base import AgentContext
from alpha.emit import emit_alpha_signal
from otel import semconv
from otel.provider import Telemetry, configure_telemetry
from otel.redaction import install_log_redaction
from otel.run_context import RunStopped, RunTelemetry, get_current_run
from otel.span_accounting import AccountingSnapshot
from services.agent_run_wrapper import AgentRunWrapper
from services.agent_status import AgentStatusBook
from services.ai_analysis import AIAnalysis, LLMSettings, build_openai_client, resolve_llm_settings
from services.alerts import ALERT_KILL_SWITCH_BAD_EDIT, ALERT_TELEMETRY_LOSS, Alert, AlertSink, NoAlerts, alerts_from_env
from services.alerts import stamp as alert_stamp
from services.budgets import FleetBudgets, build_budgets
from services.clock import Clock, ReplayClock, WallClock
from services.config_error import ConfigError
from services.data_freshness import check_freshness
from services.fleet_config import FleetConfig, for_shard, load_agents, load_fleet_config, resolve_shard
from services.kill_switch import MAX_KILL_FILE_BYTES, KillSwitch, kill_switch_path
from services.kill_switch_store import kill_state_source
from services.market_data import CsvMarketData, MarketData
from services.pricing import PriceTable
from services.run_order import check_members, run_stages
from services.shard_lease import ShardLease, lease_name
from services.signal_book import RecentSignals, SignalBook
from services.spend_ledger import SpendLedger
from services.startup import check_arguments, describe_cycles, duration_text, log_level, replay_days, shard_resource, take_lease
from services.stop_signals import StopSignals
from services.terminal_text import term
from services.tool_loop import ToolLoop

logger = logging.getLogger("alphatrace.scheduler")


class AgentScheduler:
    """The fleet on an APScheduler thread pool; every seam is handed in."""

    def __init__(
        self,
        fleet: FleetConfig,
        agents: dict[str, Any],
        runner: AgentRunWrapper,
        kill_switch: KillSwitch,
        clock: Clock,
        market: MarketData,
        llm: AIAnalysis | None = None,
        scheduler: BackgroundScheduler | None = None,
        statuses: AgentStatusBook | None = None,
        signals: SignalBook | None = None,
        alerts: AlertSink | None = None,
        supervise: Callable[[], None] | None = None,
        tools: ToolLoop | None = None,
        budgets: FleetBudgets | None = None,
        lease: ShardLease | None = None,
    ) -> None:
        self.fleet = fleet
        self._lease = lease
        self.budgets = budgets
        self._alerts = alerts or NoAlerts()
        self._supervise = supervise
        self.agents = agents
        self._runner = runner
        self._kill_switch = kill_switch
        self._clock = clock
        self._market = market
        self._llm = llm
        self._tools = tools
        self._signals = signals if signals is not None else RecentSignals()
        self._statuses = statuses or AgentStatusBook({name: spec.status for name, spec in fleet.agents.items()})
        self._scheduler = scheduler or BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(fleet.max_workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": fleet.misfire_grace_seconds},
            timezone=UTC,
        )
        self._runs_done: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop_after: int | None = None
        self.all_done = threading.Event()

    # --- scheduling -----------------------------------------------------------------------

    def start_agent(self, agent_name: str) -> Job:
        """The seed's ``start_agent``: one interval job per agent, first run now."""
        spec = self.fleet.agents[agent_name]
        return self._scheduler.add_job(
            func=self._job,
            args=[agent_name],
            trigger=IntervalTrigger(seconds=spec.interval_seconds, timezone=UTC),
            id=agent_name,
            name=agent_name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=self.fleet.misfire_grace_seconds,
            next_run_time=datetime.now(UTC),  # APScheduler runs on wall time; the clock only sets as-of
            replace_existing=True,
        )

    def start(self, stop_after: int | None = None) -> None:
        """Live mode: schedule every enabled agent; with ``stop_after``, end after that many runs each."""
        self._stop_after = stop_after
        self._scheduler.start()
        for name in self.agents:
            self.start_agent(name)
        if self._supervise is not None and self.fleet.supervisor is not None:
            every = self.fleet.supervisor.every_seconds
            # first pass one interval from now: at start there is nothing new to judge
            self._scheduler.add_job(
                func=self._supervisor_job,
                trigger=IntervalTrigger(seconds=every, timezone=UTC),
                id="supervisor",
                name="supervisor",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(every)),
                replace_existing=True,
            )
            logger.info("supervisor: every %s (%s)", duration_text(every), self.fleet.supervisor.mode)

    def _supervisor_job(self) -> None:
        """The scheduled supervisor: a failure is logged and the next pass comes on schedule."""
        try:
            self._supervise()
        except Exception:
            logger.exception("scheduled supervisor failed; the agents keep running, next pass on schedule")

    def run_cycle(self, as_of: date | None = None, timeout_seconds: float = 600.0) -> None:
        """Every agent once as of ``as_of``, concurrently on the pool but members before the agents
        combining their signals (``services/run_order.py``); returns when all are done."""
        if not self._scheduler.running:
            self._scheduler.start()
        params = {name: spec.params for name, spec in self.fleet.agents.items()}
        job_ids = {name: f"{name}@{as_of or 'now'}" for name in self.agents}
        for stage in run_stages(self.agents, params):
            pending = {name: threading.Event() for name in stage}
            for name, done in pending.items():
                self._scheduler.add_job(
                    func=self._cycle_job,
                    args=[name, as_of, done],
                    trigger=DateTrigger(run_date=datetime.now(UTC), timezone=UTC),
                    id=job_ids[name],
                    name=name,
                    misfire_grace_time=None,
                )
            for name, done in pending.items():
                if not done.wait(timeout_seconds):
                    logger.error("agent %s did not finish within %.0fs in this cycle; moving on", name, timeout_seconds)
        # A run can finish before APScheduler's own thread has removed its one-shot job; wait for that
        # bookkeeping too, so the next cycle or a shutdown never races it.
        deadline = time.monotonic() + 5
        for job_id in job_ids.values():
            while self._scheduler.get_job(job_id) is not None and time.monotonic() < deadline:
                time.sleep(0.002)

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait``, in-flight runs finish (and end their spans) first."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    # --- one run ----------------------------------------------------------------------------

    def _cycle_job(self, agent_name: str, as_of: date | None, done: threading.Event) -> None:
        try:
            self._job(agent_name, as_of)
        finally:
            done.set()

    def _job(self, agent_name: str, as_of: date | None = None) -> None:
        """What APScheduler calls: one traced run; a failing agent is logged and stops nothing."""
        if self._bound_reached(agent_name):
            return
        if self._lease is not None and not self._lease.allows(lease_name(self.fleet.agents[agent_name].shard)):
            logger.debug("agent %s: not run, this scheduler does not hold its shard's lease", agent_name)
            return  # not counted toward --cycles: the runs resume if the lease comes back
        day = as_of or self._clock.as_of()
        try:
            self._runner.run(agent_name, self._run_agent, agent_name, day, as_of is None, as_of=day.isoformat())
        except RunStopped as stop:
            logger.warning("agent %s stopped before a %s (%s); its schedule goes on", agent_name, stop.step, stop.outcome)
        except Exception:
            logger.exception("agent %s failed; its schedule goes on", agent_name)
        finally:
            self._count_run(agent_name)

    def _run_agent(self, agent_name: str, as_of: date | None = None, live: bool = False) -> Any:
        """The seed's ``_run_agent``, inside the root span: kill switch, status, (live) data age, agent,
        alpha signals, the signal book."""
        run = get_current_run()
        decision = self._kill_switch.check(agent_name)
        if decision.file_error:
            if run is not None and run.span is not None:
                run.span.add_event(semconv.EVENT_KILL_SWITCH_ERROR, {semconv.KILL_SWITCH_ERROR_MESSAGE: decision.file_error})
            # fleet-wide: one alert per period, whichever agent's run saw it first
            summary = f"the kill-switch file could not be read ({decision.file_error}); the last good state holds until it is fixed"
            self._alerts.send(Alert(ALERT_KILL_SWITCH_BAD_EDIT, "*", summary, {"first_seen_by": agent_name}, at=alert_stamp()))
        if decision.store_error and run is not None and run.span is not None:
            run.span.set_attribute(semconv.KILL_SWITCH_STATE_STALE, True)
            run.span.set_attribute(semconv.KILL_SWITCH_STORE_ERROR, decision.store_error)
        if decision.killed:
            reason = decision.entry.reason if decision.entry else ""
            logger.warning("Agent %s is disabled by kill-switch (%s)", agent_name, term(reason) if reason else "no reason given")
            if run is not None:
                run.mark_killed(reason)
            return None
        run_budget = self.budgets.open_run(run) if self.budgets is not None and run is not None else None
        if run is not None:
            run.checkpoints.append(self._kill_checkpoint)
            if run_budget is not None:  # after the kill switch: a killed run reserves nothing
                run.checkpoints.append(run_budget.check)
                run.usage_listeners.append(run_budget.record)
        status = self._statuses.status_of(agent_name)
        if run is not None:
            run.status = status  # a shadow agent's signals are recorded as not tradable
            if run.span is not None:
                run.span.set_attribute(semconv.AGENT_STATUS, status)
        day = as_of or self._clock.as_of()
        if live:
            freshness = check_freshness(self._market, self.fleet.universe, day, self.fleet.freshness)
            if freshness.stale:
                logger.warning("Agent %s: stale market data (%s); on_stale=%s", agent_name, freshness.reason(), freshness.policy.on_stale)
                if run is not None:
                    run.mark_stale_data(freshness.attributes(), refused=freshness.refused)
                if freshness.refused:
                    return None
                day = freshness.as_of  # the last bar's date: what the signals and the model are told
                if run is not None:
                    run.as_of = day.isoformat()
                    if run.span is not None:
                        run.span.set_attribute(semconv.AGENT_RUN_AS_OF, run.as_of)
        agent = self.agents[agent_name]
        context = AgentContext(
            as_of=day,
            market=self._market,
            universe=self.fleet.universe,
            params=self.fleet.agents[agent_name].params,
            llm=self._llm,
            signals=self._signals,
            tools=self._tools,
        )
        try:
            findings = agent.run(context)
        finally:
            if run_budget is not None:
                run_budget.close()
        if findings:
            emit_alpha_signal(findings, agent_name)
            self._signals.record(agent_name, findings, default_as_of=day)
        return findings

    def _kill_checkpoint(self, run: RunTelemetry, step: str) -> None:
        """Before each LLM call and tool step of a run: the kill switch again (a stat of the file, or
        the store's version; parsed only when it changed), so a kill stops a run mid-way."""
        decision = self._kill_switch.check(run.agent)
        if decision.killed:
            reason = (decision.entry.reason if decision.entry else "") or "killed"
            logger.warning("Agent %s killed mid-run before its %s (%s)", run.agent, step, term(reason))
            raise RunStopped(semconv.OUTCOME_KILLED, step, reason)

    def _bound_reached(self, agent_name: str) -> bool:
        with self._lock:
            return self._stop_after is not None and self._runs_done.get(agent_name, 0) >= self._stop_after

    def _count_run(self, agent_name: str) -> None:
        """Counts a run toward ``stop_after``. A run never calls back into APScheduler: its
        ``shutdown(wait=True)`` waits for running jobs while holding the job-store lock, so a run
        that then asked for that lock (``get_job``, ``remove_job``) would deadlock the stop. An agent
        past its bound is skipped by ``_job`` instead of having its job removed."""
        if self._stop_after is None:
            return
        with self._lock:
            self._runs_done[agent_name] = self._runs_done.get(agent_name, 0) + 1
            if all(self._runs_done.get(name, 0) >= self._stop_after for name in self.agents):
                self.all_done.set()


# --- start-up ---------------------------------------------------------------------------------


def observe_kill_switch(meter: Meter, kill_switch: KillSwitch, agent_names: list[str]) -> None:
    """The kill switch's state as a gauge per agent of this fleet (1 killed, 0 not), read at each
    metrics collection: the same cheap check a run makes (a stat, parsed only when changed)."""

    def killed(options: CallbackOptions) -> Iterable[Observation]:
        for name in agent_names:
            yield Observation(int(kill_switch.check(name).killed), {semconv.GEN_AI_AGENT_NAME: name})

    meter.create_observable_gauge(
        semconv.METRIC_KILL_SWITCH_KILLED, [killed], unit="1", description="Agent killed by the kill switch (1) or not (0)"
    )


def alert_on_telemetry_loss(telemetry: Telemetry, alerts: AlertSink) -> None:
    """An alert when the process loses spans or its exporter is stuck (as often as it is warned
    about, then deduplicated by the sink): a person learns that traces and the report are incomplete."""

    def tell(snapshot: AccountingSnapshot, what: str) -> None:
        figures = {
            "spans_dropped": snapshot.dropped,
            "spans_export_failed": snapshot.export_failed,
            "spans_queued": snapshot.queued,
            "exporter": telemetry.export.describe(),
        }
        alerts.send(Alert(ALERT_TELEMETRY_LOSS, "*", what, figures, at=alert_stamp()))

    telemetry.accounting.loss_listeners.append(tell)


def build_fleet(
    fleet: FleetConfig,
    telemetry: Telemetry,
    clock: Clock,
    market: MarketData,
    kill_switch: KillSwitch,
    settings: LLMSettings,
    llm_transport: Any = None,
    agents: dict[str, Any] | None = None,
    alerts: AlertSink | None = None,
    ledger: SpendLedger | None = None,
    lease: ShardLease | None = None,
) -> AgentScheduler:
    """The fleet wired up; ``agents`` already loaded (``load_agents``) or loaded here. ``ledger``: where
    the day budgets' spend lives (default: the shared store when the kill switch reads one, else files)."""
    client = build_openai_client(settings, transport=llm_transport)
    prices = PriceTable.load()
    llm = AIAnalysis(client, settings, prices)
    tools = ToolLoop(llm, telemetry.tracer_provider)  # its execute_tool spans on the fleet's provider
    budgets = build_budgets(fleet, clock, prices, settings.model, kill_switch.source, alerts, ledger, simulated=settings.simulated)
    agents = load_agents(fleet) if agents is None else agents
    params = {name: spec.params for name, spec in fleet.agents.items()}
    check_members(agents, params, fleet.agents, fleet.source, fleet.elsewhere)  # a typo, or a member on another shard
    run_stages(agents, params)  # a cycle is refused at start-up
    runner = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
    observe_kill_switch(telemetry.meter(), kill_switch, sorted(agents))
    if alerts is not None:
        alert_on_telemetry_loss(telemetry, alerts)
    supervise = None
    if fleet.supervisor is not None and fleet.supervisor.runs_on(fleet.shard):
        # imported only when configured: the report's modules are not needed to run agents
        from meta_supervisor.scheduled import supervise_once

        schedule = fleet.supervisor

        def supervise() -> None:
            supervise_once(schedule, telemetry, fleet.source)

    return AgentScheduler(
        fleet,
        agents,
        runner,
        kill_switch,
        clock,
        market,
        llm,
        alerts=alerts,
        supervise=supervise,
        tools=tools,
        budgets=budgets,
        lease=lease,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the alphatrace agent fleet, every run traced.")
    parser.add_argument("--config", help="fleet config (default: $ALPHATRACE_FLEET_CONFIG or agents/agents.toml)")
    bounded = parser.add_mutually_exclusive_group()
    bounded.add_argument("--once", action="store_true", help="run every agent once, then exit")
    bounded.add_argument("--cycles", type=int, help="live: exit once every agent has run this many times")
    bounded.add_argument("--replay", action="store_true", help="replay history, one trading day per cycle")
    parser.add_argument("--start", type=date.fromisoformat, help="replay: first day (default from config)")
    parser.add_argument("--days", type=int, help="replay: number of trading days (default from config)")
    parser.add_argument("--shard", help="run only the agents of this shard (agents.*.shard; default: $ALPHATRACE_SHARD, else all)")
    parser.add_argument(
        "--kill-switch-store", help="shared kill-switch store, redis://host:6379/0 (default: $ALPHATRACE_KILL_SWITCH_STORE, else the file)"
    )
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
        level = log_level()
    except ConfigError as exc:
        print(f"alphatrace: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()  # no API key (or a masked form, a Bearer token) in any line or traceback
    # One line per HTTP request and per job start would bury what matters.
    for chatty in ("apscheduler", "httpx2", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    lease: ShardLease | None = None
    try:
        fleet = for_shard(load_fleet_config(args.config), resolve_shard(args.shard))
        market = CsvMarketData()
        market.require(fleet.universe, f"{fleet.source}: fleet.universe")
        agents = load_agents(fleet)
        kill_switch = KillSwitch(source=kill_state_source(kill_switch_path(), MAX_KILL_FILE_BYTES, args.kill_switch_store))
        killed = kill_switch.load_strict()
        settings = resolve_llm_settings(fleet.llm)
        alerts = alerts_from_env(os.environ)
        if not args.replay:  # a replay is a batch over past days into its own trace file, not the live schedule
            lease = take_lease(fleet, agents, kill_switch, alerts)
        telemetry = configure_telemetry(llm_simulated=settings.simulated, register_atexit=True, resource_attributes=shard_resource(fleet))
    except ConfigError as exc:
        if lease is not None:
            lease.release()
        print(f"alphatrace: configuration error: {term(exc)}", file=sys.stderr)
        return 2
    stop_signals = StopSignals()
    fleet_scheduler = None
    try:
        # Before the start-up lines: once "spans: ..." is logged, SIGINT and SIGTERM stop gracefully.
        # Earlier, a signal ends the process the default way; no run has started, nothing is lost.
        stop_signals.install()
        if settings.simulated:
            logger.info("LLM: SIMULATED model (no OPENAI_API_KEY); calls are labelled simulated and cost $0")
        else:
            logger.info("LLM: %s via %s", settings.model, settings.base_url or "the OpenAI API")
        logger.info("spans: %s; killed agents: %s", telemetry.export.describe(), ", ".join(sorted(killed)) or "none")
        logger.info("kill switch: %s", kill_switch.source.describe())
        if fleet.shard is not None:
            logger.info("shard %s: agents %s", fleet.shard, ", ".join(sorted(agents)))
        if lease is not None:
            logger.info("lease: %s", lease.describe())
        if args.cycles is not None:
            logger.info("%s", describe_cycles(fleet, agents, args.cycles))
        clock: Clock
        if args.replay:
            start = args.start or fleet.replay_start
            clock = ReplayClock(start)
        else:
            clock = WallClock()
        fleet_scheduler = build_fleet(fleet, telemetry, clock, market, kill_switch, settings, agents=agents, alerts=alerts, lease=lease)
        if fleet_scheduler.budgets is not None:
            logger.info("budgets: %s", fleet_scheduler.budgets.describe())
        if args.replay:
            days = replay_days(market, fleet, start, args.days or fleet.replay_cycles)
            logger.info("replaying %d trading days, %s to %s", len(days), days[0], days[-1])
            for day in days:
                clock.set(day)
                fleet_scheduler.run_cycle(day)
        elif args.once:
            fleet_scheduler.run_cycle()
        else:
            fleet_scheduler.start(stop_after=args.cycles)
            fleet_scheduler.all_done.wait()
    except ConfigError as exc:
        print(f"alphatrace: configuration error: {term(exc)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit) as exc:
        logger.info("stopping (%s); letting in-flight runs finish", type(exc).__name__)
    finally:
        stop_signals.stopping = True  # from here on a signal is logged, never raised into the flush
        if fleet_scheduler is not None:
            fleet_scheduler.shutdown(wait=True)
        if lease is not None:  # after the last run: another scheduler may take the shard at once
            lease.release()
        flushed = telemetry.shutdown()
        alerts.close()  # bounded: what is queued gets a few seconds to reach the webhook
        logger.info("telemetry %s", "flushed" if flushed else "NOT fully flushed")
        stop_signals.restore()
    return 0


if __name__ == "__main__":
    sys.exit(main())
