"""What the scheduler decides at start-up, before any agent runs: its arguments' combinations, the log
level, the replay's days, how long ``--cycles`` takes, a sharded scheduler's resource and its lease.

Each check raises a ``ConfigError`` naming the setting, its value and the fix (``scheduler.main``
prints it on one line and exits 2).

Environment: ``ALPHATRACE_LOG_LEVEL`` (``DEBUG``/``INFO``/``WARNING``/``ERROR``/``CRITICAL``, default
``INFO``); the lease reads what ``services/shard_lease.py`` documents.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Mapping
from datetime import date
from typing import Any

from otel import semconv
from otel.provider import build_resource
from services.alerts import AlertSink
from services.config_error import ConfigError
from services.fleet_config import FleetConfig
from services.kill_switch import KillSwitch
from services.kill_switch_store import RedisSource
from services.market_data import MarketData
from services.shard_lease import ShardLease, lease_names, shard_lease

ENV_LOG_LEVEL = "ALPHATRACE_LOG_LEVEL"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(env: Mapping[str, str] | None = None) -> str:
    """``ALPHATRACE_LOG_LEVEL`` (default ``INFO``, any case); anything else is a ``ConfigError``."""
    env = os.environ if env is None else env
    raw = env.get(ENV_LOG_LEVEL) or "INFO"
    level = raw.strip().upper()
    if level == "NOTSET" or level not in logging.getLevelNamesMapping():  # WARN and FATAL are aliases
        raise ConfigError(f"{ENV_LOG_LEVEL}={raw!r} is not a log level; use one of {', '.join(_LOG_LEVELS)} or unset it (INFO)")
    return level


def shard_resource(fleet: FleetConfig) -> dict[str, str]:
    """The resource attributes of a sharded scheduler: its shard and its host (none for one host)."""
    if fleet.shard is None:
        return {}
    return {semconv.RESOURCE_SHARD: fleet.shard, semconv.HOST_NAME: socket.gethostname()}


def take_lease(fleet: FleetConfig, agents: dict[str, Any], kill_switch: KillSwitch, alerts: AlertSink) -> ShardLease:
    """The lease of every shard this scheduler runs agents of, taken and kept renewed
    (``services/shard_lease.py``); a ``ConfigError`` when another scheduler holds one."""
    names = lease_names(fleet.agents[name].shard for name in agents)
    store = kill_switch.source if isinstance(kill_switch.source, RedisSource) else None
    instance = str(build_resource().attributes.get(semconv.SERVICE_INSTANCE_ID, ""))  # the id the spans will carry
    lease = shard_lease(names, store, kill_switch.path, instance, alerts)
    lease.acquire()
    lease.start_renewing()
    return lease


def check_arguments(args: argparse.Namespace) -> None:
    """The combinations argparse cannot check: ``ConfigError`` naming the option, its value and the fix."""
    for option, value in (("--start", args.start), ("--days", args.days)):
        if value is not None and not args.replay:
            raise ConfigError(f"{option} {value} applies only to a replay; add --replay, or drop {option} to run live")
    for option, value in (("--days", args.days), ("--cycles", args.cycles)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: must be at least 1")


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_cycles(fleet: FleetConfig, agents: dict[str, Any], cycles: int) -> str:
    """How long ``--cycles`` takes: each agent's first run is now, the next ones each interval later."""
    slowest = max(agents, key=lambda name: fleet.agents[name].interval_seconds)
    interval = fleet.agents[slowest].interval_seconds
    return (
        f"--cycles {cycles}: every agent runs {cycles} time(s), the first now, then once per interval_seconds; that takes "
        f"about {duration_text((cycles - 1) * interval)} (the slowest, {slowest}, runs every {duration_text(interval)})"
    )


def replay_days(market: MarketData, fleet: FleetConfig, start: date, cycles: int) -> list[date]:
    """Trading days to replay: the dates of the first symbol of the universe from ``start`` on."""
    days = market.trading_days(fleet.universe[0], start)
    if not days:
        raise ConfigError(f"no market data for {fleet.universe[0]} on or after {start}")
    return days[:cycles]
