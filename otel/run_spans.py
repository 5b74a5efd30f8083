"""The one span processor alphatrace puts on the agent's thread, and run root spans finished on the
export thread.

``RunSpanProcessor`` is ``CountingSpanProcessor`` (counting, the export hand-off) plus
``RunAttributesSpanProcessor``'s stamping, in one processor: each span start and end is one call
from the SDK instead of two. It also takes work off the agent's thread. A run's root span gets,
after it started, the run's alpha signals (``alpha/emit.py``), maybe an ``exception`` event, and
its outcome and totals (``otel/agent_runs.py``). Through ``Span.add_event`` and
``Span.set_attributes`` the SDK checks every value of them again on the agent's thread (a
``BoundedAttributes`` per event, about 11 µs on Python 3.11); they are already plain, checked
values. So, as the run's root starts, the processor tells the run to keep them
(``RunTelemetry.defer_root``), and as it ends hands the batch processor a ``RunRootSpan``: the span as
it ended plus those values, which it attaches the first time an exporter reads its attributes or
events (on the export thread), with the provider's ``SpanLimits``: through the SDK's ``BoundedAttributes``
/ ``BoundedList`` where they would change anything (a list value, a limit reached), else as the
plain dicts they are, which costs the export thread less than the SDK's check would have cost the
agent's. Exporters see the same span as before: the same attributes in the same
order (a key set again moves to the end, as ``set_attributes`` does), events in the order they were
added (kept ones and ones added to the span directly are merged by timestamp), the same limits and
dropped counts.

The root span's own first attributes (agent name, run id, as-of date) are kept the same way, and
put first: they are not on the live span, so a sampler does not see them (the SDK's samplers,
``OTEL_TRACES_SAMPLER``, look at the trace id and the parent only). What stays on the agent's
thread: the status, and what other code sets on or adds to the span directly.

A failure while attaching (a bug: the values are plain and checked) is reported
(``otel/internal_errors.py``) and the span is exported as it ended (name, ids, times, status and
what was set on it directly, without what the run kept); it never reaches the run.

``RunRootSpan`` keeps the ended span's fields (``ReadableSpan`` keeps its attributes and events in
``_attributes`` and ``_events``, which its properties and ``to_json`` read; the test in
``tests/test_run_spans.py`` checks the result against spans finished the direct way).

Reads no environment variables (``SpanLimits()`` reads the SDK's ``OTEL_*_LIMIT`` variables).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanLimits, SpanProcessor
from opentelemetry.sdk.util import BoundedList

from otel.export_handoff import ExportHandoff
from otel.internal_errors import report_internal_error
from otel.run_context import RunTelemetry, stamp_run_attributes
from otel.span_accounting import CountingSpanProcessor, SpanAccounting

logger = logging.getLogger(__name__)

DeferredEvent = tuple[str, dict[str, Any], int]  # name, attributes, timestamp (ns)


class RunRootSpan(ReadableSpan):
    """A run's root span as it ended, with the events and attributes the run kept for it; they are
    attached (validated, bounded) the first time its attributes or events are read."""

    def __init__(
        self,
        ended: ReadableSpan,
        events: Sequence[DeferredEvent],
        first: dict[str, Any] | None,
        last: dict[str, Any] | None,
        limits: SpanLimits,
    ) -> None:
        self.__dict__.update(ended.__dict__)  # the ended span's fields, as they are (one C-level copy)
        self._deferred: tuple | None = (self._attributes, self._events, tuple(events), first, last, limits)

    def _complete(self) -> None:
        deferred = self._deferred
        if deferred is None:
            return
        try:
            attributes, events = complete(*deferred)
        except Exception:
            self._deferred = None  # exported as it ended; reported once
            report_internal_error(logger, "could not attach a run's deferred events and attributes to its root span")
            return
        # Computed from the originals kept in ``_deferred``: a second reader racing this one gets
        # the same result, never the updates twice.
        self._attributes, self._events = attributes, events
        self._deferred = None

    @property
    def attributes(self) -> Any:
        self._complete()
        return super().attributes

    @property
    def events(self) -> Sequence[Event]:
        self._complete()
        return super().events

    @property
    def dropped_attributes(self) -> int:
        self._complete()
        return super().dropped_attributes

    @property
    def dropped_events(self) -> int:
        self._complete()
        return super().dropped_events

    def to_json(self, indent: int | None = 4) -> str:
        self._complete()
        return super().to_json(indent)


def complete(
    live_attributes: Any,
    live_events: Any,
    events: Sequence[DeferredEvent],
    first: dict[str, Any] | None,
    last: dict[str, Any] | None,
    limits: SpanLimits,
) -> tuple[Any, Any]:
    """The root span's attributes and events with the kept ones attached, as ``start_span``'s
    attributes (``first``), ``set_attributes`` at the end (``last``) and ``add_event`` on the span
    would have left them."""
    if first or last:
        plain = dict(first) if first else {}
        for updates in (live_attributes, last):
            if updates:
                for key in updates:
                    plain.pop(key, None)  # a key set again moves to the end, as in BoundedAttributes
                plain.update(updates)
        dropped = getattr(live_attributes, "dropped", 0)
        if not dropped and _within_limits(plain, limits.max_span_attributes, limits.max_span_attribute_length):
            merged_attributes = plain
        else:
            # Set one by one, in the order they were set, so a limit drops what it would have dropped.
            staged = BoundedAttributes(limits.max_span_attributes, immutable=False, max_value_len=limits.max_span_attribute_length)
            for updates in (first, live_attributes, last):
                if updates:
                    for key, value in updates.items():
                        staged[key] = value
            merged_attributes = BoundedAttributes(limits.max_span_attributes, staged, immutable=True)
            merged_attributes.dropped = staged.dropped + dropped
    else:
        merged_attributes = live_attributes
    if events:
        made = [Event(name, _event_attributes(values, limits), timestamp=timestamp) for name, values, timestamp in events]
        existing = list(live_events) if live_events else []
        dropped = getattr(live_events, "dropped", 0)
        max_events = limits.max_events
        if not existing and not dropped and (max_events is None or len(made) <= max_events):
            merged_events = tuple(made)  # nothing to bound: what ``events`` returns, without a copy
        else:
            merged_events = BoundedList(max_events)
            merged_events.dropped = dropped
            # Both lists are in the order their events were added; merging by timestamp keeps each
            # list's order and puts the span's own events first on a tie.
            for event in heapq.merge(existing, made, key=_timestamp) if existing else made:
                merged_events.append(event)
    else:
        merged_events = live_events
    return merged_attributes, merged_events


_PLAIN = frozenset({str, bool, int, float})


def _within_limits(attributes: dict[str, Any], max_count: int | None, max_length: int | None) -> bool:
    """True when ``BoundedAttributes`` would keep ``attributes`` exactly as they are (non-empty
    string keys; str, bool, int or float values; none too long, not too many): then the plain dict
    is what the exporter gets, as checked, without the copy."""
    if max_count is not None and len(attributes) > max_count:
        return False
    plain = _PLAIN
    for key, value in attributes.items():
        kind = type(value)
        if kind not in plain or type(key) is not str or not key:
            return False
        if kind is str and max_length is not None and len(value) > max_length:
            return False
    return True


def _event_attributes(values: dict[str, Any], limits: SpanLimits) -> Any:
    """An event's attributes as ``Span.add_event`` leaves them: the plain dict when the SDK's check
    would keep it as it is, else the SDK's ``BoundedAttributes`` (lists become tuples, limits apply)."""
    if _within_limits(values, limits.max_event_attributes, limits.max_attribute_length):
        return values
    return BoundedAttributes(limits.max_event_attributes, values, immutable=True, max_value_len=limits.max_attribute_length)


def _timestamp(event: Event) -> int:
    return event.timestamp


class RunSpanProcessor(CountingSpanProcessor):
    """Counting and the hand-off (``CountingSpanProcessor``), the run's agent name and run id on
    every span of a run (``RunAttributesSpanProcessor``), and run root spans finished on the export
    thread (``RunRootSpan``)."""

    def __init__(
        self,
        inner: SpanProcessor,
        accounting: SpanAccounting,
        handoff: ExportHandoff | None = None,
        limits: SpanLimits | None = None,
    ) -> None:
        super().__init__(inner, accounting, handoff)
        self._limits = limits if limits is not None else SpanLimits()
        self._roots: dict[int, RunTelemetry] = {}  # span id -> its run, while a run's root is open

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        run = stamp_run_attributes(span, parent_context)
        if run is not None:
            run.defer_root()
            self._roots[span.context.span_id] = run
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.parent is None and self._roots:
            run = self._roots.pop(span.context.span_id, None)
            if run is not None:
                events, first, last = run.take_root_updates()
                if events or first or last:
                    span = RunRootSpan(span, events, first, last, self._limits)
        super().on_end(span)
