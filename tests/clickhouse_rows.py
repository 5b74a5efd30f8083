"""Spans into the ClickHouse exporter's ``otel_traces`` table, in-process (chDB), for the SQL tests.

The DDL is the exporter's own: ``tests/fixtures/clickhouse/*.sql`` are byte-for-byte copies of
``exporter/clickhouseexporter/internal/sqltemplates/`` at contrib v0.161.0 (the version
``collector/builder-config.yaml`` pins; Apache-2.0, as this project). :func:`create_tables` fills their
``fmt.Sprintf`` verbs as the exporter does with the default config (no cluster, ``MergeTree()``,
the TTL clause when ``ttl`` is set).

:func:`rows` maps OTLP/JSON (the lines of the collector's file exporter and the embedded exporter,
``docs/telemetry-contract.md``) to rows as the exporter's ``pushTraceData`` maps ``ptrace`` spans
(read in its v0.161.0 source; not copied):

* ``Timestamp`` = the span's start; ``Duration`` = end - start in ns as an unsigned 64-bit
  integer (Go's ``pcommon.Timestamp`` subtraction: an end before the start wraps around);
* ``TraceId`` / ``SpanId`` / ``ParentSpanId`` lowercase hex, ``""`` for an absent or all-zero id;
* ``SpanKind`` and ``StatusCode`` by their pdata names (``Internal``, ``Client``, ...; ``Unset``,
  ``Ok``, ``Error``);
* ``ServiceName`` = the resource's ``service.name`` (``""`` without one);
* every attribute (resource, span, event, link) as ``Map(String, String)`` of pdata's
  ``Value.AsString()``: strings as they are, ints in decimal, bools ``true``/``false``, doubles as
  ES6 number-to-string, bytes base64, arrays and maps as JSON;
* events as the parallel arrays ``Events.Timestamp`` / ``Events.Name`` / ``Events.Attributes``,
  links likewise.

Reads no environment variables.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "clickhouse"
KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
_U64 = 1 << 64


def _ttl_expr(ttl_days: int, field: str) -> str:
    return f"TTL {field} + toIntervalDay({ttl_days})" if ttl_days else ""


def _go_quote(name: str) -> str:
    """Go's ``%q`` of a plain identifier (what the exporter writes for database and table names)."""
    return json.dumps(name)


def create_statements(database: str = "otel", table: str = "otel_traces", ttl_days: int = 0) -> list[str]:
    """The exporter's CREATE DATABASE / TABLE / MATERIALIZED VIEW statements for ``create_schema: true``."""
    traces = (FIXTURES / "traces_table.sql").read_text()
    lookup = (FIXTURES / "traces_id_ts_lookup_table.sql").read_text()
    view = (FIXTURES / "traces_id_ts_lookup_mv.sql").read_text()
    engine, cluster = "MergeTree()", ""
    return [
        f"CREATE DATABASE IF NOT EXISTS {_go_quote(database)} {cluster}",
        # fmt.Sprintf(TracesCreateTable, db, table, cluster, engine, ttl)
        _sprintf(traces, _go_quote(database), _go_quote(table), cluster, engine, _ttl_expr(ttl_days, "toDateTime(Timestamp)")),
        # fmt.Sprintf(TracesCreateTsTable, db, table, cluster, engine, ttl)
        _sprintf(lookup, database, table, cluster, engine, _ttl_expr(ttl_days, "toDateTime(Start)")),
        # fmt.Sprintf(TracesCreateTsView, db, table, cluster, db, table, db, table)
        _sprintf(view, database, table, cluster, database, table, database, table),
    ]


def _sprintf(template: str, *values: str) -> str:
    """Go's fmt.Sprintf for a template whose verbs are ``%q`` (values passed already quoted) and ``%s``."""
    parts = template.replace("%q", "%s").split("%s")
    assert len(parts) == len(values) + 1, (len(parts), len(values))
    out = [parts[0]]
    for value, part in zip(values, parts[1:]):
        out += [value, part]
    return "".join(out)


def insert_columns() -> str:
    """The exporter's INSERT column list (``traces_insert.sql`` up to ``VALUES``)."""
    text = (FIXTURES / "traces_insert.sql").read_text()
    return text[text.index("(") : text.index(") VALUES") + 1]


# --- OTLP/JSON -> rows ---------------------------------------------------------------------------


def _hex_id(value: str | None, length: int) -> str:
    text = (value or "").lower()
    return "" if not text or text == "0" * length else text


def _double_as_string(number: float) -> str:
    """pdata's ``float64AsString``: ES6 number-to-string (the shortest digits that read back the same,
    positional from 1e-6 to 1e21, else ``1.5e-7`` / ``1e+21``)."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    shortest = Decimal(repr(number))
    if 1e-6 <= abs(number) < 1e21:
        text = format(shortest, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    sign, digits, exponent = shortest.normalize().as_tuple()
    text = "".join(map(str, digits))
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    power = exponent + len(digits) - 1
    # Go writes at least two exponent digits and pdata then drops the 0 of e-07
    exponent_text = f"-{-power}" if power < 0 else f"+{power:02d}"
    return f"{'-' if sign else ''}{mantissa}e{exponent_text}"


def _raw(value: dict) -> object:
    """An AnyValue as pdata's ``AsRaw`` (for arrays and maps, encoded as JSON by ``AsString``)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_raw(item) for item in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: _raw(kv.get("value", {})) for kv in value["kvlistValue"].get("values", [])}
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def as_string(value: dict | None) -> str:
    """pdata ``Value.AsString()`` of an OTLP/JSON AnyValue."""
    if not value:
        return ""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return "true" if value["boolValue"] else "false"
    if "intValue" in value:
        return str(int(value["intValue"]))
    if "doubleValue" in value:
        return _double_as_string(float(value["doubleValue"]))
    if "bytesValue" in value:
        return base64.b64encode(base64.b64decode(value["bytesValue"])).decode()
    if "arrayValue" in value or "kvlistValue" in value:
        return json.dumps(_raw(value), ensure_ascii=False, separators=(",", ":"))
    return ""


def attributes(items: Iterable[dict] | None) -> dict[str, str]:
    return {kv["key"]: as_string(kv.get("value")) for kv in items or ()}


def _time(nanos: str | int | None) -> str:
    """A ``DateTime64(9)`` value: seconds since the epoch with nine decimals."""
    value = int(nanos or 0)
    return f"{value // 1_000_000_000}.{value % 1_000_000_000:09d}"


def span_row(resource: dict, scope: dict, span: dict) -> dict:
    start, end = int(span.get("startTimeUnixNano") or 0), int(span.get("endTimeUnixNano") or 0)
    status = span.get("status") or {}
    events = span.get("events") or []
    links = span.get("links") or []
    resource_attrs = attributes(resource.get("attributes"))
    return {
        "Timestamp": _time(start),
        "TraceId": _hex_id(span.get("traceId"), 32),
        "SpanId": _hex_id(span.get("spanId"), 16),
        "ParentSpanId": _hex_id(span.get("parentSpanId"), 16),
        "TraceState": span.get("traceState") or "",
        "SpanName": span.get("name") or "",
        "SpanKind": KINDS[int(span.get("kind") or 0)],
        "ServiceName": resource_attrs.get("service.name", ""),
        "ResourceAttributes": resource_attrs,
        "ScopeName": scope.get("name") or "",
        "ScopeVersion": scope.get("version") or "",
        "SpanAttributes": attributes(span.get("attributes")),
        "Duration": (end - start) % _U64,
        "StatusCode": STATUS_CODES[int(status.get("code") or 0)],
        "StatusMessage": status.get("message") or "",
        "Events.Timestamp": [_time(event.get("timeUnixNano")) for event in events],
        "Events.Name": [event.get("name") or "" for event in events],
        "Events.Attributes": [attributes(event.get("attributes")) for event in events],
        "Links.TraceId": [_hex_id(link.get("traceId"), 32) for link in links],
        "Links.SpanId": [_hex_id(link.get("spanId"), 16) for link in links],
        "Links.TraceState": [link.get("traceState") or "" for link in links],
        "Links.Attributes": [attributes(link.get("attributes")) for link in links],
    }


def rows(lines: Iterable[str]) -> Iterator[dict]:
    """One row per span of each ``ExportTraceServiceRequest`` line (a span in two lines: two rows)."""
    for line in lines:
        if not line.strip():
            continue
        for resource_spans in json.loads(line).get("resourceSpans", []):
            resource = resource_spans.get("resource") or {}
            for scope_spans in resource_spans.get("scopeSpans", []):
                scope = scope_spans.get("scope") or {}
                for span in scope_spans.get("spans", []):
                    yield span_row(resource, scope, span)


def insert_statement(database: str, table: str, batch: Iterable[dict]) -> str:
    """The exporter's INSERT (its column list) with the rows as JSONEachRow."""
    body = "\n".join(json.dumps(row, ensure_ascii=False) for row in batch)
    return f"INSERT INTO {_go_quote(database)}.{_go_quote(table)} {insert_columns()} FORMAT JSONEachRow\n{body}"


# --- an in-process ClickHouse (chDB) behind meta_supervisor.clickhouse.http.ClickHouse -------------

_SESSION = None
_DATABASES = itertools.count(1)


def _session():
    """chDB keeps one engine per process: every test shares it, each in a database of its own."""
    global _SESSION
    if _SESSION is None:
        from chdb import session

        _SESSION = session.Session()
    return _SESSION


class ChdbClickHouse:
    """The exporter's tables in a new database of the in-process engine, loaded with spans."""

    def __init__(self, ttl_days: int = 0, table: str = "otel_traces") -> None:
        self.database = f"otel_test_{next(_DATABASES)}"
        self.table = table
        for statement in create_statements(self.database, table, ttl_days):
            self.execute(statement)

    def execute(self, sql: str) -> str:
        return _session().query(sql, "TSV").data()

    def load(self, lines: Iterable[str], batch: int = 500) -> int:
        """Insert the spans of OTLP/JSON lines as the exporter would; returns the rows inserted."""
        pending, count = [], 0
        for row in rows(lines):
            pending.append(row)
            if len(pending) == batch:
                self.execute(insert_statement(self.database, self.table, pending))
                count, pending = count + len(pending), []
        if pending:
            self.execute(insert_statement(self.database, self.table, pending))
            count += len(pending)
        return count

    def rows(self, sql: str) -> list[dict]:
        text = _session().query(sql, "JSONEachRow").data()
        return [json.loads(line) for line in text.splitlines() if line.strip()]
