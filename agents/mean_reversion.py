"""Mean reversion: fade a close that is far from its 20-day mean, unless the market is in turmoil.

Parameters (``agents.toml``, declared in ``PARAMS``): ``horizon`` (trading days), ``entry_z``
(z-score of a full-strength signal).
"""

from __future__ import annotations

import math
from typing import Any

from agents.base import AgentContext, Param, signal
from agents.features import MIN_HISTORY, price_features

PARAMS = {"horizon": Param(int, 5, minimum=1, maximum=250), "entry_z": Param(float, 2.0, positive=True)}


class Agent:
    name = "mean_reversion"

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        params = context.values(PARAMS)
        horizon, entry_z = params["horizon"], params["entry_z"]
        out = []
        for symbol in context.universe:
            features = price_features(context.closes(symbol, MIN_HISTORY))
            if features is None:
                continue
            score = -math.tanh(features["zscore_20d"] / entry_z)
            # Stretched prices keep stretching in a high-volatility regime: trust the fade less there.
            confidence = abs(score) * (0.5 if features["regime"] == "high_vol" else 1.0)
            out.append(signal(context, symbol, score, confidence, features["regime"], horizon))
        return out
