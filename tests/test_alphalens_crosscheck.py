"""Cross-check against alphalens-reloaded (a test-only dependency) on the shipped market data.

Eight instruments that share the NYSE calendar (SPX, IXIC and the six stocks; WTI is left out since
Alphalens forward-fills one common calendar while alphatrace uses each symbol's own), 60 as-of dates
from March 2017, a deterministic score per (date, symbol) rounded to one decimal so that ties occur.
Compared: every forward return at 1, 5 and 10 days (``compute_forward_returns`` inside
``get_clean_factor_and_forward_returns``), every per-date cross-sectional IC
(``performance.factor_information_coefficient``), and the IC mean, std and t-stat
(``plotting.plot_information_table``). The per-symbol time-series IC, which Alphalens does not have,
is checked against ``scipy.stats.spearmanr``.
"""

from __future__ import annotations

import hashlib
import warnings
from datetime import date

import alphalens as al
import pandas as pd
import pytest
from scipy import stats

from alpha.forward_returns import forward_return
from alpha.quality import score_signals
from alpha.records import SignalRecord
from services.market_data import CsvMarketData
from tests.one_calendar import SYMBOLS, one_calendar_prices

PERIODS = (1, 5, 10)
TOLERANCE = 1e-12


def _score(day: date, symbol: str) -> float:
    digest = hashlib.sha256(f"{day}{symbol}".encode()).digest()
    return round(int.from_bytes(digest[:4], "big") / 2**32 - 0.5, 1)


@pytest.fixture(scope="module")
def case():
    market = CsvMarketData()
    days = market.trading_days("SPX", date(2017, 3, 1), date(2017, 5, 24))[:60]
    prices = one_calendar_prices(market, days[0], date(2017, 7, 31))
    index = pd.MultiIndex.from_tuples([(pd.Timestamp(d), s) for d in days for s in SYMBOLS], names=["date", "asset"])
    factor = pd.Series([_score(d, s) for d in days for s in SYMBOLS], index=index)
    with warnings.catch_warnings():
        # alphalens 0.5.1 calls DatetimeIndex.dayofweek, deprecated in pandas 3; nothing else is silenced.
        warnings.filterwarnings("ignore", category=getattr(pd.errors, "Pandas4Warning", FutureWarning), module=r"alphalens\.")
        factor_data = al.utils.get_clean_factor_and_forward_returns(
            factor, prices, periods=PERIODS, quantiles=None, bins=3, filter_zscore=None, max_loss=0
        )
        ic = al.performance.factor_information_coefficient(factor_data)
        table = al.plotting.plot_information_table(ic, return_df=True)
    signals = [SignalRecord("agent", s, d, "flat", 0.5, _score(d, s), 5) for d in days for s in SYMBOLS]
    section = score_signals(signals, market, horizons=PERIODS, primary_horizon=5, min_cross_section=5)
    return {"market": market, "days": days, "factor_data": factor_data, "ic": ic, "table": table, "section": section}


def test_forward_returns_match_alphalens(case):
    worst = 0.0
    for (stamp, symbol), row in case["factor_data"].iterrows():
        for period in PERIODS:
            mine = forward_return(case["market"], symbol, stamp.date(), period)
            worst = max(worst, abs(mine.value - row[f"{period}D"]))
    assert len(case["factor_data"]) == 60 * len(SYMBOLS)
    assert worst <= TOLERANCE


def test_daily_cross_sectional_ic_matches_alphalens(case):
    worst = 0.0
    for period in PERIODS:
        mine = case["section"]["agents"]["agent"]["horizons"][str(period)]["ic_cross_sectional"]["daily"]
        theirs = case["ic"][f"{period}D"]
        assert len(mine) == len(theirs) == 60
        for stamp, value in theirs.items():
            worst = max(worst, abs(mine[stamp.date().isoformat()] - value))
    assert worst <= TOLERANCE


def test_ic_mean_std_and_t_stat_match_alphalens(case):
    for period in PERIODS:
        mine = case["section"]["agents"]["agent"]["horizons"][str(period)]["ic_cross_sectional"]
        theirs = case["table"].loc[f"{period}D"]
        assert mine["mean"] == pytest.approx(theirs["IC Mean"], abs=TOLERANCE)
        assert mine["std"] == pytest.approx(theirs["IC Std."], abs=TOLERANCE)
        assert mine["t_stat"] == pytest.approx(theirs["t-stat(IC)"], abs=1e-9)


def test_time_series_ic_matches_scipy(case):
    cell = case["section"]["agents"]["agent"]["horizons"]["5"]
    for symbol in SYMBOLS:
        scores = [_score(d, symbol) for d in case["days"]]
        returns = [forward_return(case["market"], symbol, d, 5).value for d in case["days"]]
        expected = stats.spearmanr(scores, returns).statistic
        assert cell["by_symbol"][symbol]["ic_time_series"] == pytest.approx(expected, abs=TOLERANCE)
