"""The embedded exporter's encoder: finished spans to one OTLP/JSON line, serialized by msgspec.

It writes exactly the bytes of ``otel.otlp_json.encode_line`` (the pure-Python reference, which
``json.dumps`` serializes): the same tree of dicts and lists is built here, with less interpreter
work, and msgspec's compiled JSON encoder turns it into bytes. Where the two serializers would
differ, the tree holds what the reference writes:

* a float is written by ``float.__repr__`` (``1e-05``, ``1e+16``), not by msgspec's own formatting
  (``0.00001``, ``1e16``): it goes in as a ``msgspec.Raw`` fragment;
* a ``str`` subclass is written as its plain text, as ``json.dumps`` does.

Anything else msgspec refuses (a lone surrogate in a string, which UTF-8 cannot carry; an object of
an unexpected type where the reference would write its ``str``) makes the whole batch go through
the reference encoder, so the output is the reference's in every case: ``tests/test_otlp_json_compiled.py``
compares the two byte for byte on generated span shapes.

Attribute values that repeat (an agent's name, a model, ``"ok"``) are the usual case: the encoded
``{"key": ..., "value": ...}`` pair of a string attribute is kept in a small bounded table, so a
repeated pair costs one dictionary lookup.

Reads no environment variables.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

from otel import otlp_json as reference

_ENCODER = msgspec.json.Encoder()
_Raw = msgspec.Raw
_TRUE = {"boolValue": True}
_FALSE = {"boolValue": False}
_NAN = {"doubleValue": "NaN"}
_INF = {"doubleValue": "Infinity"}
_NEG_INF = {"doubleValue": "-Infinity"}
_ZERO = {"doubleValue": msgspec.Raw(b"0.0")}
_NEG_ZERO = {"doubleValue": msgspec.Raw(b"-0.0")}
_OTLP_KIND_OFFSET = 1
_FLAGS_LOCAL = 0x100  # has-is-remote set, parent not remote
_FLAGS_REMOTE = 0x300
# Encoded attributes with a str key and a str, int or float value, by (key, value), one table per
# exact value type (1 == 1.0 == True, but each is written differently, so a value is only looked up
# among its own type's); each bounded, cleared when full (values that never repeat, such as response
# ids, would otherwise grow it without end); long strings and float zeros are not kept.
_PAIR_CACHE_SIZE = 4096
_PAIR_CACHE_MAX_VALUE = 256
_TABLES: dict[type, dict[tuple[str, Any], msgspec.Raw]] = {str: {}, int: {}, float: {}}


def _float(value: float) -> dict[str, Any]:
    if not value:
        return _NEG_ZERO if math.copysign(1.0, value) < 0 else _ZERO
    if value != value:  # NaN
        return _NAN
    if math.isinf(value):
        return _INF if value > 0 else _NEG_INF
    return {"doubleValue": _Raw(float.__repr__(value).encode())}


def encode_value(value: Any) -> Any:
    """One attribute value as an OTLP ``AnyValue``: the reference's tree, floats as raw JSON."""
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        return {"intValue": str(value)}
    if kind is float:
        return _float(value)
    if kind is tuple or kind is list:
        return {"arrayValue": {"values": [encode_value(item) for item in value]}}
    # The reference's order of checks, for subclasses and the rarer types.
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return {"stringValue": str.__str__(value)}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": encode_attributes(value)}}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [encode_value(item) for item in value]}}
    return {"stringValue": str(value)}


def _plain(attributes: Any) -> dict:
    """The attributes as a plain dict to iterate (the SDK's ``BoundedAttributes`` has a public
    ``copy()``; iterating it as a mapping, or even asking its length, is a Python call)."""
    if type(attributes) is dict:
        return attributes
    if attributes is None:
        return {}
    copy = getattr(attributes, "copy", None)
    result = copy() if copy is not None else None
    return result if type(result) is dict else dict(attributes)


def _new_pair(item: tuple, table: dict) -> msgspec.Raw | dict[str, Any]:
    """The encoded ``{"key": ..., "value": ...}`` of ``item``, kept in ``table`` unless its value
    is a long string or a float zero (``0.0 == -0.0``, written differently)."""
    key, value = item
    kind = type(value)
    if (kind is str and len(value) > _PAIR_CACHE_MAX_VALUE) or (kind is float and not value):
        return {"key": key, "value": encode_value(value)}
    pair = _Raw(_ENCODER.encode({"key": key, "value": encode_value(value)}))
    if len(table) >= _PAIR_CACHE_SIZE:
        table.clear()
    table[item] = pair
    return pair


def encode_attributes(attributes: Any) -> list:
    attributes = _plain(attributes)
    out = []
    append = out.append
    tables = _TABLES
    for item in attributes.items():
        table = tables.get(type(item[1]))
        if table is not None and type(item[0]) is str:
            pair = table.get(item)
            append(pair if pair is not None else _new_pair(item, table))
        else:
            append({"key": item[0], "value": encode_value(item[1])})
    return out


def _with_attributes(target: dict[str, Any], attributes: Any, dropped: int) -> dict[str, Any]:
    plain = _plain(attributes)
    if plain:
        target["attributes"] = encode_attributes(plain)
    if dropped:
        target["droppedAttributesCount"] = dropped
    return target


def _kind(kind: SpanKind) -> int:
    """OTLP's number for the kind (Python's ``SpanKind`` starts at INTERNAL=0, OTLP's at
    UNSPECIFIED=0); by identity, as an enum's ``value`` and hash are Python-level calls."""
    if kind is SpanKind.INTERNAL:
        return 1
    if kind is SpanKind.CLIENT:
        return 3
    return kind.value + _OTLP_KIND_OFFSET


def _code(code: StatusCode) -> int:
    if code is StatusCode.UNSET:
        return 0
    if code is StatusCode.ERROR:
        return 2
    return code.value


def encode_span(span: ReadableSpan) -> dict[str, Any]:
    context = span.context
    parent = span.parent
    out: dict[str, Any] = {"traceId": f"{context.trace_id:032x}", "spanId": f"{context.span_id:016x}"}
    if context.trace_state:
        out["traceState"] = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
    if parent is not None:
        out["parentSpanId"] = f"{parent.span_id:016x}"
        out["flags"] = _FLAGS_REMOTE if parent.is_remote else _FLAGS_LOCAL
    else:
        out["flags"] = _FLAGS_LOCAL
    out["name"] = span.name
    out["kind"] = _kind(span.kind)
    out["startTimeUnixNano"] = str(span.start_time or 0)
    out["endTimeUnixNano"] = str(span.end_time or 0)
    attributes = _plain(span.attributes)
    if attributes:
        out["attributes"] = encode_attributes(attributes)
    dropped = span.dropped_attributes
    if dropped:
        out["droppedAttributesCount"] = dropped
    events = span.events
    if events:
        encoded_events = []
        for event in events:
            entry = {"timeUnixNano": str(event.timestamp), "name": event.name}
            attributes = _plain(event.attributes)
            if attributes:
                entry["attributes"] = encode_attributes(attributes)
            dropped = event.dropped_attributes
            if dropped:
                entry["droppedAttributesCount"] = dropped
            encoded_events.append(entry)
        out["events"] = encoded_events
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    links = span.links
    if links:
        out["links"] = [
            _with_attributes(
                {
                    "traceId": f"{link.context.trace_id:032x}",
                    "spanId": f"{link.context.span_id:016x}",
                    "flags": _FLAGS_REMOTE if link.context.is_remote else _FLAGS_LOCAL,
                },
                link.attributes,
                link.dropped_attributes,
            )
            for link in links
        ]
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    status = span.status
    description = status.description
    code = _code(status.status_code)
    if description:
        out["status"] = {"message": description, "code": code} if code else {"message": description}
    else:
        out["status"] = {"code": code} if code else {}
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


def _group(spans: Sequence[ReadableSpan]) -> list[tuple[Resource, dict[Any, list[dict[str, Any]]]]]:
    """Encoded spans grouped as the reference groups them (by equal resource, then equal scope, in
    order of first appearance). ``Resource.__hash__`` serializes its attributes and
    ``InstrumentationScope.__hash__`` is a Python call, so spans are matched by the objects first and
    equality is asked once per distinct pair of objects in the batch."""
    groups: list[tuple[Resource, dict[Any, list[dict[str, Any]]]]] = []
    by_objects: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope or None
        members = by_objects.get((id(resource), id(scope)))
        if members is None:
            scopes = next((known for seen, known in groups if seen is resource or seen == resource), None)
            if scopes is None:
                scopes = {}
                groups.append((resource, scopes))
            members = scopes.get(scope)
            if members is None:
                members = scopes[scope] = []
            by_objects[(id(resource), id(scope))] = members
        members.append(encode_span(span))
    return groups


def encode_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The reference's request, with this module's span encoding."""
    resource_spans = []
    for resource, scopes in _group(spans):
        scope_spans = []
        for scope, members in scopes.items():
            entry: dict[str, Any] = {"scope": _encode_scope(scope), "spans": members}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        item: dict[str, Any] = {"resource": _with_attributes({}, resource.attributes, 0), "scopeSpans": scope_spans}
        if resource.schema_url:
            item["schemaUrl"] = resource.schema_url
        resource_spans.append(item)
    return {"resourceSpans": resource_spans}


def encode_line(spans: Sequence[ReadableSpan]) -> bytes:
    """One newline-terminated line, byte for byte what ``otel.otlp_json.encode_line`` writes."""
    try:
        buffer = bytearray()
        _ENCODER.encode_into(encode_request(spans), buffer)
    except (TypeError, UnicodeEncodeError, ValueError, OverflowError):
        return reference.encode_line(spans)
    buffer += b"\n"
    return bytes(buffer)
