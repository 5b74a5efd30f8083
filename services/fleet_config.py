"""The fleet configuration: which agents run, how often, on which instruments, and the LLM settings.

``agents/agents.toml`` (TOML, read with the standard library) has a ``[fleet]`` table, a ``[replay]``
table for the demo's replay of history, an ``[llm]`` table and one ``[agents.NAME]`` table per agent
with its ``module``, ``interval_seconds``, ``params``, initial ``status`` (``live``/``shadow``) and
``capital_usd`` (the notional capital of the report's "worth" section, default ``DEFAULT_CAPITAL_USD``).
Adding an agent is one module plus one such table. Anything malformed is a ``ConfigError`` naming the key;
so is a key nobody reads (``KNOWN_KEYS``, with "did you mean ...?"): a typo never falls back to a default.
An agent's ``params`` are checked by the agent's own declaration (``PARAMS``, ``agents/base.py``) when
``load_agent`` builds it.
Several hosts: an agent's ``shard`` names the scheduler process that runs it (``scheduler.py --shard
NAME``, or ``ALPHATRACE_SHARD``): one value per agent, so no agent is ever assigned to two shards;
``for_shard`` keeps one shard's agents (an unknown shard is a ``ConfigError`` with the known ones).
A scheduler started without a shard runs every enabled agent (one host).
``[supervisor]`` (optional) makes the supervisor a job of a live scheduler: ``every_seconds``, ``mode``
(``dry-run`` or ``apply``), ``report`` (build the report first; ``meta_supervisor/scheduled.py``) and,
for a sharded fleet, ``shard``: the one shard whose scheduler runs it.
``[fleet]`` also holds the staleness limit of live runs, ``max_data_age_days`` and ``on_stale``
(``services/data_freshness.py``).
Budgets (``services/budget_limits.py``): ``[agents.NAME.budget]`` (``run_cost_usd``, ``day_cost_usd``,
``run_tokens``) and ``[fleet.budget]`` (``day_cost_usd``); none means unlimited.

Environment: ``ALPHATRACE_FLEET_CONFIG`` (path of the TOML file; default ``agents/agents.toml``);
``ALPHATRACE_SHARD`` (the shard this scheduler runs, when ``--shard`` is not given);
``ALPHATRACE_MAX_DATA_AGE_DAYS`` and ``ALPHATRACE_ON_STALE`` (``services/data_freshness.py``).
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from services.budget_limits import AgentBudget, parse_agent_budget, parse_fleet_budget
from services.config_error import ConfigError, check_known
from services.data_freshness import FreshnessPolicy, parse_freshness_policy

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_FLEET_CONFIG = "ALPHATRACE_FLEET_CONFIG"
ENV_SHARD = "ALPHATRACE_SHARD"
DEFAULT_FLEET_CONFIG = PROJECT_ROOT / "agents" / "agents.toml"
_AGENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# Every key the file may have, per table ("" is the top level, "agents.*" each [agents.NAME] table).
# A new setting is one entry here plus the code that reads it.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("fleet", "replay", "llm", "agents", "supervisor"),
    "fleet": ("universe", "max_workers", "misfire_grace_seconds", "max_data_age_days", "on_stale", "budget"),
    "replay": ("start", "cycles"),
    "llm": ("provider", "model", "timeout_seconds", "max_retries", "base_url", "stream"),
    "supervisor": ("every_seconds", "mode", "report", "shard"),
    "agents.*": ("module", "interval_seconds", "params", "enabled", "status", "shard", "capital_usd", "budget"),
}
# The notional capital an agent's signals are traded with in the report's "worth" section (its PnL
# net of its LLM bill; docs/alpha-quality.md): agents.NAME.capital_usd, this when not given.
DEFAULT_CAPITAL_USD = 1_000_000.0


@dataclass(frozen=True)
class AgentSpec:
    name: str
    module: str
    interval_seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    status: str = "live"
    shard: str | None = None
    capital_usd: float = DEFAULT_CAPITAL_USD  # notional capital of the report's worth section
    budget: AgentBudget = field(default_factory=AgentBudget)  # none: unlimited


@dataclass(frozen=True)
class SupervisorSchedule:
    """``[supervisor]``: the supervisor as a job of the scheduler (live mode), every ``every_seconds``;
    ``mode`` ``dry-run`` (log the decisions) or ``apply``; ``report``: build the report first."""

    every_seconds: float
    mode: str = "dry-run"
    report: bool = True
    shard: str | None = None  # a sharded fleet: the one shard whose scheduler runs it

    def runs_on(self, shard: str | None) -> bool:
        """An unsharded scheduler runs it; a sharded one only when this names its shard (one
        supervisor for the whole fleet, never one per host)."""
        return shard is None or shard == self.shard


SUPERVISOR_MODES = ("dry-run", "apply")


@dataclass(frozen=True)
class FleetConfig:
    universe: tuple[str, ...]
    agents: dict[str, AgentSpec]
    llm: dict[str, Any]
    replay_start: date
    replay_cycles: int
    max_workers: int = 8
    misfire_grace_seconds: int = 30
    source: str = ""
    freshness: FreshnessPolicy = field(default_factory=FreshnessPolicy)
    supervisor: SupervisorSchedule | None = None  # None: the supervisor is run by hand
    shard: str | None = None  # the shard this config was narrowed to (for_shard), None: every agent
    elsewhere: dict[str, str | None] = field(default_factory=dict)  # narrowed: other agents -> their shard
    fleet_day_cost_usd: float | None = None  # [fleet.budget] day_cost_usd: the whole fleet's daily cap

    @property
    def has_budgets(self) -> bool:
        return self.fleet_day_cost_usd is not None or any(spec.budget.limited for spec in self.agents.values())

    @property
    def shards(self) -> tuple[str, ...]:
        """Every shard an agent is assigned to, sorted."""
        return tuple(sorted({spec.shard for spec in self.agents.values() if spec.shard is not None}))


def _table(raw: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{key}] must be a table")
    return value


def _positive_int(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source}: {key} must be a positive whole number, got {value!r}")
    return value


def _known_keys(table: dict[str, Any], kind: str, where: str, source: str) -> None:
    check_known(table, KNOWN_KEYS[kind], f"{source}: [{where}]" if where else source, "key" if kind else "table")


def parse_fleet_config(raw: dict[str, Any], source: str = "fleet config") -> FleetConfig:
    _known_keys(raw, "", "", source)
    fleet = _table(raw, "fleet", source)
    replay = _table(raw, "replay", source)
    llm = _table(raw, "llm", source)
    supervisor = _table(raw, "supervisor", source)
    for key, table in (("fleet", fleet), ("replay", replay), ("llm", llm), ("supervisor", supervisor)):
        _known_keys(table, key, key, source)
    universe = fleet.get("universe")
    if not isinstance(universe, list) or not universe or not all(isinstance(s, str) and s for s in universe):
        raise ConfigError(f"{source}: fleet.universe must be a non-empty list of symbols")
    try:
        replay_start = date.fromisoformat(str(replay.get("start", "2017-01-03")))
    except ValueError:
        raise ConfigError(f"{source}: replay.start must be an ISO date, got {replay.get('start')!r}") from None
    agents: dict[str, AgentSpec] = {}
    for name, table in _table(raw, "agents", source).items():
        if not _AGENT_NAME.match(name):
            raise ConfigError(f"{source}: agent name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [agents.{name}] must be a table")
        _known_keys(table, "agents.*", f"agents.{name}", source)
        module = table.get("module", f"agents.{name}")
        interval = table.get("interval_seconds", 300)
        if not isinstance(module, str) or not module:
            raise ConfigError(f"{source}: agents.{name}.module must be a module path such as 'agents.momentum'")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigError(f"{source}: agents.{name}.interval_seconds must be a positive number, got {interval!r}")
        params = table.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"{source}: agents.{name}.params must be a table")
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{source}: agents.{name}.enabled must be true or false")
        status = table.get("status", "live")
        if status not in ("shadow", "live"):
            raise ConfigError(f"{source}: agents.{name}.status must be 'shadow' or 'live', got {status!r}")
        shard = table.get("shard")
        if shard is not None and (not isinstance(shard, str) or not _AGENT_NAME.match(shard)):
            raise ConfigError(f"{source}: agents.{name}.shard must be 1-64 letters, digits, '_', '.' or '-', got {shard!r}")
        capital = table.get("capital_usd", DEFAULT_CAPITAL_USD)
        if isinstance(capital, bool) or not isinstance(capital, (int, float)) or not 0 < capital < float("inf"):
            raise ConfigError(f"{source}: agents.{name}.capital_usd must be a positive number of US dollars, got {capital!r}")
        budget = parse_agent_budget(table.get("budget"), f"{source}: agents.{name}.budget")
        agents[name] = AgentSpec(name, module, float(interval), dict(params), enabled, status, shard, float(capital), budget)
    if not any(spec.enabled for spec in agents.values()):
        raise ConfigError(f"{source}: no enabled agent in [agents.*]")
    return FleetConfig(
        universe=tuple(universe),
        agents=agents,
        llm=dict(llm),
        replay_start=replay_start,
        replay_cycles=_positive_int(replay.get("cycles", 250), "replay.cycles", source),
        max_workers=_positive_int(fleet.get("max_workers", 8), "fleet.max_workers", source),
        misfire_grace_seconds=_positive_int(fleet.get("misfire_grace_seconds", 30), "fleet.misfire_grace_seconds", source),
        source=source,
        freshness=parse_freshness_policy(fleet, source),
        supervisor=_supervisor_schedule(supervisor, source),
        fleet_day_cost_usd=parse_fleet_budget(fleet.get("budget"), f"{source}: fleet.budget"),
    )


def _supervisor_schedule(table: dict[str, Any], source: str) -> SupervisorSchedule | None:
    if not table:
        return None
    every = table.get("every_seconds")
    if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
        raise ConfigError(f"{source}: supervisor.every_seconds must be a positive number of seconds, got {every!r}")
    mode = table.get("mode", "dry-run")
    if mode not in SUPERVISOR_MODES:
        raise ConfigError(f"{source}: supervisor.mode must be one of {', '.join(SUPERVISOR_MODES)}, got {mode!r}")
    report = table.get("report", True)
    if not isinstance(report, bool):
        raise ConfigError(f"{source}: supervisor.report must be true or false")
    shard = table.get("shard")
    if shard is not None and (not isinstance(shard, str) or not _AGENT_NAME.match(shard)):
        raise ConfigError(f"{source}: supervisor.shard must be 1-64 letters, digits, '_', '.' or '-', got {shard!r}")
    return SupervisorSchedule(float(every), mode, report, shard)


def load_fleet_config(path: str | os.PathLike | None = None) -> FleetConfig:
    """Argument beats ``ALPHATRACE_FLEET_CONFIG`` beats ``agents/agents.toml``."""
    chosen = Path(path or os.environ.get(ENV_FLEET_CONFIG) or DEFAULT_FLEET_CONFIG)
    try:
        raw = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"fleet config {chosen} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"fleet config {chosen} is not valid TOML: {exc}") from None
    return parse_fleet_config(raw, source=str(chosen))


def resolve_shard(argument: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """``--shard`` beats ``ALPHATRACE_SHARD`` beats none (every agent)."""
    env = os.environ if env is None else env
    chosen = argument if argument is not None else (env.get(ENV_SHARD) or "").strip() or None
    if chosen is not None and not _AGENT_NAME.match(chosen):
        raise ConfigError(f"shard {chosen!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return chosen


def for_shard(fleet: FleetConfig, shard: str | None) -> FleetConfig:
    """The fleet narrowed to the enabled agents assigned to ``shard`` (``None``: unchanged)."""
    if shard is None:
        return fleet
    if shard not in fleet.shards:
        check_known([shard], fleet.shards, f"{fleet.source}: agents.*.shard", "shard")
    mine = {name: spec for name, spec in fleet.agents.items() if spec.shard == shard}
    if not any(spec.enabled for spec in mine.values()):
        raise ConfigError(f"{fleet.source}: no enabled agent is assigned to shard {shard!r}")
    elsewhere = {name: spec.shard for name, spec in fleet.agents.items() if name not in mine}
    return replace(fleet, agents=mine, shard=shard, elsewhere=elsewhere)


def load_agent(spec: AgentSpec, source: str = "fleet config") -> Any:
    """Import the agent's module, check its ``params`` against the module's ``PARAMS`` (``agents/base.py``)
    and build its ``Agent``; the configured name wins over the class's."""
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ConfigError(f"agent {spec.name!r}: cannot import module {spec.module!r}: {exc}") from None
    factory = getattr(module, "Agent", None)
    if factory is None:
        raise ConfigError(f"agent {spec.name!r}: module {spec.module!r} has no class 'Agent'")
    declared = getattr(module, "PARAMS", None)
    where = f"{source}: agents.{spec.name}.params"
    if declared is not None:
        from agents.base import check_params

        check_params(declared, spec.params, where)
    elif spec.params:
        raise ConfigError(
            f"{where} = {spec.params!r}: module {spec.module!r} declares no PARAMS, so they cannot be checked; "
            "declare them (agents/base.py, Param) or remove params"
        )
    agent = factory()
    agent.name = spec.name
    return agent


def load_agents(fleet: FleetConfig) -> dict[str, Any]:
    """Every enabled agent, built and its parameters checked (start-up: any problem is a ``ConfigError``)."""
    return {name: load_agent(spec, fleet.source) for name, spec in fleet.agents.items() if spec.enabled}
