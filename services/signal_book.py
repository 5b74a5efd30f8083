"""The recent-signals seam: what each agent signalled for which as-of date, in this process.

An agent that combines others (``agents/ensemble.py``) reads its members' recorded signals from here
instead of recomputing them, so the LLM analyst's call (and its cost) happens once, in the analyst's
own run, and killing the analyst stops all LLM spend. The scheduler records every valid signal of a
run (the validation is ``alpha.emit.signal_attributes``, the one rule) by (agent, as-of date, symbol);
a later signal for the same key replaces the earlier one (live mode: the latest of the day wins).

``SignalBook`` is the interface handed to agents through ``AgentContext``; ``RecentSignals`` is the
real, thread-safe, in-process implementation, keeping the last ``keep_days`` as-of dates per agent
so a long live run or a year of replay holds bounded memory.

Reads no environment variables.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol

from alpha.emit import InvalidSignal, signal_attributes
from otel import semconv

DEFAULT_KEEP_DAYS = 5


class SignalBook(Protocol):
    def record(self, agent: str, result: Any, default_as_of: date | str | None = None) -> int:
        """Record the valid signals of ``result`` (a signal or a list); returns how many."""
        ...

    def signals_of(self, agent: str, as_of: date) -> dict[str, Mapping[str, Any]]:
        """``agent``'s latest valid signal per symbol for ``as_of``; empty when it has none."""
        ...


class RecentSignals:
    """The in-process ``SignalBook``: a lock, and a few as-of dates per agent."""

    def __init__(self, keep_days: int = DEFAULT_KEEP_DAYS) -> None:
        if keep_days < 1:
            raise ValueError("keep_days must be at least 1")
        self._keep_days = keep_days
        self._by_agent: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def record(self, agent: str, result: Any, default_as_of: date | str | None = None) -> int:
        default = default_as_of.isoformat() if isinstance(default_as_of, date) else default_as_of
        valid: list[tuple[str, str, dict[str, Any]]] = []
        for item in result if isinstance(result, list) else [result]:
            try:
                attributes = signal_attributes(item, default_as_of=default)
            except InvalidSignal:
                continue  # recorded as alphatrace.alpha.signal.invalid by emit_alpha_signal; nobody combines it
            valid.append((attributes[semconv.ALPHA_AS_OF], attributes[semconv.ALPHA_SYMBOL], dict(item)))
        with self._lock:
            days = self._by_agent.setdefault(agent, {})
            for as_of, symbol, item in valid:
                item["as_of"] = as_of
                days.setdefault(as_of, {})[symbol] = item
            for old in sorted(days)[: max(0, len(days) - self._keep_days)]:
                del days[old]
        return len(valid)

    def signals_of(self, agent: str, as_of: date) -> dict[str, Mapping[str, Any]]:
        with self._lock:
            return dict(self._by_agent.get(agent, {}).get(as_of.isoformat(), {}))
