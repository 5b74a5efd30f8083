"""Decode a protobuf ``ExportTraceServiceRequest`` (the collector's ``format: proto``) without protobuf.

A small wire-format reader for exactly the fields the report uses, producing the same
``otlp_schema`` objects as the JSON decoder, so the rest of the pipeline cannot tell the formats
apart. Field numbers are those of opentelemetry-proto ``trace/v1/trace.proto`` and
``common/v1/common.proto``; unknown fields are skipped, as protobuf requires. Protobuf input is not
on the hot path (the collector's JSON output is), so clarity wins over speed here.

Reads no environment variables.
"""

from __future__ import annotations

import struct

from meta_supervisor.reading.otlp_schema import (
    AnyValue,
    Event,
    EventKeyValue,
    EventValue,
    KeyValue,
    Resource,
    ResourceKeyValue,
    ResourceSpans,
    ResourceValue,
    ScopeSpans,
    Span,
    Status,
    TraceRequest,
)

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_MAX_DEPTH = 64


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message of the expected type."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ProtoError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint longer than 10 bytes")


def fields(data: bytes):
    """Yield (field number, wire type, value) of a message; LENGTH values are bytes."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == VARINT:
            value, pos = _varint(data, pos)
        elif wire == FIXED64:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64")
            value = data[pos : pos + 8]
            pos += 8
        elif wire == LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise ProtoError("length-delimited field runs past the end of the message")
            value = data[pos : pos + size]
            pos += size
        elif wire == FIXED32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            value = data[pos : pos + 4]
            pos += 4
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        yield number, wire, value


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace")


def _u64(value: bytes) -> int:
    return struct.unpack("<Q", value)[0]


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _any_value(data: bytes) -> tuple[str | None, bool | None, int | None, float | None]:
    text = flag = number = double = None
    for number_, wire, value in fields(data):
        if number_ == 1 and wire == LENGTH:
            text = _text(value)
        elif number_ == 2 and wire == VARINT:
            flag = bool(value)
        elif number_ == 3 and wire == VARINT:
            number = _int64(value)
        elif number_ == 4 and wire == FIXED64:
            double = struct.unpack("<d", value)[0]
    return text, flag, number, double


def _key_value(data: bytes) -> tuple[str, tuple | None]:
    key = ""
    parsed = None
    for number, wire, value in fields(data):
        if number == 1 and wire == LENGTH:
            key = _text(value)
        elif number == 2 and wire == LENGTH:
            parsed = _any_value(value)
    return key, parsed


def _span_attribute(data: bytes) -> KeyValue:
    key, parsed = _key_value(data)
    if parsed is None:
        return KeyValue(key=key)
    text, _flag, number, double = parsed
    return KeyValue(key=key, value=AnyValue(stringValue=text, intValue=number, doubleValue=double))


def _event(data: bytes) -> Event:
    event = Event()
    attributes = []
    for number, wire, value in fields(data):
        if number == 1 and wire == FIXED64:
            event.timeUnixNano = _u64(value)
        elif number == 2 and wire == LENGTH:
            event.name = _text(value)
        elif number == 3 and wire == LENGTH:
            key, parsed = _key_value(value)
            if parsed is None:
                attributes.append(EventKeyValue(key=key))
            else:
                text, flag, integer, double = parsed
                attributes.append(
                    EventKeyValue(key=key, value=EventValue(stringValue=text, intValue=integer, doubleValue=double, boolValue=flag))
                )
    event.attributes = attributes
    return event


def _status(data: bytes) -> Status:
    status = Status()
    for number, wire, value in fields(data):
        if number == 2 and wire == LENGTH:
            status.message = _text(value)
        elif number == 3 and wire == VARINT:
            status.code = value
    return status


def _span(data: bytes) -> Span:
    span = Span()
    attributes = []
    events = []
    for number, wire, value in fields(data):
        if wire == LENGTH:
            if number == 1:
                span.traceId = value.hex()
            elif number == 2:
                span.spanId = value.hex()
            elif number == 5:
                span.name = _text(value)
            elif number == 9:
                attributes.append(_span_attribute(value))
            elif number == 11:
                events.append(_event(value))
            elif number == 15:
                span.status = _status(value)
        elif wire == FIXED64:
            if number == 7:
                span.startTimeUnixNano = _u64(value)
            elif number == 8:
                span.endTimeUnixNano = _u64(value)
    span.attributes = attributes
    span.events = events
    return span


def _resource(data: bytes) -> Resource:
    attributes = []
    for number, wire, value in fields(data):
        if number == 1 and wire == LENGTH:
            key, parsed = _key_value(value)
            attributes.append(
                ResourceKeyValue(key=key, value=ResourceValue(stringValue=parsed[0], boolValue=parsed[1]) if parsed else None)
            )
    return Resource(attributes=attributes)


def decode_request(data: bytes) -> TraceRequest:
    """An ``ExportTraceServiceRequest`` (or the wire-identical ``TracesData``)."""
    request = TraceRequest(resourceSpans=[])
    for number, wire, value in fields(data):
        if number != 1 or wire != LENGTH:
            raise ProtoError(f"unexpected field {number} (wire type {wire}) in a trace request")
        resource_spans = ResourceSpans(scopeSpans=[])
        for inner, inner_wire, inner_value in fields(value):
            if inner == 1 and inner_wire == LENGTH:
                resource_spans.resource = _resource(inner_value)
            elif inner == 2 and inner_wire == LENGTH:
                scope_spans = ScopeSpans(spans=[])
                for leaf, leaf_wire, leaf_value in fields(inner_value):
                    if leaf == 2 and leaf_wire == LENGTH:
                        scope_spans.spans.append(_span(leaf_value))
                resource_spans.scopeSpans.append(scope_spans)
        request.resourceSpans.append(resource_spans)
    return request
