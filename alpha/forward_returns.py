"""Realised forward returns: what a signal's symbol did after the signal's as-of date.

The forward return of a signal over ``h`` trading days is::

    close(d_h) / close(d_0) - 1

where ``d_0`` is the last trading day of the symbol on or before the signal's ``as_of`` (so an as-of
date that is a weekend or holiday uses the close before it, which is the last bar the agent could
have seen) and ``d_h`` is the ``h``-th trading day after ``d_0`` **in that symbol's own calendar** (the
dates its data file has; WTI's spot calendar differs from the NYSE's, and a missing day is simply not
a trading day of that symbol). The return is:

* ``scored`` when ``d_h`` exists and is on or before ``today`` (``None``: no limit);
* ``pending`` when the data ends before ``d_h`` or ``d_h`` is after ``today`` (it will be scored later);
* ``no_data`` when the symbol has no file or no close on or before ``as_of``.

``ForwardReturns`` memoises per (symbol, as_of, horizon) since every agent signals the same symbols on
the same days. Reads no environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from services.config_error import ConfigError
from services.market_data import MarketData

SCORED = "scored"
PENDING = "pending"
NO_DATA = "no_data"


@dataclass(frozen=True)
class ForwardReturn:
    status: str  # scored | pending | no_data
    value: float | None = None  # close(exit_day) / close(entry_day) - 1 when scored
    entry_day: date | None = None  # d_0: last trading day on or before as_of
    exit_day: date | None = None  # d_h, when known (also for a pending one held back by ``today``)

    @property
    def scored(self) -> bool:
        return self.status == SCORED


def forward_return(market: MarketData, symbol: str, as_of: date, horizon: int, today: date | None = None) -> ForwardReturn:
    """The ``horizon``-trading-day forward return of ``symbol`` from ``as_of`` (see the module doc)."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 trading day, got {horizon}")
    try:
        entry = market.closes(symbol, as_of, 1)
    except ConfigError:
        return ForwardReturn(NO_DATA)
    if not entry:
        return ForwardReturn(NO_DATA)
    d0, c0 = entry[0].day, entry[0].close
    last = market.closes(symbol, date.max, 1)[0].day
    start = d0 + timedelta(days=1)
    span = 2 * horizon + 10  # calendar days that usually hold `horizon` trading days
    while True:
        end = start + timedelta(days=span)
        days = market.trading_days(symbol, start, end)
        if len(days) >= horizon:
            exit_day = days[horizon - 1]
            break
        if end >= last:
            return ForwardReturn(PENDING, entry_day=d0)
        span *= 2
    if today is not None and exit_day > today:
        return ForwardReturn(PENDING, entry_day=d0, exit_day=exit_day)
    exit_bar = market.closes(symbol, exit_day, 1)[0]
    return ForwardReturn(SCORED, exit_bar.close / c0 - 1.0, d0, exit_day)


class ForwardReturns:
    """``forward_return`` with a memo; one instance per scoring pass (the market data do not change)."""

    def __init__(self, market: MarketData, today: date | None = None) -> None:
        self.market = market
        self.today = today
        self._memo: dict[tuple[str, date, int], ForwardReturn] = {}

    def get(self, symbol: str, as_of: date, horizon: int) -> ForwardReturn:
        key = (symbol, as_of, horizon)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = forward_return(self.market, symbol, as_of, horizon, self.today)
        return found
