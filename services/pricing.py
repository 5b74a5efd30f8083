"""LLM cost from a versioned, dated price table (USD per 1M input, cached-input and output tokens).

The table ships as ``services/llm_prices.json``; users point ``ALPHATRACE_PRICE_TABLE`` at their own
file (same shape) to override it. A model missing from the table is *unpriced*: ``cost`` returns
``None`` and callers count it, never a silent $0. Dated snapshots such as ``gpt-4o-mini-2024-07-18``
fall back to their base name when the table has no exact entry.

Environment: ``ALPHATRACE_PRICE_TABLE`` (path to a price table JSON file).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.config_error import ConfigError

DEFAULT_PRICE_TABLE = Path(__file__).with_name("llm_prices.json")
ENV_PRICE_TABLE = "ALPHATRACE_PRICE_TABLE"
_DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ModelPrice:
    input: float
    cached_input: float
    output: float


@dataclass(frozen=True)
class PriceTable:
    version: str
    models: dict[str, ModelPrice]
    source_path: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> PriceTable:
        """Argument beats ``ALPHATRACE_PRICE_TABLE`` beats the shipped table."""
        chosen = Path(path or os.environ.get(ENV_PRICE_TABLE) or DEFAULT_PRICE_TABLE)
        try:
            raw = json.loads(chosen.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"price table {chosen} does not exist") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"price table {chosen} is not valid JSON: {exc}") from None
        return cls.from_dict(raw, source=str(chosen))

    @classmethod
    def from_dict(cls, raw: object, source: str = "<dict>") -> PriceTable:
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
            raise ConfigError(f"price table {source}: expected an object with a 'models' object")
        version = raw.get("version")
        if not isinstance(version, str) or not version:
            raise ConfigError(f"price table {source}: 'version' (a date such as 2025-08-15) is required")
        models: dict[str, ModelPrice] = {}
        for name, entry in raw["models"].items():
            if not isinstance(entry, dict):
                raise ConfigError(f"price table {source}: model {name!r} must be an object")
            values = {}
            for key in ("input", "output", "cached_input"):
                value = entry.get(key, entry.get("input") if key == "cached_input" else None)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                    raise ConfigError(f"price table {source}: model {name!r} needs a non-negative number for {key!r}")
                values[key] = float(value)
            models[name] = ModelPrice(**values)
        return cls(version=version, models=models, source_path=source)

    def price_for(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        found = self.models.get(model)
        if found is None:
            found = self.models.get(_DATED_SUFFIX.sub("", model))
        return found

    def cost(self, model: str | None, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float | None:
        """USD for one call, or ``None`` when the model is not in the table.

        ``input_tokens`` includes the cached ones (as OpenAI reports ``prompt_tokens``); the cached
        share is billed at the cached rate.
        """
        price = self.price_for(model)
        if price is None:
            return None
        cached = min(max(cached_input_tokens, 0), max(input_tokens, 0))
        uncached = max(input_tokens, 0) - cached
        return (uncached * price.input + cached * price.cached_input + max(output_tokens, 0) * price.output) / 1_000_000


def format_usd(amount: float | None, missing: str = "\u2013") -> str:
    """The one way a cost in USD is shown (report pages, alpha section): ``$1,234.5678``; a cost
    under $0.0001 with three significant digits (``$0.00000375``), so a real cost never reads
    ``$0.0000``; exactly zero as ``$0``; ``None`` (nothing priced) as ``missing``."""
    if amount is None or not math.isfinite(amount):
        return missing
    if amount == 0:
        return "$0"
    if abs(amount) >= 0.0001:
        return f"${amount:,.4f}"
    digits = 2 - math.floor(math.log10(abs(amount)))
    return f"${amount:.{digits}f}"


def cost_per_day_text(figures: Mapping[str, Any]) -> str:
    """The supervisor's cost figure as its terminal lines and audit text show it: the priced cost a
    day (``format_usd``), then what it leaves out, so simulated or unpriced calls never read as
    "$0.0000": ``$0.0123/day``, ``$0/day (83 simulated calls, not priced)``. Figures from an older
    audit log (no call counts) show the cost alone."""
    per_day = figures.get("cost_per_day_usd")
    text = "n/a" if not isinstance(per_day, (int, float)) or isinstance(per_day, bool) else f"{format_usd(per_day)}/day"
    left_out = [
        f"{count:,} {what}"
        for count, what in ((figures.get("simulated_llm_calls"), "simulated"), (figures.get("unpriced_llm_calls"), "unpriced"))
        if isinstance(count, int) and not isinstance(count, bool) and count > 0
    ]
    return f"{text} ({' and '.join(left_out)} LLM calls, not priced)" if left_out else text
