"""The last line before export: every span's strings go through ``otel.redaction.redact``.

``RedactingSpanExporter`` wraps whichever exporter ``configure_telemetry`` chose (file, OTLP, console,
a test's in-memory one). For each span it redacts the status description, string attributes (and
strings inside sequences), event attributes (the instrumentation's and the SDK's ``exception``
events: ``exception.message``, ``exception.stacktrace``) and link attributes. A span with nothing to
redact is passed on as it is; only one that changes is copied. A failure here never loses the span
silently: the span is then exported with its strings replaced by ``[REDACTED]`` wholesale rather
than as it was.

Reads no environment variables (``redact`` reads ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from otel.internal_errors import report_internal_error
from otel.redaction import REDACTED, RedactionMemo, known_secrets

logger = logging.getLogger(__name__)


def _plain(attributes: Any) -> dict[str, Any]:
    """A plain dict of ``attributes`` to iterate (the SDK's ``BoundedAttributes.copy()``; iterating
    it as a mapping costs a Python call per key)."""
    if type(attributes) is dict:
        return attributes
    if attributes is None:
        return {}
    copy = getattr(attributes, "copy", None)
    result = copy() if copy is not None else None
    return result if type(result) is dict else dict(attributes)


def _value(value: Any, redactor: RedactionMemo) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, (list, tuple)) and any(isinstance(item, str) for item in value):
        return type(value)(redactor(item) if isinstance(item, str) else item for item in value)
    return value


_SCALARS = frozenset({int, float, bool, bytes, type(None)})


def _attributes(attributes: Any, redactor: RedactionMemo) -> dict[str, Any] | None:
    """The redacted attributes, or None when nothing changed."""
    plain = _plain(attributes)
    clean = redactor.clean  # the usual case, a string seen before with nothing to redact: one lookup
    scalars = _SCALARS
    for value in plain.values():
        kind = type(value)
        if kind is str:
            if value in clean or redactor(value) == value:
                continue
        elif kind in scalars or _value(value, redactor) == value:
            continue
        return {key: _value(item, redactor) for key, item in plain.items()}
    return None


def _redactor(secrets: tuple[str, ...] | RedactionMemo | None) -> RedactionMemo:
    if isinstance(secrets, RedactionMemo):
        return secrets
    return RedactionMemo(known_secrets() if secrets is None else secrets, remember=False)


def redact_span(span: ReadableSpan, secrets: tuple[str, ...] | RedactionMemo | None = None) -> ReadableSpan:
    """``span`` itself when nothing in it needs redacting, else a redacted copy. ``secrets``: the
    secrets to redact (default: ``known_secrets()``), or a ``RedactionMemo`` over them."""
    redactor = _redactor(secrets)
    status = span.status
    description = status.description
    new_description = redactor(description) if description else description
    attributes = _attributes(span.attributes, redactor)
    events = span.events
    events_changed = False
    for index, event in enumerate(events):
        event_attributes = _attributes(event.attributes, redactor)
        if event_attributes is not None:
            if not events_changed:
                events = list(events)
                events_changed = True
            events[index] = Event(event.name, event_attributes, timestamp=event.timestamp, limit=None)
    links = span.links
    links_changed = False
    for index, link in enumerate(links):
        link_attributes = _attributes(link.attributes, redactor)
        if link_attributes is not None:
            if not links_changed:
                links = list(links)
                links_changed = True
            links[index] = Link(link.context, link_attributes)
    if new_description == description and attributes is None and not events_changed and not links_changed:
        return span
    return _copy(span, Status(status.status_code, new_description), attributes, events, links)


def _copy(
    span: ReadableSpan, status: Status, attributes: dict[str, Any] | None, events: Sequence[Event], links: Sequence[Link]
) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrubbed(span: ReadableSpan) -> ReadableSpan:
    """Every string replaced: what is exported when redaction itself failed."""

    def scrub(attributes: Any) -> dict[str, Any]:
        return {k: REDACTED if isinstance(v, str) else v for k, v in (attributes or {}).items()}

    events = [Event(e.name, scrub(e.attributes), timestamp=e.timestamp, limit=None) for e in span.events]
    links = [Link(link.context, scrub(link.attributes)) for link in span.links]
    description = REDACTED if span.status.description else None
    return _copy(span, Status(span.status.status_code, description), scrub(span.attributes), events, links)


class RedactingSpanExporter(SpanExporter):
    """Redacts each span, then hands the batch to ``exporter``. Remembers what each string redacts
    to while the secrets stay the same (a new memo when they change)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self._memo = RedactionMemo(())

    def _memo_for(self, secrets: tuple[str, ...]) -> RedactionMemo:
        memo = self._memo  # one read: a concurrent export with other secrets keeps its own memo
        if memo.secrets != secrets:
            memo = self._memo = RedactionMemo(secrets)
        return memo

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        memo = self._memo_for(known_secrets())
        safe = []
        for span in spans:
            try:
                safe.append(redact_span(span, memo))
            except Exception:
                report_internal_error(logger, "could not redact a span; its strings are exported as [REDACTED]")
                safe.append(_scrubbed(span))
        return self.exporter.export(safe)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
