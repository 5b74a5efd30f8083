"""Trace files as alphatrace wrote them before the project namespace, made from files written now: the
old-file fixtures of tests/test_legacy_names.py and tests/test_clickhouse_sql.py."""

from __future__ import annotations

import json
from typing import Any

from otel import semconv

OLD_NAME = {new: old for old, new in semconv.LEGACY_NAMES.items()}


def _old_name(name: Any) -> Any:
    if not isinstance(name, str):
        return name
    if name in OLD_NAME:
        return OLD_NAME[name]
    for old, new in semconv.LEGACY_PREFIXES.items():
        if name.startswith(new):
            return old + name[len(new) :]
    return name


def as_old_file(node: Any) -> Any:
    """An OTLP/JSON document as alphatrace wrote it before the namespace: attribute keys, event names
    and span names under their old names."""
    if isinstance(node, list):
        return [as_old_file(item) for item in node]
    if isinstance(node, dict):
        renamed = {key: as_old_file(value) for key, value in node.items()}
        for field in ("key", "name"):
            if field in renamed:
                renamed[field] = _old_name(renamed[field])
        return renamed
    return node


def old_lines(lines: list[str]) -> list[str]:
    return [json.dumps(as_old_file(json.loads(line)), separators=(",", ":")) + "\n" for line in lines]


def mixed_lines(lines: list[str]) -> list[str]:
    """Every other line under the old names: a fleet upgraded while the file was written."""
    old = old_lines(lines)
    return [old[i] if i % 2 else line for i, line in enumerate(lines)]
