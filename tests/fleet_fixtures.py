"""Small, deterministic market data and fleet configs for scheduler tests (the demo uses real data)."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import scheduler
from services.agent_run_wrapper import AgentRunWrapper
from services.ai_analysis import resolve_llm_settings
from services.clock import ReplayClock
from services.fleet_config import load_fleet_config
from services.kill_switch import KillSwitch
from services.market_data import CsvMarketData

START = date(2018, 1, 1)


def business_days(start: date, count: int) -> list[date]:
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def write_market(folder: Path, days: int = 90) -> list[date]:
    """SPX drifts up, WTI drifts down, both with a deterministic wiggle."""
    folder.mkdir(parents=True, exist_ok=True)
    calendar = business_days(START, days)
    for symbol, drift in (("SPX", 0.002), ("WTI", -0.003)):
        rows = ["date,open,high,low,close,volume"]
        price = 100.0
        for i, day in enumerate(calendar):
            price *= 1 + drift + 0.01 * math.sin(i * 1.3)
            rows.append(f"{day.isoformat()},,,,{price:.4f},")
        (folder / f"{symbol}.csv").write_text("\n".join(rows) + "\n")
    return calendar


FLEET_TOML = """
[fleet]
universe = ["SPX", "WTI"]
max_workers = 8
misfire_grace_seconds = 30

[replay]
start = "{start}"
cycles = 3

[llm]
provider = "simulated"
model = "gpt-4o-mini"

[agents.momentum]
interval_seconds = 0.05

[agents.mean_reversion]
interval_seconds = 0.05

[agents.llm_analyst]
interval_seconds = 0.05

[agents.ensemble]
interval_seconds = 0.05
"""


def write_fleet(path: Path, start: date) -> Path:
    path.write_text(FLEET_TOML.format(start=start.isoformat()))
    return path


def build_test_fleet(world, telemetry, transport=None, agents=None, clock=None, run_ids=None, alerts=None, ledger=None, **fleet_changes):
    """The scheduler over the test world's data and config, wired to the test's telemetry; ``clock``
    (default: standing on the 71st day), ``run_ids`` (a run-id source) and ``ledger`` (the budgets'
    spend ledger; default the files in ``ALPHATRACE_SPEND_DIR``) are the test's to choose."""
    fleet = load_fleet_config(world["config"])
    for key, value in fleet_changes.items():
        object.__setattr__(fleet, key, value)
    clock = clock or ReplayClock(world["calendar"][70])
    settings = resolve_llm_settings(fleet.llm, env={})
    built = scheduler.build_fleet(
        fleet, telemetry, clock, CsvMarketData(), KillSwitch(), settings, llm_transport=transport, alerts=alerts, ledger=ledger
    )
    if run_ids is not None:
        built._runner = AgentRunWrapper(telemetry.tracer(), new_run_id=run_ids, accounting=telemetry.accounting)
    if agents:
        built.agents.update(agents)
    return built


def replayed_trace_file(world, telemetry, span_exporter, days: slice = slice(60, 75)):
    """The test fleet run over ``days`` of the world's calendar, its spans written to
    ``traces.jsonl`` in the world's folder as the embedded exporter writes them; returns the path."""
    from otel.file_exporter import CollectorFileExporter

    fleet = build_test_fleet(world, telemetry)
    for day in world["calendar"][days]:
        fleet.run_cycle(day)
    fleet.shutdown()
    trace_file = world["tmp"] / "traces.jsonl"
    exporter = CollectorFileExporter(trace_file)
    exporter.export(span_exporter.get_finished_spans())
    exporter.shutdown()
    return trace_file


def root_spans(span_exporter):
    """The run spans among everything exported."""
    return [s for s in span_exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
