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
from otel.redaction import REDACTED, known_secrets, redact

logger = logging.getLogger(__name__)


def _value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, (list, tuple)) and any(isinstance(item, str) for item in value):
        return type(value)(redact(item, secrets) if isinstance(item, str) else item for item in value)
    return value


def _attributes(attributes: Any, secrets: tuple[str, ...]) -> dict[str, Any] | None:
    """The redacted attributes, or None when nothing changed."""
    if not attributes:
        return None
    changed = False
    out = {}
    for key, value in attributes.items():
        new = _value(value, secrets)
        changed = changed or new != value
        out[key] = new
    return out if changed else None


def redact_span(span: ReadableSpan, secrets: tuple[str, ...] | None = None) -> ReadableSpan:
    """``span`` itself when nothing in it needs redacting, else a redacted copy."""
    secrets = known_secrets() if secrets is None else secrets
    status = span.status
    description = status.description
    new_description = redact(description, secrets) if description else description
    attributes = _attributes(span.attributes, secrets)
    events = []
    events_changed = False
    for event in span.events:
        event_attributes = _attributes(event.attributes, secrets)
        if event_attributes is None:
            events.append(event)
        else:
            events_changed = True
            events.append(Event(event.name, event_attributes, timestamp=event.timestamp, limit=None))
    links = []
    links_changed = False
    for link in span.links:
        link_attributes = _attributes(link.attributes, secrets)
        links_changed = links_changed or link_attributes is not None
        links.append(link if link_attributes is None else Link(link.context, link_attributes))
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
    """Redacts each span, then hands the batch to ``exporter``."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        secrets = known_secrets()
        safe = []
        for span in spans:
            try:
                safe.append(redact_span(span, secrets))
            except Exception:
                report_internal_error(logger, "could not redact a span; its strings are exported as [REDACTED]")
                safe.append(_scrubbed(span))
        return self.exporter.export(safe)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
