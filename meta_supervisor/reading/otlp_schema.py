"""Typed shapes of an OTLP ``ExportTraceServiceRequest`` as the report reads it, and typed value access.

The same classes come out of the JSON decoder (``msgspec``, OTLP/JSON as the collector's file exporter
and alphatrace's embedded exporter write it) and out of ``otlp_proto`` (the collector's ``format:
proto``), so everything downstream sees one representation. Only the fields the report uses are
declared; everything else is skipped by the decoder without being materialised.

OTLP/JSON writes 64-bit integers as strings and may write doubles as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``; the types accept both forms. ``arrayValue``/``kvlistValue`` are not
read (no attribute the report uses has that type), so such a value reads as "no value".

Reads no environment variables.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

import msgspec


class AnyValue(msgspec.Struct, gc=False):
    """A span attribute value: the report reads strings, integers and doubles from spans."""

    stringValue: str | None = None
    intValue: str | int | None = None
    doubleValue: float | str | None = None


class KeyValue(msgspec.Struct, gc=False):
    key: str = ""
    value: AnyValue | None = None


class ResourceValue(msgspec.Struct, gc=False):
    """A resource attribute value (``alphatrace.llm.simulated`` is a bool)."""

    stringValue: str | None = None
    boolValue: bool | None = None


class ResourceKeyValue(msgspec.Struct, gc=False):
    key: str = ""
    value: ResourceValue | None = None


class EventValue(msgspec.Struct, gc=False):
    """An event attribute value: ``alphatrace.alpha.signal`` carries strings (symbol, direction, as-of date),
    doubles (``prob_up``, ``score_final``), an int (``horizon``) and a bool (``tradable``)."""

    stringValue: str | None = None
    intValue: str | int | None = None
    doubleValue: float | str | None = None
    boolValue: bool | None = None


class EventKeyValue(msgspec.Struct, gc=False):
    key: str = ""
    value: EventValue | None = None


class Event(msgspec.Struct, gc=False):
    timeUnixNano: str | int = 0
    name: str = ""
    attributes: list[EventKeyValue] = []


E = TypeVar("E")  # the event type of a span: Event or NarrowEvent


class Status(msgspec.Struct, gc=False):
    code: int = 0
    message: str = ""


class Span(msgspec.Struct, Generic[E], gc=False):
    """A span; its events are ``Event`` (every value) or ``NarrowEvent`` (strings only), see below."""

    traceId: str = ""
    spanId: str = ""
    name: str = ""
    startTimeUnixNano: str | int = 0
    endTimeUnixNano: str | int = 0
    attributes: list[KeyValue] = []
    events: list[E] = []
    status: Status | None = None


class ScopeSpans(msgspec.Struct, Generic[E], gc=False):
    spans: list[Span[E]] = []


class Resource(msgspec.Struct, gc=False):
    attributes: list[ResourceKeyValue] = []


class ResourceSpans(msgspec.Struct, Generic[E], gc=False):
    resource: Resource | None = None
    scopeSpans: list[ScopeSpans[E]] = []


class TraceRequest(msgspec.Struct, Generic[E], gc=False):
    resourceSpans: list[ResourceSpans[E]] = []


MAX_TIME_NS = (1 << 64) - 1  # OTLP times are fixed64 nanoseconds: anything larger is not a time


# --- events for a build that keeps no alpha signals (--no-alpha-quality) ----------------------------
# Event values are read only for their strings (symbol, direction, reason) and event times not at
# all: the decoder skips the rest without materialising it, which is what a build without the
# alpha-quality section saves. Everything downstream reads both shapes alike.


class StringValue(msgspec.Struct, gc=False):
    stringValue: str | None = None


class NarrowEventKeyValue(msgspec.Struct, gc=False):
    key: str = ""
    value: StringValue | None = None


class NarrowEvent(msgspec.Struct, gc=False):
    name: str = ""
    attributes: list[NarrowEventKeyValue] = []


REQUEST_DECODER = msgspec.json.Decoder(TraceRequest[Event])
NARROW_REQUEST_DECODER = msgspec.json.Decoder(TraceRequest[NarrowEvent])


def request_decoder(alpha_signals: bool) -> msgspec.json.Decoder:
    """The decoder for a build that keeps alpha signals (every event value) or not (strings only)."""
    return REQUEST_DECODER if alpha_signals else NARROW_REQUEST_DECODER


# --- typed access to AnyValue -------------------------------------------------------------------


def as_str(value: AnyValue | None) -> str | None:
    if value is None:
        return None
    return value.stringValue


def as_int(value: AnyValue | None) -> int | None:
    """An integer attribute; a double with an integral value is accepted, anything else is None."""
    if value is None:
        return None
    raw = value.intValue
    if raw is not None:
        if type(raw) is int:
            return raw
        try:
            return int(raw)
        except ValueError:
            return None
    raw = value.doubleValue
    if type(raw) is float and raw.is_integer():
        return int(raw)
    return None


def as_float(value: AnyValue | None) -> float | None:
    """A number attribute (double or int); NaN and infinities are returned as floats, an int too
    large for a float is None."""
    if value is None:
        return None
    raw = value.doubleValue
    if raw is not None:
        if type(raw) is float:
            return raw
        if raw in ("NaN", "Infinity", "-Infinity"):
            return float(raw.replace("Infinity", "inf"))
        return None
    number = as_int(value)
    if number is None:
        return None
    try:
        return float(number)
    except OverflowError:
        return None


def as_bool(value: ResourceValue | None) -> bool:
    """True for ``boolValue: true`` and for the strings ``true``/``1`` (as OTEL_RESOURCE_ATTRIBUTES writes)."""
    if value is None:
        return False
    if value.boolValue is not None:
        return value.boolValue
    text = value.stringValue
    return text is not None and text.strip().lower() in ("true", "1")


def as_time_ns(raw: str | int) -> int:
    """A ``...UnixNano`` field; 0 when absent or unreadable."""
    if type(raw) is int:
        return raw
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def is_finite(number: float | None) -> bool:
    return number is not None and math.isfinite(number)
