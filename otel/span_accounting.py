"""Counting every span from end to export, so a lost span is a number users see, never silence.

The SDK's ``BatchSpanProcessor`` drops the oldest span when its queue is full with one rate-limited
warning and no counter, and its OTLP exporter drops a batch after its retries with a log line. Two
tiny wrappers count around it: ``CountingSpanProcessor`` counts spans that ended (and were sampled),
``CountingSpanExporter`` counts spans handed to the exporter and the outcome. A span that ends while
the batch queue is full evicts the oldest one: the processor sees the full queue and counts a drop.
After shutdown, ``ended == exported + export_failed + dropped`` (up to the rare race of two threads
ending spans at the same instant on a full queue).

``SpanAccounting.snapshot()`` feeds the root span's ``alphatrace.telemetry.*`` attributes (so the
meta report can show losses from the spans that did arrive), a rate-limited warning while running,
and the summary line at shutdown.

Reads no environment variables.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel.internal_errors import report_internal_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountingSnapshot:
    ended: int
    exported: int
    export_failed: int
    dropped: int
    queued: int

    @property
    def lost(self) -> int:
        return self.dropped + self.export_failed

    @property
    def in_flight(self) -> int:
        """Handed to the exporter and not finished yet (lost if the process exits now)."""
        return max(0, self.ended - self.exported - self.export_failed - self.dropped - self.queued)

    def describe(self) -> str:
        text = (
            f"{self.ended} spans ended, {self.exported} exported, {self.export_failed} failed to export, "
            f"{self.dropped} dropped by the full queue, {self.queued} still queued"
        )
        return text + (f", {self.in_flight} in flight" if self.in_flight else "")


class SpanAccounting:
    def __init__(self, clock: Callable[[], float] = time.monotonic, warn_every_seconds: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._ended = 0
        self._exported = 0
        self._failed = 0
        self._dropped = 0
        self._queue_length: Callable[[], int] = lambda: 0
        self._clock = clock
        self._warn_every = warn_every_seconds
        self._warned_at: float | None = None
        self._warned_lost = 0

    def watch_queue(self, queue_length: Callable[[], int]) -> None:
        self._queue_length = queue_length

    def span_ended(self, evicts_one: bool = False) -> None:
        with self._lock:
            self._ended += 1
            if evicts_one:
                self._dropped += 1

    def export_finished(self, count: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self._exported += count
            else:
                self._failed += count

    def snapshot(self) -> AccountingSnapshot:
        with self._lock:
            ended, exported, failed, dropped = self._ended, self._exported, self._failed, self._dropped
        try:
            queued = self._queue_length()
        except Exception:  # the queue is the SDK's private detail; never let it break a run
            queued = 0
        return AccountingSnapshot(ended, exported, failed, dropped, queued)

    def warn_if_losing(self) -> AccountingSnapshot:
        """Log a warning when spans were lost since the last one, at most once per interval."""
        snap = self.snapshot()
        now = self._clock()
        if snap.lost > self._warned_lost and (self._warned_at is None or now - self._warned_at >= self._warn_every):
            logger.warning("alphatrace telemetry is losing spans: %s", snap.describe())
            self._warned_at = now
            self._warned_lost = snap.lost
        return snap


def batch_queue(processor: SpanProcessor) -> collections.deque | None:
    """The queue of a ``BatchSpanProcessor`` (an SDK detail; ``None`` where it is not visible)."""
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return queue if isinstance(queue, collections.deque) and queue.maxlen else None


class CountingSpanProcessor(SpanProcessor):
    """Counts ended, sampled spans, and the evictions a full batch queue is about to make, then hands
    each span to the wrapped processor."""

    def __init__(self, inner: SpanProcessor, accounting: SpanAccounting) -> None:
        self._inner = inner
        self._accounting = accounting
        self._queue = batch_queue(inner)
        if self._queue is not None:
            queue = self._queue
            accounting.watch_queue(lambda: len(queue))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            full = self._queue is not None and len(self._queue) >= self._queue.maxlen
            self._accounting.span_ended(evicts_one=full)
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingSpanExporter(SpanExporter):
    """Counts what the wrapped exporter accepted and refused; an exception becomes ``FAILURE``."""

    def __init__(self, inner: SpanExporter, accounting: SpanAccounting) -> None:
        self._inner = inner
        self._accounting = accounting

    @property
    def inner(self) -> SpanExporter:
        return self._inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
            self._accounting.export_finished(len(spans), ok=False)
            report_internal_error(logger, f"{type(self._inner).__name__} raised while exporting {len(spans)} spans")
            return result
        self._accounting.export_finished(len(spans), ok=result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
