"""Trace files written before the project namespace, read as if written now.

alphatrace once wrote its own keys as ``agent.run_id``, ``agent.run.*``, ``alpha.*``, ``supervisor.*``,
``kill_switch.*``; it writes them under ``alphatrace.`` now (``otel.semconv.LEGACY_NAMES`` pairs each
old name with its name now). The report reads a span's attributes and events under today's names
only, after these functions renamed an old span's: a file may hold old spans, new spans or both
(a fleet upgraded while the file was being written), and reads the same either way. A span carrying
a key under both names keeps the new one's value.

The common case costs one dictionary lookup a span (``is_old_span``): every span of an alphatrace
run carries its run id, under one name or the other.

Reads no environment variables.
"""

from __future__ import annotations

from otel import semconv

_CURRENT = semconv.LEGACY_NAMES
_OLD = frozenset(_CURRENT)
_RUN_ID = semconv.AGENT_RUN_ID
_EVENTS = (semconv.EVENT_ALPHA_SIGNAL, semconv.EVENT_ALPHA_SIGNAL_INVALID, semconv.EVENT_KILL_SWITCH_ERROR)
_OLD_EVENTS = frozenset(old for old, new in _CURRENT.items() if new in _EVENTS)
SUPERVISOR_SPAN_PREFIXES = (semconv.SUPERVISOR_SPAN_PREFIX, semconv.LEGACY_SUPERVISOR_SPAN_PREFIX)


def current_name(name: str) -> str:
    """The name now of an attribute key, event name or span name, old or not."""
    return _CURRENT.get(name, name)


def is_old_span(attrs: dict) -> bool:
    """Whether a span's attributes (key -> value) hold a name of before the namespace."""
    return _RUN_ID not in attrs and not _OLD.isdisjoint(attrs)


def upgrade_attributes(attrs: dict) -> None:
    """Rename an old span's keys in place (a key present under both names keeps the new value)."""
    for old in _OLD.intersection(attrs):
        value = attrs.pop(old)
        attrs.setdefault(_CURRENT[old], value)


def is_old_event(name: str) -> bool:
    return name in _OLD_EVENTS


def upgrade_event(event) -> str:
    """Rename an old event (``alpha.signal``, ...) and its attribute keys in place; its name now."""
    for kv in event.attributes:
        kv.key = _CURRENT.get(kv.key, kv.key)
    event.name = name = _CURRENT[event.name]
    return name
