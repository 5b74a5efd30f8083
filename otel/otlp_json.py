"""Encode finished SDK spans as one OTLP/JSON ``ExportTraceServiceRequest``, byte-for-byte the shape
the OpenTelemetry Collector's file exporter writes in JSON mode.

The rules are protobuf's JSON mapping as the collector's pdata marshaler applies it: camelCase keys in
proto field order, trace and span ids as lowercase hex, 64-bit integers as strings, enums as numbers,
fields at their default value left out (but ``status`` always present). Spans are grouped by
resource and then by instrumentation scope, as the SDK's own OTLP encoder groups them, so a span sent
over OTLP to a collector and one written here parse to the same content.

Reads no environment variables.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

# Python's SpanKind starts at INTERNAL=0; OTLP reserves 0 for UNSPECIFIED.
_OTLP_KIND_OFFSET = 1
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200


def encode_value(value: Any) -> dict[str, Any]:
    """One attribute value as an OTLP ``AnyValue``."""
    if isinstance(value, bool):
        return {"boolValue": True} if value else {"boolValue": False}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": encode_attributes(value)}}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [encode_value(item) for item in value]}}
    return {"stringValue": str(value)}


def encode_attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not attributes:
        return []
    return [{"key": key, "value": encode_value(value)} for key, value in attributes.items()]


def _with_attributes(target: dict[str, Any], attributes: Mapping[str, Any] | None, dropped: int) -> dict[str, Any]:
    encoded = encode_attributes(attributes)
    if encoded:
        target["attributes"] = encoded
    if dropped:
        target["droppedAttributesCount"] = dropped
    return target


def _flags(is_remote_parent: bool) -> int:
    return _FLAG_HAS_IS_REMOTE | (_FLAG_IS_REMOTE if is_remote_parent else 0)


def encode_span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    out: dict[str, Any] = {"traceId": f"{context.trace_id:032x}", "spanId": f"{context.span_id:016x}"}
    if context.trace_state:
        out["traceState"] = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
    if span.parent is not None:
        out["parentSpanId"] = f"{span.parent.span_id:016x}"
    out["flags"] = _flags(span.parent is not None and span.parent.is_remote)
    out["name"] = span.name
    out["kind"] = span.kind.value + _OTLP_KIND_OFFSET
    out["startTimeUnixNano"] = str(span.start_time or 0)
    out["endTimeUnixNano"] = str(span.end_time or 0)
    _with_attributes(out, span.attributes, span.dropped_attributes)
    if span.events:
        out["events"] = [
            _with_attributes({"timeUnixNano": str(event.timestamp), "name": event.name}, event.attributes, event.dropped_attributes)
            for event in span.events
        ]
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    if span.links:
        out["links"] = [
            _with_attributes(
                {
                    "traceId": f"{link.context.trace_id:032x}",
                    "spanId": f"{link.context.span_id:016x}",
                    "flags": _flags(link.context.is_remote),
                },
                link.attributes,
                link.dropped_attributes,
            )
            for link in span.links
        ]
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    status: dict[str, Any] = {}
    if span.status.description:
        status["message"] = span.status.description
    if span.status.status_code.value:
        status["code"] = span.status.status_code.value
    out["status"] = status
    return out


def _encode_scope(scope: InstrumentationScope | None) -> dict[str, Any]:
    if scope is None:
        return {}
    out: dict[str, Any] = {}
    if scope.name:
        out["name"] = scope.name
    if scope.version:
        out["version"] = scope.version
    return _with_attributes(out, scope.attributes, 0)


def encode_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Group spans by resource, then scope, into one ``ExportTraceServiceRequest``."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]] = {}
    for span in spans:
        grouped.setdefault(span.resource, {}).setdefault(span.instrumentation_scope or None, []).append(span)
    resource_spans = []
    for resource, scopes in grouped.items():
        scope_spans = []
        for scope, members in scopes.items():
            entry: dict[str, Any] = {"scope": _encode_scope(scope), "spans": [encode_span(s) for s in members]}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        item: dict[str, Any] = {"resource": _with_attributes({}, resource.attributes, 0), "scopeSpans": scope_spans}
        if resource.schema_url:
            item["schemaUrl"] = resource.schema_url
        resource_spans.append(item)
    return {"resourceSpans": resource_spans}


def encode_line(spans: Sequence[ReadableSpan]) -> bytes:
    """One newline-terminated line; non-ASCII kept as UTF-8, as the collector writes it.

    JSON escapes every control character, so the line holds no raw newline whatever the spans say.
    A lone surrogate (which protobuf and the collector would refuse) becomes U+FFFD.
    """
    text = json.dumps(encode_request(spans), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
    return data + b"\n"
