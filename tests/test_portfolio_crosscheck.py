"""Cross-check of the signal portfolios (``alpha.portfolio``) against alphalens-reloaded and
empyrical-reloaded (test-only dependencies) on the shipped market data.

Eight instruments that share the NYSE calendar (SPX, IXIC and the six stocks: Alphalens forward-fills
one common calendar while alphatrace holds each symbol one day in its own), 120 as-of dates from
March 2017, a deterministic score per (date, symbol) rounded to one decimal so that ties occur, and
two dates where every score is equal (no spread: no position). Compared to 1e-9: every daily return
of the factor portfolio (``performance.factor_returns``, demeaned) and of the directional one
(``factor_returns(equal_weight=True, demeaned=False)`` of the direction's sign), then Sharpe,
annual return and volatility, cumulative return, max drawdown and beta (``empyrical``).
"""

from __future__ import annotations

import hashlib
import warnings
from datetime import date

import alphalens as al
import empyrical as ep
import pandas as pd
import pytest

from alpha.forward_returns import ForwardReturns
from alpha.portfolio import DIRECTIONAL, FACTOR, daily_portfolio, equal_weight_returns, performance
from alpha.records import SignalRecord
from services.market_data import CsvMarketData
from tests.one_calendar import SYMBOLS, one_calendar_prices

TOLERANCE = 1e-9
DAYS = 120


def _score(day: date, symbol: str, flat_days: set[date]) -> float:
    if day in flat_days:
        return 0.3  # every symbol the same: no spread, no position
    digest = hashlib.sha256(f"{day}{symbol}".encode()).digest()
    return round(int.from_bytes(digest[:4], "big") / 2**32 - 0.5, 1)


def _direction(score: float) -> str:
    return "up" if score > 0.1 else "down" if score < -0.1 else "flat"


@pytest.fixture(scope="module")
def case():
    market = CsvMarketData()
    days = market.trading_days("SPX", date(2017, 3, 1), date(2017, 9, 30))[:DAYS]
    flat_days = {days[10], days[50]}
    prices = one_calendar_prices(market, days[0], date(2017, 10, 31))
    index = pd.MultiIndex.from_tuples([(pd.Timestamp(d), s) for d in days for s in SYMBOLS], names=["date", "asset"])
    factor = pd.Series([_score(d, s, flat_days) for d in days for s in SYMBOLS], index=index)
    with warnings.catch_warnings():
        # alphalens 0.5.1 calls DatetimeIndex.dayofweek, deprecated in pandas 3; nothing else is silenced.
        warnings.filterwarnings("ignore", category=getattr(pd.errors, "Pandas4Warning", FutureWarning), module=r"alphalens\.")
        factor_data = al.utils.get_clean_factor_and_forward_returns(
            factor, prices, periods=(1,), quantiles=None, bins=3, filter_zscore=None, max_loss=0
        )
        theirs_factor = al.performance.factor_returns(factor_data, demeaned=True)["1D"]
        signs = factor_data.copy()
        signs["factor"] = [{"up": 1.0, "down": -1.0, "flat": 0.0}[_direction(x)] for x in factor_data["factor"]]
        theirs_directional = al.performance.factor_returns(signs, demeaned=False, equal_weight=True)["1D"]
    signals = [
        SignalRecord("agent", s, d, _direction(_score(d, s, flat_days)), 0.5, _score(d, s, flat_days), 1) for d in days for s in SYMBOLS
    ]
    returns = ForwardReturns(market)
    return {
        "days": days,
        "flat_days": flat_days,
        "returns": returns,
        "factor": (daily_portfolio(signals, returns, FACTOR), theirs_factor),
        "directional": (daily_portfolio(signals, returns, DIRECTIONAL), theirs_directional),
        "benchmark": equal_weight_returns(days, SYMBOLS, returns),
        "prices": prices,
    }


@pytest.mark.parametrize("kind", [FACTOR, DIRECTIONAL])
def test_daily_returns_match_alphalens_factor_returns(case, kind):
    mine, theirs = case[kind]
    assert [d.as_of for d in mine] == case["days"]
    assert [stamp.date() for stamp in theirs.index] == case["days"]
    worst = max(abs(d.value - theirs.loc[pd.Timestamp(d.as_of)]) for d in mine)
    assert worst <= TOLERANCE


def test_days_without_spread_hold_nothing_and_return_zero_as_in_alphalens(case):
    mine, theirs = case[FACTOR]
    for day in case["flat_days"]:
        held = next(d for d in mine if d.as_of == day)
        assert held.weights == {} and held.value == 0.0
        assert theirs.loc[pd.Timestamp(day)] == 0.0


def test_factor_weights_are_dollar_neutral_with_gross_one(case):
    for day in case["factor"][0]:
        if day.weights:
            assert sum(day.weights.values()) == pytest.approx(0.0, abs=1e-12)
            assert sum(abs(w) for w in day.weights.values()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kind", [FACTOR, DIRECTIONAL])
def test_figures_match_empyrical(case, kind):
    days = case[kind][0]
    values = [d.value for d in days]
    dates = [d.as_of for d in days]
    bench = [case["benchmark"][d] for d in dates]
    figures = performance(values, dates, bench)
    series = pd.Series(values, index=pd.DatetimeIndex([pd.Timestamp(d) for d in dates]))
    bench_series = pd.Series(bench, index=series.index)
    assert figures["sharpe"] == pytest.approx(ep.sharpe_ratio(series), abs=TOLERANCE)
    assert figures["annual_return"] == pytest.approx(ep.annual_return(series), abs=TOLERANCE)
    assert figures["annual_volatility"] == pytest.approx(ep.annual_volatility(series), abs=TOLERANCE)
    assert figures["cumulative_return"] == pytest.approx(ep.cum_returns_final(series), abs=TOLERANCE)
    assert figures["max_drawdown"] == pytest.approx(ep.max_drawdown(series), abs=TOLERANCE)
    assert figures["beta"] == pytest.approx(ep.beta(series, bench_series), abs=TOLERANCE)
    assert figures["beta_days"] == len(dates)


def test_drawdown_dates_match_the_underwater_curve(case):
    days = case[FACTOR][0]
    values = [d.value for d in days]
    dates = [d.as_of for d in days]
    figures = performance(values, dates)
    series = pd.Series(values, index=pd.DatetimeIndex([pd.Timestamp(d) for d in dates]))
    wealth = (1 + series).cumprod()
    underwater = wealth / wealth.cummax().clip(lower=1.0) - 1
    assert figures["max_drawdown_trough"] == underwater.idxmin().date().isoformat()
    before = wealth[: underwater.idxmin()]
    peak = before.idxmax().date().isoformat() if before.max() > 1.0 else None
    assert figures["max_drawdown_peak"] == peak


def test_benchmark_is_the_equal_weight_mean_of_the_universe(case):
    prices = case["prices"]
    ew = (prices.shift(-1) / prices - 1).mean(axis=1)
    for day in case["days"]:
        assert case["benchmark"][day] == pytest.approx(ew.loc[pd.Timestamp(day)], abs=1e-12)
