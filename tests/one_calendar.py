"""The shipped market data as Alphalens and empyrical take it, for the cross-check tests: the symbols
that share one trading calendar (WTI trades on other days) and their closes as one frame."""

from __future__ import annotations

from datetime import date

import pandas as pd

from services.market_data import MarketData

SYMBOLS = ["SPX", "IXIC", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"]


def one_calendar_prices(market: MarketData, first: date, last: date) -> pd.DataFrame:
    """Every symbol's close on each trading day from ``first`` to ``last``, as a frame by day."""
    price_days = market.trading_days("SPX", first, last)
    for symbol in SYMBOLS:  # the premise of the comparison: one calendar
        assert market.trading_days(symbol, first, last) == price_days
    prices = pd.DataFrame(
        {s: [market.closes(s, d, 1)[0].close for d in price_days] for s in SYMBOLS},
        index=pd.DatetimeIndex([pd.Timestamp(d) for d in price_days]),
    )
    return prices
