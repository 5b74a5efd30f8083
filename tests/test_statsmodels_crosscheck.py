"""Cross-check of the Newey-West (HAC) t-stat against statsmodels (a test-only dependency) on the shipped market data.

The eight instruments that share the NYSE calendar (as ``tests/test_alphalens_crosscheck.py``), every
trading day from February to November 2017, scored by a momentum score (the symbol's return over the
last five trading days, which makes neighbouring daily ICs of overlapping returns move together). For
each horizon ``h`` in 1, 5 and 10 the daily cross-sectional ICs are regressed on a constant with
``statsmodels.OLS(...).fit(cov_type="HAC", cov_kwds={"maxlags": h - 1, "use_correction": True})``:
its t-value must be ``t_stat_hac``. statsmodels' default (``use_correction=False``) leaves out the
small-sample factor ``n / (n - 1)``: its t-value is ours times ``sqrt(n / (n - 1))``, also asserted,
so a change of either default shows here. The per-symbol time-series IC (0 lags) is checked the same way.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
import statsmodels.api as sm

from alpha.quality import score_signals
from alpha.records import SignalRecord
from services.market_data import CsvMarketData

SYMBOLS = ["SPX", "IXIC", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"]
PERIODS = (1, 5, 10)
TOLERANCE = 1e-9


def statsmodels_t(values: list[float], lags: int, use_correction: bool) -> float:
    y = np.asarray(values, dtype=float)
    fit = sm.OLS(y, np.ones_like(y)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": use_correction})
    return float(fit.tvalues[0])


@pytest.fixture(scope="module")
def section():
    market = CsvMarketData()
    days = market.trading_days("SPX", date(2017, 2, 1), date(2017, 11, 30))
    signals = []
    for day in days:
        for symbol in SYMBOLS:
            bars = market.closes(symbol, day, 6)
            assert bars[-1].day == day  # the premise: one calendar
            score = bars[-1].close / bars[0].close - 1
            signals.append(SignalRecord("momentum", symbol, day, "up" if score > 0 else "down", 0.5, score, 5))
    return score_signals(signals, market, horizons=PERIODS, primary_horizon=5, min_time_series=20)


@pytest.mark.parametrize("h", PERIODS)
def test_cross_sectional_hac_t_stat_matches_statsmodels(section, h):
    xs = section["agents"]["momentum"]["horizons"][str(h)]["ic_cross_sectional"]
    daily = list(xs["daily"].values())  # in date order
    n = len(daily)
    assert n == xs["n"] > 150 and xs["hac_lags"] == h - 1
    corrected = statsmodels_t(daily, h - 1, use_correction=True)
    assert xs["t_stat_hac"] == pytest.approx(corrected, abs=TOLERANCE)
    assert statsmodels_t(daily, h - 1, use_correction=False) == pytest.approx(corrected * math.sqrt(n / (n - 1)), abs=TOLERANCE)
    if h > 1:  # the reason for all this: overlapping h-day returns make the plain t-stat overstate the evidence
        assert abs(xs["t_stat_hac"]) < 0.8 * abs(xs["t_stat"])


def test_time_series_hac_t_stat_matches_statsmodels_with_no_lags(section):
    cell = section["agents"]["momentum"]["horizons"]["5"]
    values = [cell["by_symbol"][s]["ic_time_series"] for s in SYMBOLS]
    ts = cell["ic_time_series"]
    assert ts["hac_lags"] == 0 and ts["n"] == len(SYMBOLS)
    assert ts["t_stat_hac"] == pytest.approx(statsmodels_t(values, 0, use_correction=True), abs=TOLERANCE)
    assert ts["t_stat_hac"] == pytest.approx(ts["t_stat"], abs=TOLERANCE)  # 0 lags with the factor: the plain t-stat
