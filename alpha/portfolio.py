"""An agent's signals as a portfolio: daily returns and the figures a quant reads off them.

Pure functions over ``SignalRecord``s (one per agent, symbol and as-of date: ``alpha.quality.dedupe``)
and ``alpha.forward_returns.ForwardReturns``; no file, clock or environment is read.
``docs/alpha-quality.md`` ("What an agent is worth") defines every figure; in short, on each as-of
date ``d``, over the symbols whose 1-trading-day forward return from ``d`` is scored (each held one
trading day **in its own calendar**, ``alpha.forward_returns``):

* **factor** (Alphalens' ``factor_returns`` with ``demeaned=True``): ``w_s = (x_s - mean x) / sum |x - mean x|``
  with ``x`` the signals' ``score_final``: dollar-neutral, gross 1. A day without spread (one symbol,
  or every score equal) holds nothing and returns 0 (Alphalens: 0 / 0 weights, summed as 0);
* **directional** (Alphalens' ``factor_returns(equal_weight=True, demeaned=False)`` of the direction's
  sign): long ``up``, short ``down``, ``flat`` out, equal weights of gross 1; a day of only ``flat``
  signals holds nothing and returns 0.

The day's return is ``sum_s w_s * r_s``. ``performance`` turns a series of them into the figures
(the formulas of ``empyrical``: Sharpe ``mean / std(ddof 1) * sqrt(252)``, drawdown on compounded
wealth starting at 1, beta ``cov / var`` against the universe's equal-weight return of the same days).

Reads no environment variables.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from alpha.forward_returns import ForwardReturns
from alpha.records import SignalRecord

TRADING_DAYS_PER_YEAR = 252
HOLDING_DAYS = 1
FACTOR = "factor"
DIRECTIONAL = "directional"
KINDS = (FACTOR, DIRECTIONAL)
_SIGN = {"up": 1.0, "down": -1.0, "flat": 0.0}


@dataclass(frozen=True)
class Day:
    """One as-of date of a portfolio: its weights (symbols held; none on a day without positions),
    the 1-day returns of the day's symbols, and the portfolio's return."""

    as_of: date
    weights: Mapping[str, float]
    returns: Mapping[str, float]
    value: float


def factor_weights(scores: Mapping[str, float]) -> dict[str, float]:
    """Demeaned scores over the sum of their absolute values; ``{}`` when that sum is 0."""
    if not scores:
        return {}
    mean = sum(scores.values()) / len(scores)
    demeaned = {s: x - mean for s, x in scores.items()}
    gross = sum(abs(v) for v in demeaned.values())
    return {s: v / gross for s, v in demeaned.items() if v != 0} if gross > 0 else {}


def directional_weights(directions: Mapping[str, str]) -> dict[str, float]:
    """Long ``up``, short ``down``, equal weights of gross 1; ``flat`` symbols get none."""
    called = {s: _SIGN[d] for s, d in directions.items() if _SIGN.get(d, 0.0) != 0.0}
    return {s: sign / len(called) for s, sign in called.items()}


def daily_portfolio(signals: Iterable[SignalRecord], returns: ForwardReturns, kind: str = FACTOR) -> list[Day]:
    """The portfolio of ``kind`` on each as-of date that has at least one scored 1-day return, in date
    order. ``signals``: one agent's, one per symbol and as-of date (``alpha.quality.dedupe``)."""
    if kind not in KINDS:
        raise ValueError(f"portfolio kind must be one of {KINDS}, got {kind!r}")
    by_date: dict[date, list[tuple[SignalRecord, float]]] = defaultdict(list)
    for s in signals:
        forward = returns.get(s.symbol, s.as_of, HOLDING_DAYS)
        if forward.scored:
            by_date[s.as_of].append((s, forward.value))
    days = []
    for as_of in sorted(by_date):
        rows = by_date[as_of]
        if kind == FACTOR:
            weights = factor_weights({s.symbol: s.score_final for s, _ in rows})
        else:
            weights = directional_weights({s.symbol: s.direction for s, _ in rows})
        day_returns = {s.symbol: r for s, r in rows}
        value = sum(w * day_returns[symbol] for symbol, w in weights.items())
        days.append(Day(as_of, weights, day_returns, value))
    return days


def equal_weight_returns(as_of_days: Iterable[date], universe: Sequence[str], returns: ForwardReturns) -> dict[date, float | None]:
    """The universe's equal-weight 1-day return from each as-of date (the mean over the symbols whose
    return is scored; ``None`` when none is): the benchmark of ``beta``."""
    out: dict[date, float | None] = {}
    for day in as_of_days:
        values = [f.value for f in (returns.get(symbol, day, HOLDING_DAYS) for symbol in universe) if f.scored]
        out[day] = sum(values) / len(values) if values else None
    return out


# --- statistics (empyrical's definitions; tests cross-check them) ------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def sample_std(values: Sequence[float]) -> float | None:
    """Standard deviation with ddof 1 (empyrical, numpy ``std(ddof=1)``); ``None`` with fewer than 2."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


MIN_STD = 1e-12  # daily returns varying less than this vary by rounding only: no Sharpe, not 1e15


def sharpe(values: Sequence[float]) -> float | None:
    """``mean / std(ddof 1) * sqrt(252)`` with a risk-free rate of 0 (empyrical ``sharpe_ratio``);
    ``None`` without variation (a std below ``MIN_STD``, where empyrical divides by rounding noise)."""
    std = sample_std(values)
    if std is None or std < MIN_STD:
        return None
    return sum(values) / len(values) / std * math.sqrt(TRADING_DAYS_PER_YEAR)


def drawdown(values: Sequence[float], dates: Sequence[date]) -> dict[str, Any]:
    """The largest fall of compounded wealth (starting at 1) from a running peak, as a negative
    fraction (empyrical ``max_drawdown``), with the peak's date (``None``: the start, before the
    first day), the trough's and the first date wealth was back at the peak (``None``: not yet)."""
    wealth, peak, peak_at = 1.0, 1.0, None
    worst, worst_peak_at, trough_at, worst_peak = 0.0, None, None, 1.0
    series = []
    for value, day in zip(values, dates):
        wealth *= 1.0 + value
        if wealth > peak:
            peak, peak_at = wealth, day
        fall = (wealth - peak) / peak
        series.append((wealth, fall))
        if fall < worst:
            worst, worst_peak_at, trough_at, worst_peak = fall, peak_at, day, peak
    recovered_at = None
    if trough_at is not None:
        after = dates.index(trough_at)
        recovered_at = next((d for (w, _), d in zip(series[after:], dates[after:]) if w >= worst_peak), None)
    return {
        "max_drawdown": worst,
        "peak": worst_peak_at.isoformat() if worst_peak_at else None,
        "trough": trough_at.isoformat() if trough_at else None,
        "recovered": recovered_at.isoformat() if recovered_at else None,
        "underwater": [fall for _, fall in series],
    }


def beta(values: Sequence[float], benchmark: Sequence[float]) -> float | None:
    """``cov(portfolio, benchmark) / var(benchmark)`` (empyrical ``beta``); ``None`` when the
    benchmark does not vary (empyrical: variance below 1e-30 gives NaN)."""
    n = len(values)
    if n < 2 or n != len(benchmark):
        return None
    mb, mp = sum(benchmark) / n, sum(values) / n
    var = sum((b - mb) ** 2 for b in benchmark) / n
    if var < 1e-30:
        return None
    return sum((b - mb) * (p - mp) for b, p in zip(benchmark, values)) / n / var


def annual_return(values: Sequence[float]) -> float | None:
    """Compound annual growth: ``prod(1 + r) ** (252 / n) - 1`` (empyrical ``annual_return``)."""
    if not values:
        return None
    wealth = math.prod(1.0 + v for v in values)
    return wealth ** (TRADING_DAYS_PER_YEAR / len(values)) - 1.0 if wealth > 0 else -1.0


def turnover(days: Sequence[Day]) -> float | None:
    """Mean over consecutive portfolio days of ``sum_s |w_s,t - w_s,t-1| / 2`` (the share of the
    gross book traded; a symbol not held has weight 0); ``None`` with fewer than 2 days."""
    if len(days) < 2:
        return None
    moves = []
    for before, after in itertools.pairwise(days):
        symbols = set(before.weights) | set(after.weights)
        moves.append(sum(abs(after.weights.get(s, 0.0) - before.weights.get(s, 0.0)) for s in symbols) / 2.0)
    return sum(moves) / len(moves)


def performance(values: Sequence[float], dates: Sequence[date], benchmark: Sequence[float | None] | None = None) -> dict[str, Any]:
    """The figures of one daily return series (in date order): see the module doc. ``benchmark``:
    the universe's equal-weight return of the same dates (days where it is ``None`` are left out of beta)."""
    values, dates = list(values), list(dates)
    n = len(values)
    cumulative = math.prod(1.0 + v for v in values) - 1.0 if values else None
    std = sample_std(values)
    down = drawdown(values, dates)
    pairs = [(v, b) for v, b in zip(values, benchmark or []) if b is not None]
    return {
        "days": n,
        "first": dates[0].isoformat() if dates else None,
        "last": dates[-1].isoformat() if dates else None,
        "mean_daily_return": _mean(values),
        "cumulative_return": cumulative,
        "annual_return": annual_return(values),
        "annual_volatility": std * math.sqrt(TRADING_DAYS_PER_YEAR) if std is not None else None,
        "sharpe": sharpe(values),
        "max_drawdown": down["max_drawdown"] if values else None,
        "max_drawdown_peak": down["peak"],
        "max_drawdown_trough": down["trough"],
        "max_drawdown_recovered": down["recovered"],
        "positive_days": sum(1 for v in values if v > 0) / n if n else None,
        "beta": beta([v for v, _ in pairs], [b for _, b in pairs]),
        "beta_days": len(pairs),
    }


def cumulative_curve(values: Sequence[float]) -> list[float]:
    """Compounded cumulative return after each day (the PnL curve per unit of capital)."""
    wealth, out = 1.0, []
    for v in values:
        wealth *= 1.0 + v
        out.append(wealth - 1.0)
    return out
