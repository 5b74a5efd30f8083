"""SIGINT and SIGTERM stop the fleet gracefully (``StopSignals``): in-flight runs finish and spans flush.

Reads no environment variables.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

logger = logging.getLogger("alphatrace.scheduler")


class StopSignals:
    """SIGINT and SIGTERM stop the fleet gracefully: the first one unwinds the main thread
    (``KeyboardInterrupt`` / ``SystemExit``), in-flight runs finish and spans are flushed.

    Both handlers are installed explicitly. A process started with SIGINT ignored (any background job
    of a non-interactive shell: POSIX says so, and Python then leaves it ignored) would otherwise
    never see ``kill -INT`` and run on until SIGKILL, losing whatever was still queued. Once stopping
    (a first signal, or the normal end of a bounded run), a signal is logged, not raised, so it cannot
    abort the flush halfway: the stop is bounded by the runs in flight and ``Telemetry.shutdown``'s
    10 s, and SIGKILL forces it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stopping = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping:
            logger.warning("%s while stopping: in-flight runs finish and spans flush first", signal.Signals(signum).name)
            return
        self.stopping = True
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)
