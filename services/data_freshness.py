"""How old the market data may be before a live run refuses it: the one staleness rule.

A live run (``scheduler.py`` without ``--replay``) stands on the clock's date, but the data may end
long before (the shipped history ends years ago). ``check_freshness`` finds the latest bar of the
universe on or before that date; when it is more than ``max_data_age_days`` calendar days old (or
there is none) the data is stale. What happens then is the fleet's ``on_stale`` setting:

* ``refuse`` (default): the run does not happen; its root span ends with outcome ``stale_data`` and
  the reason (``otel/semconv.py``, ``docs/telemetry-contract.md``).
* ``last_bar``: the run stands on the last bar's date; every signal carries that as-of date and
  ``alphatrace.alpha.stale=true`` (and is not tradable), and the LLM is told that date.

Replay never asks: its days come from the data. The settings live in ``[fleet]`` of
``agents/agents.toml`` and are parsed by ``services/fleet_config.py``.

Environment (beats ``[fleet]``): ``ALPHATRACE_MAX_DATA_AGE_DAYS`` (whole calendar days, default 4: a
weekend plus a holiday), ``ALPHATRACE_ON_STALE`` (``refuse`` or ``last_bar``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from otel import semconv
from services.config_error import ConfigError
from services.market_data import MarketData

ENV_MAX_DATA_AGE_DAYS = "ALPHATRACE_MAX_DATA_AGE_DAYS"
ENV_ON_STALE = "ALPHATRACE_ON_STALE"
ON_STALE_REFUSE = "refuse"
ON_STALE_LAST_BAR = "last_bar"
ON_STALE = (ON_STALE_REFUSE, ON_STALE_LAST_BAR)
DEFAULT_MAX_DATA_AGE_DAYS = 4  # Friday's close is still good on Tuesday after a Monday holiday
MAX_DATA_AGE_LIMIT = 3660  # ten years: anything larger is a typo, not a policy


@dataclass(frozen=True)
class FreshnessPolicy:
    max_data_age_days: int = DEFAULT_MAX_DATA_AGE_DAYS
    on_stale: str = ON_STALE_REFUSE


@dataclass(frozen=True)
class Freshness:
    """What ``check_freshness`` found for one run."""

    today: date
    last_bar: date | None
    policy: FreshnessPolicy

    @property
    def age_days(self) -> int | None:
        return None if self.last_bar is None else (self.today - self.last_bar).days

    @property
    def stale(self) -> bool:
        return self.last_bar is None or (self.today - self.last_bar).days > self.policy.max_data_age_days

    @property
    def refused(self) -> bool:
        """Stale and not to be run: the policy says refuse, or there is no bar at all to stand on."""
        return self.stale and (self.policy.on_stale == ON_STALE_REFUSE or self.last_bar is None)

    @property
    def as_of(self) -> date:
        """The date the run stands on: today when fresh, the last bar's date when run on stale data."""
        if self.stale and self.last_bar is not None:
            return self.last_bar
        return self.today

    def reason(self) -> str:
        if self.last_bar is None:
            return f"no market data on or before {self.today.isoformat()}"
        return (
            f"latest bar {self.last_bar.isoformat()} is {self.age_days} days before {self.today.isoformat()}"
            f" (max_data_age_days={self.policy.max_data_age_days})"
        )

    def attributes(self) -> dict[str, Any]:
        """The root span's ``alphatrace.data.*`` / ``alphatrace.stale.reason`` attributes for this finding."""
        attributes: dict[str, Any] = {
            semconv.DATA_STALE: self.stale,
            semconv.DATA_MAX_AGE_DAYS: self.policy.max_data_age_days,
            semconv.DATA_ON_STALE: self.policy.on_stale,
        }
        if self.last_bar is not None:
            attributes[semconv.DATA_LAST_BAR] = self.last_bar.isoformat()
            attributes[semconv.DATA_AGE_DAYS] = self.age_days
        if self.stale:
            attributes[semconv.STALE_REASON] = self.reason()
        return attributes


def check_freshness(market: MarketData, universe: Iterable[str], today: date, policy: FreshnessPolicy) -> Freshness:
    """The latest bar of any symbol of ``universe`` on or before ``today``, judged by ``policy``."""
    last: date | None = None
    for symbol in universe:
        bars = market.closes(symbol, today, 1)
        if bars and (last is None or bars[-1].day > last):
            last = bars[-1].day
    return Freshness(today=today, last_bar=last, policy=policy)


def parse_freshness_policy(fleet: Mapping[str, Any], source: str, env: Mapping[str, str] | None = None) -> FreshnessPolicy:
    """``max_data_age_days`` and ``on_stale`` of the ``[fleet]`` table, the environment winning."""
    env = os.environ if env is None else env
    max_age: Any = fleet.get("max_data_age_days", DEFAULT_MAX_DATA_AGE_DAYS)
    where = f"{source}: fleet.max_data_age_days"
    if env.get(ENV_MAX_DATA_AGE_DAYS):
        where = f"{ENV_MAX_DATA_AGE_DAYS}"
        try:
            max_age = int(env[ENV_MAX_DATA_AGE_DAYS].strip())
        except ValueError:
            raise ConfigError(f"{where} must be a whole number of days, got {env[ENV_MAX_DATA_AGE_DAYS]!r}") from None
    if isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 <= max_age <= MAX_DATA_AGE_LIMIT:
        raise ConfigError(f"{where} must be a whole number of days in [0, {MAX_DATA_AGE_LIMIT}], got {max_age!r}")
    on_stale = env.get(ENV_ON_STALE) or fleet.get("on_stale", ON_STALE_REFUSE)
    if on_stale not in ON_STALE:
        where = ENV_ON_STALE if env.get(ENV_ON_STALE) else f"{source}: fleet.on_stale"
        raise ConfigError(f"{where} must be one of {', '.join(ON_STALE)}, got {on_stale!r}")
    return FreshnessPolicy(max_data_age_days=max_age, on_stale=on_stale)
