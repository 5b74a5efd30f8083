"""The research tools' contract: the names, descriptions and JSON-schema parameters of the tools over
the market-data seam that a tool-calling agent offers the model (``agents/research_analyst.py``
implements them, as of the run's date only), in the OpenAI ``tools`` wire format.

Written once here because two sides speak it: the agent that executes the tools and the simulated
model that calls them (``services/simulated_llm.py``). The user prompt names the symbols to judge
after ``SYMBOLS_MARKER`` as a JSON list.

Reads no environment variables.
"""

from __future__ import annotations

from typing import Any

TOOL_PRICE_FEATURES = "price_features"
TOOL_RECENT_CLOSES = "recent_closes"
TOOL_MARKET_REGIME = "market_regime"
MAX_RECENT_DAYS = 60
SYMBOLS_MARKER = "SYMBOLS_JSON:"

_SYMBOL = {"type": "string", "description": "a symbol of the universe, e.g. SPX"}

# name -> (description, JSON schema of the arguments)
TOOL_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    TOOL_PRICE_FEATURES: (
        "Price features of one symbol from daily closes up to the as-of date: 20- and 60-day momentum, "
        "20-day z-score of the close, 20-day annualised volatility and the symbol's regime.",
        {"type": "object", "properties": {"symbol": _SYMBOL}, "required": ["symbol"], "additionalProperties": False},
    ),
    TOOL_RECENT_CLOSES: (
        f"The last daily closes of one symbol up to the as-of date, oldest first (at most {MAX_RECENT_DAYS} days).",
        {
            "type": "object",
            "properties": {"symbol": _SYMBOL, "days": {"type": "integer", "minimum": 1, "maximum": MAX_RECENT_DAYS}},
            "required": ["symbol", "days"],
            "additionalProperties": False,
        },
    ),
    TOOL_MARKET_REGIME: (
        "The regime of the whole universe as of the date: how many symbols are in each regime and the "
        "breadth (the share of symbols with a positive 60-day momentum).",
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
}
