"""The clock seam: what "now" is for a run.

``WallClock`` is live mode. ``ReplayClock`` is the demo's: the scheduler moves it one trading day per
cycle, agents see market data only up to that day, and signals carry it as their as-of date, so a
later step can score them against what happened next. Tests pass their own clock; nothing
monkeypatches ``datetime``.

Reads no environment variables.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def as_of(self) -> date:
        """The market date agents may see data up to (inclusive)."""
        ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def as_of(self) -> date:
        return self.now().date()


class ReplayClock:
    """A clock that stands on one historical trading day until the scheduler advances it."""

    def __init__(self, day: date) -> None:
        self._day = day
        self._lock = threading.Lock()

    def set(self, day: date) -> None:
        with self._lock:
            self._day = day

    def as_of(self) -> date:
        with self._lock:
            return self._day

    def now(self) -> datetime:
        # The close of the replayed day (21:00 UTC, after the US close): runs happen after the data.
        day = self.as_of()
        return datetime(day.year, day.month, day.day, 21, 0, tzinfo=UTC)
