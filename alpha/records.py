"""What scoring and the supervisor's policy need from the traces: one record per signal and per run.

``SignalRecord`` is one ``alpha.signal`` event; ``RunRecord`` is one agent run's root span. Scoring
(``alpha.quality``) and the policy (``meta_supervisor.policy``) are pure functions over lists of these,
so whoever reads the traces (the report builder's reader, or the tiny walker below) can call them.

``records_from_otlp_lines`` is a deliberately minimal walker over OTLP/JSON lines (the collector's
file-exporter format): ``json.loads`` per line, bad lines skipped and counted, spans seen twice
(exporter retries) taken once. It exists for ``meta_supervisor/supervise.py`` and the tests until the
report builder's reader (``meta_supervisor/trace_reader.py``) produces these records.

Reads no environment variables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from otel import semconv


@dataclass(frozen=True)
class SignalRecord:
    agent: str
    symbol: str
    as_of: date
    direction: str  # up | down | flat
    prob_up: float
    score_final: float
    horizon: int
    tradable: bool | None = None  # None: emitted before agent status existed
    trace_id: str = ""
    span_id: str = ""
    time_unix_nano: int = 0  # when the event was recorded; orders duplicates


@dataclass(frozen=True)
class RunRecord:
    agent: str
    outcome: str  # ok | error | killed
    as_of: date | None  # agent.run.as_of: the market day the run saw
    duration_ms: float
    cost_usd: float = 0.0
    unpriced_llm_calls: int = 0
    status: str = ""  # shadow | live, as the run saw it
    trace_id: str = ""
    span_id: str = ""
    start_unix_nano: int = 0


@dataclass
class Records:
    runs: list[RunRecord] = field(default_factory=list)
    signals: list[SignalRecord] = field(default_factory=list)
    bad_lines: int = 0
    bad_signals: int = 0


def _value(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return None
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in raw:
            return raw[key]
    if "intValue" in raw:
        try:
            return int(raw["intValue"])
        except (TypeError, ValueError):
            return None
    return None


def _attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {item["key"]: _value(item.get("value")) for item in items if isinstance(item, dict) and isinstance(item.get("key"), str)}


def _date(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def signal_from_event(agent: str, attrs: dict[str, Any], trace_id: str = "", span_id: str = "", time_ns: int = 0) -> SignalRecord | None:
    """A ``SignalRecord`` from an ``alpha.signal`` event's attributes, or None if they are unusable."""
    symbol = attrs.get(semconv.ALPHA_SYMBOL)
    direction = attrs.get(semconv.ALPHA_DIRECTION)
    prob_up = _number(attrs.get(semconv.ALPHA_PROB_UP))
    score = _number(attrs.get(semconv.ALPHA_SCORE_FINAL))
    horizon = attrs.get(semconv.ALPHA_HORIZON)
    as_of = _date(attrs.get(semconv.ALPHA_AS_OF))
    tradable = attrs.get(semconv.ALPHA_TRADABLE)
    if not isinstance(symbol, str) or not symbol or direction not in semconv.DIRECTIONS or score is None:
        return None
    if prob_up is None or not 0.0 <= prob_up <= 1.0:
        return None
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1 or as_of is None:
        return None
    return SignalRecord(
        agent,
        symbol,
        as_of,
        direction,
        prob_up,
        score,
        horizon,
        tradable if isinstance(tradable, bool) else None,
        trace_id,
        span_id,
        time_ns,
    )


def records_from_otlp_lines(lines: Iterable[str | bytes]) -> Records:
    """Run and signal records from OTLP/JSON lines (one ``ExportTraceServiceRequest`` per line)."""
    out = Records()
    seen: set[tuple[str, str]] = set()
    for line in lines:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            resource_spans = request["resourceSpans"]
            spans = [span for rs in resource_spans for ss in rs.get("scopeSpans", []) for span in ss.get("spans", [])]
        except (ValueError, TypeError, KeyError, AttributeError):
            out.bad_lines += 1
            continue
        for span in spans:
            if not isinstance(span, dict):
                continue
            key = (str(span.get("traceId", "")), str(span.get("spanId", "")))
            if key in seen:
                continue
            seen.add(key)
            attrs = _attributes(span.get("attributes"))
            if attrs.get(semconv.GEN_AI_OPERATION_NAME) != semconv.OPERATION_INVOKE_AGENT:
                continue
            agent = attrs.get(semconv.GEN_AI_AGENT_NAME)
            if not isinstance(agent, str) or not agent:
                continue
            try:
                start, end = int(span.get("startTimeUnixNano", 0)), int(span.get("endTimeUnixNano", 0))
            except (TypeError, ValueError):
                start = end = 0
            out.runs.append(
                RunRecord(
                    agent=agent,
                    outcome=str(attrs.get(semconv.AGENT_RUN_OUTCOME) or ""),
                    as_of=_date(attrs.get(semconv.AGENT_RUN_AS_OF)),
                    duration_ms=max(0, end - start) / 1e6,
                    cost_usd=_number(attrs.get(semconv.RUN_COST_USD)) or 0.0,
                    unpriced_llm_calls=int(_number(attrs.get(semconv.RUN_UNPRICED_LLM_CALLS)) or 0),
                    status=str(attrs.get(semconv.AGENT_STATUS) or ""),
                    trace_id=key[0],
                    span_id=key[1],
                    start_unix_nano=start,
                )
            )
            for event in span.get("events") or []:
                if not isinstance(event, dict) or event.get("name") != semconv.EVENT_ALPHA_SIGNAL:
                    continue
                try:
                    time_ns = int(event.get("timeUnixNano", 0))
                except (TypeError, ValueError):
                    time_ns = 0
                record = signal_from_event(agent, _attributes(event.get("attributes")), key[0], key[1], time_ns)
                if record is None:
                    out.bad_signals += 1
                else:
                    out.signals.append(record)
    return out


def read_records(path: str) -> Records:
    """``records_from_otlp_lines`` over a file; only newline-terminated lines are taken."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return records_from_otlp_lines(line for line in handle if line.endswith("\n"))
