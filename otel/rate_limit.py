"""The one rate limit for alphatrace's own warnings while running (losses, a failing trace file, a
stalled export): the first report at once, then at most one per interval, on a clock tests can fake.

Reads no environment variables.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_EVERY_SECONDS = 60.0


class RateLimit:
    def __init__(self, every_seconds: float = DEFAULT_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every_seconds
        self.clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        """True (and counted as a report) if nothing was reported within the interval."""
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            return False
        self._last = now
        return True

    def reset(self) -> None:
        """The next ``ready()`` is true: a new episode (a new cause, a recovery) reports at once."""
        self._last = None
