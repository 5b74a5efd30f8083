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

A stalled exporter (a collector that stopped answering, a trace file nobody drains) loses nothing
until the queue fills, so it is watched too: ``CountingSpanExporter`` stamps each export's start, and
``warn_if_losing`` warns (rate-limited) once one has been in progress for ``stall_seconds``, then logs
when it finishes. ``warn_if_losing`` runs at the end of every run and from ``Watchdog``, a daemon
thread that only reads the counters, so the warning comes while no run ends and never waits on the
exporter.

The two wrappers are also where the export hand-off (``otel/export_handoff.py``) hooks in:
``CountingSpanProcessor`` asks it, when a root span ends with the queue backed up, to give the
export thread its turn; ``CountingSpanExporter`` tells it when an export finishes.

Reads no environment variables (``otel/provider.py`` reads ``ALPHATRACE_EXPORT_STALL_SECONDS``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel.export_handoff import ExportHandoff, batch_queue
from otel.internal_errors import report_internal_error
from otel.rate_limit import DEFAULT_EVERY_SECONDS, RateLimit

logger = logging.getLogger(__name__)

DEFAULT_STALL_SECONDS = 30.0


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
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        warn_every_seconds: float = DEFAULT_EVERY_SECONDS,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        exporter_label: str = "the exporter",
    ) -> None:
        self._lock = threading.Lock()
        self._ended = 0
        self._exported = 0
        self._failed = 0
        self._dropped = 0
        self._queue_length: Callable[[], int] = lambda: 0
        self._clock = clock
        self._loss_rate = RateLimit(warn_every_seconds, clock)
        self._warned_lost = 0
        self.stall_seconds = stall_seconds
        self._exporter_label = exporter_label
        self._stall_rate = RateLimit(warn_every_seconds, clock)
        self._exports: dict[int, tuple[float, int]] = {}  # in progress: token -> (started, spans)
        self._next_token = 0
        self._stall_warned: set[int] = set()
        # Called with (snapshot, what happened) when a loss or a stall is warned about (at most once
        # per interval each): the scheduler's telemetry-loss alert. Never blocks, never raises here.
        self.loss_listeners: list[Callable[[AccountingSnapshot, str], None]] = []

    @property
    def warned_lost(self) -> int:
        """The losses (dropped + failed) the last loss warning counted (see ``losses``)."""
        return self._warned_lost

    def losses(self) -> tuple[int, int]:
        """(dropped, failed to export) so far: two reads, no lock (each count is exact; a run ending
        while another span is dropped may see one of them a moment early)."""
        return self._dropped, self._failed

    def watch_queue(self, queue_length: Callable[[], int]) -> None:
        self._queue_length = queue_length

    def span_ended(self, evicts_one: bool = False) -> None:
        with self._lock:
            self._ended += 1
            if evicts_one:
                self._dropped += 1

    def export_started(self, count: int) -> int:
        """Stamps an export's start; pass the token to ``export_finished``."""
        with self._lock:
            self._next_token += 1
            self._exports[self._next_token] = (self._clock(), count)
            return self._next_token

    def export_finished(self, count: int, ok: bool, token: int | None = None) -> None:
        with self._lock:
            if ok:
                self._exported += count
            else:
                self._failed += count
            started, _ = self._exports.pop(token, (None, 0))
            was_stalled = token in self._stall_warned
            if was_stalled:
                self._stall_warned.discard(token)
                if not self._stall_warned:
                    self._stall_rate.reset()  # the next stall is news at once
        if was_stalled and started is not None:
            logger.warning(
                "alphatrace telemetry: %s finished the stalled export after %.0f s (%s)",
                self._exporter_label,
                self._clock() - started,
                "exported" if ok else "failed",
            )

    def snapshot(self) -> AccountingSnapshot:
        with self._lock:
            ended, exported, failed, dropped = self._ended, self._exported, self._failed, self._dropped
        try:
            queued = self._queue_length()
        except Exception:  # the queue is the SDK's private detail; never let it break a run
            queued = 0
        return AccountingSnapshot(ended, exported, failed, dropped, queued)

    def warn_if_losing(self) -> AccountingSnapshot:
        """Warn when spans were lost since the last warning, or an export is stalled; each at most
        once per interval. Cheap and never blocks on the exporter: runs call it as they end."""
        snap = self.snapshot()
        with self._lock:
            losing = snap.lost > self._warned_lost and self._loss_rate.ready()
            if losing:
                self._warned_lost = snap.lost
            stalled = self._stalled_export()
        if losing:
            logger.warning("alphatrace telemetry is losing spans: %s", snap.describe())
            self._tell(snap, f"telemetry is losing spans ({self._exporter_label})")
        if stalled:
            seconds, count = stalled
            logger.warning(
                "alphatrace telemetry: %s has been stuck in one export of %d spans for %.0f s (more than %g s); "
                "new spans wait in the queue and are dropped once it is full: %s",
                self._exporter_label,
                count,
                seconds,
                self.stall_seconds,
                snap.describe(),
            )
            self._tell(snap, f"{self._exporter_label} has been stuck in one export of {count} spans for {seconds:.0f} s")
        return snap

    def _tell(self, snap: AccountingSnapshot, what: str) -> None:
        for listener in list(self.loss_listeners):
            try:
                listener(snap, what)
            except Exception:
                report_internal_error(logger, "a telemetry-loss listener failed")

    def _stalled_export(self) -> tuple[float, int] | None:
        """The oldest export in progress for ``stall_seconds`` or more, if one is due a warning (lock held)."""
        if not self._exports:
            return None
        token, (started, count) = min(self._exports.items(), key=lambda item: item[1][0])
        seconds = self._clock() - started
        if seconds < self.stall_seconds or not self._stall_rate.ready():
            return None
        self._stall_warned.add(token)
        return seconds, count


class Watchdog:
    """A daemon thread running ``accounting.warn_if_losing()`` every ``every_seconds``, so a stalled
    export or a loss is reported while no run ends. It only reads counters: it never blocks anyone."""

    def __init__(self, accounting: SpanAccounting, every_seconds: float) -> None:
        self._accounting = accounting
        self._every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alphatrace-telemetry-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._accounting.warn_if_losing()
            except Exception:
                report_internal_error(logger, "the telemetry watchdog failed")


class CountingSpanProcessor(SpanProcessor):
    """Counts ended, sampled spans, and the evictions a full batch queue is about to make, then hands
    each span to the wrapped processor. When a root span (a run) ends and ``handoff`` is given, the
    thread gives the export thread its turn if the queue has backed up (``otel/export_handoff.py``)."""

    def __init__(self, inner: SpanProcessor, accounting: SpanAccounting, handoff: ExportHandoff | None = None) -> None:
        self._inner = inner
        self._accounting = accounting
        self._queue = batch_queue(inner)
        self._handoff = handoff if self._queue is not None else None
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
        handoff = self._handoff
        if handoff is not None and span.parent is None and len(self._queue) >= handoff.high_water:
            try:
                handoff.run_ended()
            except Exception:
                report_internal_error(logger, "the export hand-off failed")

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingSpanExporter(SpanExporter):
    """Counts what the wrapped exporter accepted and refused; an exception becomes ``FAILURE``.
    Each finished export is told to ``handoff`` (threads waiting for the export thread go on)."""

    def __init__(self, inner: SpanExporter, accounting: SpanAccounting, handoff: ExportHandoff | None = None) -> None:
        self._inner = inner
        self._accounting = accounting
        self.handoff = handoff  # set by otel/provider.py once the batch processor exists

    @property
    def inner(self) -> SpanExporter:
        return self._inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        token = self._accounting.export_started(len(spans))
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
            self._finished(len(spans), False, token)
            report_internal_error(logger, f"{type(self._inner).__name__} raised while exporting {len(spans)} spans")
            return result
        self._finished(len(spans), result is SpanExportResult.SUCCESS, token)
        return result

    def _finished(self, count: int, ok: bool, token: int) -> None:
        self._accounting.export_finished(count, ok=ok, token=token)
        if self.handoff is not None:
            self.handoff.export_finished()

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
