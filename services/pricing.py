"""LLM cost from a versioned, dated price table (USD per 1M input, cached-input, cache-write, output
and reasoning tokens).

The table ships as ``services/llm_prices.json``; users point ``ALPHATRACE_PRICE_TABLE`` at their own
file (same shape) to override it. A model missing from the table is *unpriced*: ``cost`` returns
``None`` and callers count it, never a silent $0. Dated snapshots such as ``gpt-4o-mini-2024-07-18``
fall back to their base name when the table has no exact entry.

Each model states the date its prices were read (``date``, ISO; default the table's ``version`` when
that is a date) and where (``source``; default the table's ``source``). ``age_warning`` says when the
oldest of them is older than ``ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS`` (default 90), or a model states
no date at all: the report carries that line.

How one call is priced (``cost``), following OpenAI's documented usage: ``prompt_tokens`` counts every
input token, and its breakdowns are parts of it: cached (read) tokens
(``prompt_tokens_details.cached_tokens``) and cache-write tokens (``cache_creation_input_tokens`` as
Anthropic-compatible servers add it, ``prompt_tokens_details.cache_write_tokens``); ``completion_tokens``
counts every output token, reasoning tokens (``completion_tokens_details.reasoning_tokens``) included,
so they are billed once: the reasoning share at ``reasoning_output`` (default the output price), the
rest at ``output``. ``cache_write_input`` defaults to the input price (OpenAI does not charge for cache
writes; Anthropic charges 1.25x input for a 5-minute write, which a table for it states).

Environment: ``ALPHATRACE_PRICE_TABLE`` (path to a price table JSON file);
``ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS`` (``max_age_days``; read by the report).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from services.config_error import ConfigError, env_number

DEFAULT_PRICE_TABLE = Path(__file__).with_name("llm_prices.json")
ENV_PRICE_TABLE = "ALPHATRACE_PRICE_TABLE"
ENV_MAX_AGE_DAYS = "ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS"
DEFAULT_MAX_AGE_DAYS = 90
_DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
# price keys: key -> the key whose value it defaults to when absent (None: required)
_PRICE_KEYS = {"input": None, "output": None, "cached_input": "input", "cache_write_input": "input", "reasoning_output": "output"}


@dataclass(frozen=True)
class ModelPrice:
    input: float
    cached_input: float
    output: float
    cache_write_input: float | None = None  # None: the input price
    reasoning_output: float | None = None  # None: the output price
    date: str = ""  # ISO date the prices were read
    source: str = ""  # where they were read


def _is_iso_date(value: object) -> bool:
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def max_age_days(env: Mapping[str, str] | None = None) -> int:
    """``ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS`` (default 90): a table older than this is warned about."""
    env = os.environ if env is None else env
    return int(env_number(env, ENV_MAX_AGE_DAYS, DEFAULT_MAX_AGE_DAYS, whole=True, unit="days", minimum=1))


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
        table_source = raw.get("source", "")
        models: dict[str, ModelPrice] = {}
        for name, entry in raw["models"].items():
            if not isinstance(entry, dict):
                raise ConfigError(f"price table {source}: model {name!r} must be an object")
            values: dict[str, Any] = {}
            for key, fallback in _PRICE_KEYS.items():
                value = entry.get(key, entry.get(fallback) if fallback else None)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                    raise ConfigError(f"price table {source}: model {name!r} needs a non-negative number for {key!r}")
                values[key] = float(value)
            read_on = entry.get("date", version if _is_iso_date(version) else "")
            if read_on != "" and not _is_iso_date(read_on):
                raise ConfigError(
                    f"price table {source}: model {name!r}: 'date' must be the ISO date its prices were read, got {read_on!r}"
                )
            where = entry.get("source", table_source)
            if not isinstance(where, str):
                raise ConfigError(f"price table {source}: model {name!r}: 'source' must be text (where its prices were read)")
            models[name] = ModelPrice(**values, date=str(read_on), source=where)
        return cls(version=version, models=models, source_path=source)

    def oldest(self) -> tuple[str, str] | None:
        """(model, date) of the model whose prices were read longest ago (an undated one first, date
        ``""``); ``None`` for an empty table."""
        if not self.models:
            return None
        name = min(self.models, key=lambda model: (self.models[model].date, model))
        return name, self.models[name].date

    def age_warning(self, today: date, max_age: int) -> str | None:
        """The warning line when a model's prices are older than ``max_age`` days on ``today``."""
        oldest = self.oldest()
        if oldest is None:
            return None
        model, read_on = oldest
        if not read_on:
            return (
                f"the LLM price table ({self.version}) states no date for {model}'s prices (and its version is not a date): "
                f"costs may be out of date; give each model a 'date' in {ENV_PRICE_TABLE}"
            )
        age = (today - date.fromisoformat(read_on)).days
        if age <= max_age:
            return None
        return (
            f"the LLM price table ({self.version}) is {age} days old: {model}'s prices were read on {read_on}, "
            f"more than {max_age} days ago ({ENV_MAX_AGE_DAYS}); costs may be wrong: check and update {ENV_PRICE_TABLE}"
        )

    def price_for(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        found = self.models.get(model)
        if found is None:
            found = self.models.get(_DATED_SUFFIX.sub("", model))
        return found

    def cost(
        self,
        model: str | None,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_input_tokens: int = 0,
        reasoning_output_tokens: int = 0,
    ) -> float | None:
        """USD for one call, or ``None`` when the model is not in the table.

        ``input_tokens`` includes the cached and cache-write ones (as OpenAI reports ``prompt_tokens``),
        ``output_tokens`` the reasoning ones (as ``completion_tokens``): each share is billed once, at
        its own rate (the module's docstring). A share larger than its total is capped at the total.
        """
        price = self.price_for(model)
        if price is None:
            return None
        tokens_in, tokens_out = max(input_tokens, 0), max(output_tokens, 0)
        cached = min(max(cached_input_tokens, 0), tokens_in)
        written = min(max(cache_write_input_tokens, 0), tokens_in - cached)
        reasoning = min(max(reasoning_output_tokens, 0), tokens_out)
        write_rate = price.input if price.cache_write_input is None else price.cache_write_input
        reasoning_rate = price.output if price.reasoning_output is None else price.reasoning_output
        usd = (tokens_in - cached - written) * price.input + cached * price.cached_input + written * write_rate
        usd += (tokens_out - reasoning) * price.output + reasoning * reasoning_rate
        return usd / 1_000_000


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
