"""Price features shared by the agents and sent to the LLM analyst, from daily closes only.

Reads no environment variables.
"""

from __future__ import annotations

import itertools
import math
import statistics

MIN_HISTORY = 61  # 60 daily returns for the longest lookback


def momentum(closes: list[float], days: int) -> float:
    return closes[-1] / closes[-1 - days] - 1.0


def zscore(closes: list[float], days: int) -> float:
    window = closes[-days:]
    spread = statistics.pstdev(window)
    return 0.0 if spread == 0 else (closes[-1] - statistics.fmean(window)) / spread


def realized_vol(closes: list[float], days: int) -> float:
    """Annualised standard deviation of daily log returns."""
    window = closes[-days - 1 :]
    returns = [math.log(b / a) for a, b in itertools.pairwise(window)]
    return statistics.pstdev(returns) * math.sqrt(252) if len(returns) > 1 else 0.0


def regime(mom_60: float, vol_20: float) -> str:
    if vol_20 > 0.35:
        return "high_vol"
    if mom_60 > 0.02:
        return "trend_up"
    if mom_60 < -0.02:
        return "trend_down"
    return "range"


def price_features(closes: list[float]) -> dict[str, float | str] | None:
    """The feature set for one symbol, or ``None`` when there is not enough history yet."""
    if len(closes) < MIN_HISTORY:
        return None
    mom_60 = momentum(closes, 60)
    vol_20 = realized_vol(closes, 20)
    return {
        "momentum_20d": round(momentum(closes, 20), 6),
        "momentum_60d": round(mom_60, 6),
        "zscore_20d": round(zscore(closes, 20), 6),
        "vol_20d": round(vol_20, 6),
        "regime": regime(mom_60, vol_20),
    }
