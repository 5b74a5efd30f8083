"""Keeping the export thread fed with the GIL when agent threads keep the process busy.

Why it is needed (measured: ``bench/gil_handoff.py``, ``bench/export_keeps_up.py``,
``docs/reliability.md``). The SDK's ``BatchSpanProcessor`` exports on its own thread, which needs
the GIL to run. CPython hands the GIL to a waiting thread in two ways: the holder releases it
voluntarily (a system call, a blocking wait), or the waiter, after ``sys.getswitchinterval()``
(5 ms) with no change of holder, asks the holder to drop it (a forced switch). An agent thread that
is busy but makes a short system call more often than every 5 ms (``uuid4()`` reads
``os.urandom``, the ``openai`` client makes an idempotency key that way, the kill switch
``stat``s its file) defeats both: each short release wakes the waiting export thread, which
restarts its 5 ms wait, and the agent thread takes the GIL back before the woken thread is
scheduled. So the drop request never comes and the export thread runs a few times a second: one
agent thread running runs back to back exported 0 spans in 12 s, and a longer loop filled the
16,384-span queue. A real agent waiting on the network releases the GIL for milliseconds, and the
export thread runs then; a rule-based agent, a replay or a busy thread pool never does.

What this does. When a run ends (its root span ends) while the batch queue holds at least
``high_water`` spans (two export batches: the export thread has fallen behind), the thread that
ended it gives the GIL to the export thread: it waits on a condition until the exporter finishes
an export, at most ``max_wait`` seconds (a few batches' worth of encoding). While every busy thread
waits, the export thread has the interpreter to itself and the queue drains; the threads then go on.
The check costs a queue length on every root span end; with the queue short (every idle-gap fleet),
nothing else happens.

It never waits on the exporter's I/O for long: a wait that ends without an export finished, while
the export thread used no CPU (it waits on a hung collector, a full disk, or is not scheduled), is
not repeated for a while (``quiet_seconds``, doubling up to ``max_quiet_seconds`` while it stays
so, reset by the next finished export). A stalled exporter therefore costs a busy process at most
one ``max_wait`` per quiet period, and its losses are counted as before
(``otel/span_accounting.py``).

Reads no environment variables.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_WAIT_SECONDS = 0.05
DEFAULT_QUIET_SECONDS = 0.25
DEFAULT_MAX_QUIET_SECONDS = 8.0
MIN_EXPORT_CPU_NS = 100_000  # the export thread used at least this much CPU: it runs, it is not stuck


def batch_queue(processor: object) -> collections.deque | None:
    """The queue of an SDK ``BatchSpanProcessor`` (a detail of the SDK; None where not visible)."""
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return queue if isinstance(queue, collections.deque) and queue.maxlen else None


def thread_cpu_ns(thread: threading.Thread | None) -> int | None:
    """CPU time a live thread has used (Linux and most Unixes), else None."""
    ident = thread.ident if thread is not None else None
    if ident is None or not thread.is_alive():
        return None
    try:
        return time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
    except (AttributeError, OSError, ValueError):
        return None


def batch_worker(processor: object) -> threading.Thread | None:
    """The export thread of an SDK ``BatchSpanProcessor`` (a detail of the SDK; None where not
    visible). Read at each use: after a fork the SDK starts a new one."""
    thread = getattr(getattr(processor, "_batch_processor", None), "_worker_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


def batch_size(processor: object, default: int = 512) -> int:
    size = getattr(getattr(processor, "_batch_processor", None), "_max_export_batch_size", None)
    return size if isinstance(size, int) and size > 0 else default


def high_water_mark(queue_size: int, export_batch_size: int) -> int:
    """Two export batches, but at most half the queue (so a small queue still has room)."""
    return max(1, min(2 * export_batch_size, queue_size // 2))


@dataclass
class HandoffStats:
    """What the hand-off did, for benchmarks and tests (threads add to it without a lock: under heavy
    concurrency a count may miss an increment)."""

    waits: int = 0  # runs that waited for the export thread
    waited_seconds: float = 0.0
    exports_seen: int = 0  # waits that ended because an export finished
    stuck: int = 0  # waits that ended with the export thread not running (then quiet for a while)


class ExportHandoff:
    """Agent threads give the GIL to the export thread when the batch queue backs up."""

    def __init__(
        self,
        queue_length: Callable[[], int],
        high_water: int,
        worker_cpu_ns: Callable[[], int | None] = lambda: None,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        quiet_seconds: float = DEFAULT_QUIET_SECONDS,
        max_quiet_seconds: float = DEFAULT_MAX_QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue_length = queue_length
        self.high_water = high_water
        self._worker_cpu_ns = worker_cpu_ns
        self.max_wait_seconds = max_wait_seconds
        self._quiet_seconds = quiet_seconds
        self._max_quiet_seconds = max_quiet_seconds
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._finished = 0  # exports finished so far
        self._quiet_until = 0.0
        self._stuck_in_a_row = 0
        self.stats = HandoffStats()
        if hasattr(os, "register_at_fork"):
            weak = weakref.ref(self)

            def _after_in_child() -> None:
                handoff = weak()
                if handoff is not None:
                    handoff._cond = threading.Condition(threading.Lock())

            os.register_at_fork(after_in_child=_after_in_child)

    def export_finished(self) -> None:
        """The export thread finished an export (delivered or not): wake the threads waiting."""
        with self._cond:
            self._finished += 1
            self._stuck_in_a_row = 0
            self._quiet_until = 0.0
            self._cond.notify_all()

    def run_ended(self) -> None:
        """At the end of a run: if export has fallen behind, wait for it (bounded), as above."""
        if self._queue_length() < self.high_water:
            return
        started = self._clock()
        if started < self._quiet_until:
            return
        cpu_before = self._worker_cpu_ns()
        with self._cond:
            seen = self._finished
            finished = self._cond.wait_for(lambda: self._finished != seen, self.max_wait_seconds)
        waited = self._clock() - started
        stats = self.stats
        stats.waits += 1
        stats.waited_seconds += waited
        if finished:
            stats.exports_seen += 1
            return
        cpu_after = self._worker_cpu_ns()
        if cpu_before is not None and cpu_after is not None and cpu_after - cpu_before >= MIN_EXPORT_CPU_NS:
            return  # it ran, a batch takes longer than one wait: the next run end waits again
        # It did not run while it could: it waits on I/O or is not scheduled. Do not ask again soon.
        with self._cond:
            if self._finished == seen:
                self._stuck_in_a_row += 1
                quiet = min(self._max_quiet_seconds, self._quiet_seconds * 2 ** (self._stuck_in_a_row - 1))
                self._quiet_until = self._clock() + quiet
        stats.stuck += 1


def export_handoff_for(processor: object) -> ExportHandoff | None:
    """The hand-off for an SDK ``BatchSpanProcessor`` (None for a processor without a visible queue,
    such as the ``SimpleSpanProcessor`` tests use)."""
    queue = batch_queue(processor)
    if queue is None:
        return None
    return ExportHandoff(
        queue.__len__,
        high_water_mark(queue.maxlen, batch_size(processor)),
        worker_cpu_ns=lambda: thread_cpu_ns(batch_worker(processor)),
    )
