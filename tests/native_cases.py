"""Inputs for the native core's differential tests (``tests/test_native_core.py``): building blocks
beyond ``tests/fixtures/report/otlp_builder.py``, the canonical cases the core must take (what
alphatrace and the collector write, odd but legitimate cases included) and the hostile cases it
may decline but must never read differently."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from otel import semconv as S
from tests import genai_fixtures
from tests.fixtures.report.otlp_builder import MS, T0, Llm, Run, Signal, Tool, attrs, lines_for, request, root_span, spans_of

DAY_NS = 86_400 * 1_000_000_000
AS_OF = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]


def dump(document: Any, ascii_only: bool = False) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=ascii_only) + "\n"


def write(tmp_path: Path, lines: list[str] | list[bytes], name: str = "traces.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(item.encode("utf-8") if isinstance(item, str) else item for item in lines))
    return path


# --- building blocks beyond otlp_builder -------------------------------------------------------------


def span_ids(trace: int, k: int) -> dict[str, str]:
    return {"traceId": f"{trace:032x}", "spanId": f"{trace:08x}{k:08x}"}


def other_span(trace: int, k: int, name: str, values: dict[str, Any], events: list | None = None, start_ms: float = 0) -> dict:
    start = T0 + int(start_ms * MS)
    span = {
        **span_ids(trace, k),
        "parentSpanId": f"{trace:08x}00000001",
        "flags": 256,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 3 * MS),
        "attributes": attrs(values),
        "status": {},
    }
    if events:
        span["events"] = events
    return span


def signal_events(symbols: list[tuple[str, str]], as_of: str = "2024-01-02") -> list[dict]:
    """Full ``alpha.signal`` events as alpha.emit writes them (from the builder's root span)."""
    return root_span(Run("x", 1, signals=[Signal(sym, direction, as_of=as_of) for sym, direction in symbols], as_of=as_of))["events"]


def kill_switch_event(message: str = "kill file is not valid JSON") -> dict:
    return {"timeUnixNano": str(T0), "name": S.EVENT_KILL_SWITCH_ERROR, "attributes": attrs({S.KILL_SWITCH_ERROR_MESSAGE: message})}


def mixed_runs(count: int, agents: tuple[str, ...] = ("a", "b", "c")) -> list[Run]:
    """Runs with everything: outcomes, LLM calls, tool calls, signals (scorable, superseding), losses."""
    return [
        Run(
            agents[i % len(agents)],
            i + 1,
            start_ms=i * 3_600_000,
            duration_ms=10 + i,
            outcome=["ok", "ok", "error", "killed", "ok"][i % 5],
            llm=[Llm(tokens_in=10 * i + 1, tokens_out=i, cached=i % 3 or None, error=i % 11 == 0) for _ in range(i % 4)]
            if i % 5 != 3
            else [],
            tools=[
                Tool(["get_quote", "compute_var", "place_order"][(i + 2 * j) % 3], error=(3 * i + j) % 7 == 0, duration_ms=1 + (i + j) % 5)
                for j in range(i % 4)
            ]
            if i % 5 != 3
            else [],
            signals=[
                ("SPX", "up"),
                Signal(["AAA", "BBB"][i % 2], ["up", "down", "flat"][i % 3], 0.1 + (i % 9) / 10, (i % 7) / 7 - 0.5, as_of=AS_OF[i % 4]),
            ],
            kill_reason="paused by operator" if i % 5 == 3 else None,
            error_type="builtins.ValueError" if i % 5 == 2 else None,
            totals=i % 5 != 3,
            as_of=AS_OF[i % 4],
            status=["shadow", "live"][i % 2],
            losses=(i // 4, i % 2) if i % 3 == 0 else None,
        )
        for i in range(count)
    ]


def span_lines(spans: list[dict], per_line: int = 1, simulated: bool = False, instance: str | None = None, ascii_only=False) -> list[str]:
    return [dump(request(spans[i : i + per_line], simulated, instance), ascii_only) for i in range(0, len(spans), per_line)]


def with_status(span: dict, code: int, message: str = "") -> dict:
    span = copy.deepcopy(span)
    span["status"] = {"message": message, "code": code} if message else {"code": code}
    return span


# --- canonical inputs: the native core must take them and agree ---------------------------------------

CANONICAL: dict[str, Any] = {}


def canonical(function):
    CANONICAL[function.__name__] = function
    return function


@canonical
def errors() -> list[str]:
    runs = [
        Run("a", i, outcome="error", error_type="builtins.ValueError", message=f"bad input {i}", llm=[Llm(error=i % 2 == 0)])
        for i in range(1, 9)
    ]
    return lines_for(runs, per_line=2)


@canonical
def killed_runs() -> list[str]:
    runs = [Run("a", 1, outcome="killed", kill_reason="paused by operator", totals=False)]
    runs += [Run("a", 2, start_ms=5, outcome="killed", kill_reason="retired", totals=True)]
    runs += [Run("b", 3, outcome="killed", kill_reason=None, totals=False), Run("b", 4, start_ms=9, outcome="killed", kill_reason="z")]
    runs += [Run("a", 5, start_ms=5, outcome="killed", kill_reason="a tie on time", totals=False)]
    return lines_for(runs, per_line=3)


@canonical
def missing_outcome() -> list[str]:
    failed = spans_of(Run("a", 1, outcome=None, llm=[Llm()]))
    failed[-1] = with_status(failed[-1], 2, "exploded")
    fine = spans_of(Run("a", 2, outcome=None, llm=[Llm()]))
    unset = spans_of(Run("b", 3, outcome=None))
    unset[-1] = with_status(unset[-1], 1)
    no_message = spans_of(Run("b", 4, outcome=None, error_type="E"))
    no_message[-1] = with_status(no_message[-1], 2)
    return span_lines(failed + fine + unset + no_message, per_line=2)


@canonical
def mismatched_totals() -> list[str]:
    runs = [
        Run("a", 1, llm=[Llm(), Llm(tokens_in=7)], totals={S.RUN_INPUT_TOKENS: 1}),
        Run("a", 2, llm=[Llm()], totals={S.RUN_COST_USD: 123.0}),
        Run("a", 3, llm=[Llm()], totals={S.RUN_OUTPUT_TOKENS: 999, S.RUN_CACHED_INPUT_TOKENS: 3, S.RUN_UNPRICED_LLM_CALLS: 2}),
        Run("b", 4, llm=[Llm(), Llm()], totals={S.RUN_LLM_CALLS: 5}),  # waits for LLM spans that never come
        Run("b", 5, llm=[Llm(), Llm(), Llm()], totals={S.RUN_LLM_CALLS: 1}),
        Run("b", 6, llm=[Llm()], totals={S.RUN_COST_USD: 0.0000151}),  # within the tolerance or not: as python says
        Run("c", 7, llm=[Llm()], price=(1.0, 1.0, 1.0)),
        Run("c", 8, llm=[], totals={S.RUN_LLM_CALLS: 0}),
    ]
    return lines_for(runs, per_line=1)


@canonical
def extra_llm_after_close() -> list[str]:
    run = Run("a", 1, llm=[Llm(), Llm(tokens_in=50)])
    totals = {S.RUN_LLM_CALLS: 1, S.RUN_INPUT_TOKENS: 100, S.RUN_OUTPUT_TOKENS: 10, S.RUN_CACHED_INPUT_TOKENS: 0}
    first, late, root = spans_of(Run("a", 1, llm=run.llm, totals={**totals, S.RUN_COST_USD: (100 * 0.15 + 10 * 0.6) / 1e6}))
    other = spans_of(Run("b", 2, llm=[Llm()]))
    return span_lines([first, root, *other, late], per_line=1)


@canonical
def span_id_before_trace_id() -> list[str]:
    """Ids in either order in a span's object, a span given twice: its fingerprint is made (and its
    slot prefetched, ``Scan::span_then``) once both ids are read, whichever comes first."""
    spans = [span for trace in range(1, 4) for span in spans_of(Run("a", trace, llm=[Llm()]))]
    swapped = [{"spanId": span["spanId"], **{k: v for k, v in span.items() if k != "spanId"}} for span in spans[::2]]
    return span_lines([*swapped, *spans[1::2], swapped[0]], per_line=2)


@canonical
def llm_after_root() -> list[str]:
    spans = []
    for trace in range(1, 6):
        llm_and_root = spans_of(Run("a", trace, start_ms=trace * 1000, llm=[Llm(tokens_in=trace), Llm(cached=1)]))
        spans += [llm_and_root[-1], *llm_and_root[:-1]]  # the root first: LLM spans in later lines
    return span_lines(spans, per_line=1)


@canonical
def llm_before_root_in_other_lines() -> list[str]:
    runs = [Run(["a", "b"][t % 2], t, start_ms=t * 1000, llm=[Llm(tokens_in=t) for _ in range(t % 4)]) for t in range(1, 12)]
    lines = lines_for(runs, per_line=1)
    return lines[::2] + lines[1::2]  # interleaved: some roots come lines after their LLM spans


@canonical
def duplicate_lines() -> list[str]:
    lines = lines_for(mixed_runs(20), per_line=3)
    return lines + lines[:4] + lines[2:3]  # exporter retries


@canonical
def duplicate_roots() -> list[str]:
    spans = spans_of(Run("a", 1, llm=[Llm()]))
    again = copy.deepcopy(spans[-1])
    again["spanId"] = "0000000100000099"  # a second root with the same run id
    return span_lines([*spans, again, *spans_of(Run("b", 2, run_id="same")), *spans_of(Run("b", 3, run_id="same"))])


@canonical
def simulated_resource() -> list[str]:
    lines = lines_for(mixed_runs(10), per_line=2, simulated=True)
    return lines + lines_for([Run("a", 50, llm=[Llm(), Llm(model="gpt-4o")])], simulated=False)


@canonical
def unpriced_models() -> list[str]:
    runs = [
        Run("a", 1, llm=[Llm(model="mystery-model")], price=None, totals={S.RUN_UNPRICED_LLM_CALLS: 1}),
        Run("a", 2, llm=[Llm(model="mystery-model"), Llm()], price=None),
        Run("b", 3, llm=[Llm(model="")]),
        Run("b", 4, llm=[Llm(model="gpt-4o"), Llm(model="gpt-4o-mini-2024-07-18")]),
    ]
    spans = [span for run in runs for span in spans_of(run)]
    no_model = copy.deepcopy(spans[0])
    no_model["spanId"] = "00000001000000ff"
    no_model["attributes"] = [kv for kv in no_model["attributes"] if "model" not in kv["key"]]
    request_only = copy.deepcopy(spans[0])
    request_only["spanId"] = "00000001000000fe"
    request_only["attributes"] = [kv for kv in request_only["attributes"] if kv["key"] != S.GEN_AI_RESPONSE_MODEL]
    return span_lines([*spans, no_model, request_only], per_line=2)


@canonical
def several_agents() -> list[str]:
    return lines_for(mixed_runs(60, agents=tuple(f"agent-{k}" for k in range(9))), per_line=5)


@canonical
def unicode_and_html_names() -> list[str]:
    runs = [
        Run(
            "<b>été</b> & <script>alert(1)</script>",
            1,
            llm=[Llm(model="模型<i>x</i>")],
            signals=[Signal("ÄÖ<i>", "up", as_of="2024-01-02")],
        ),
        Run("\u2603 snowman \U0001f600", 2, llm=[Llm(model="m\u00e9\u00e8")], signals=[("\u00e9", "down")], kill_reason=None),
        Run("tab\there", 3, outcome="killed", kill_reason="<b>why</b> \u00e9", totals=False),
    ]
    return lines_for(runs, per_line=2)


@canonical
def long_names() -> list[str]:
    long = "x" * 150 + "\u00e9" * 100
    runs = [
        Run(long, 1, llm=[Llm(model="m" * 300)], signals=[Signal("S" * 250, "up", as_of="2024-01-02")], invalid=["r" * 400]),
        Run(long + "2", 2, outcome="error", error_type="E" * 250, message="M" * 500, run_id="R" * 250),
        Run("k", 3, outcome="killed", kill_reason="K" * 400, totals=False),
        Run("a" * 200, 4, outcome="o" * 210),
    ]
    return lines_for(runs, per_line=1)


@canonical
def json_escapes() -> list[str]:
    runs = [
        Run('quote " back \\ slash / nl \n tab \t', 1, llm=[Llm(model='m "1" \\')], signals=[Signal('S"\\/', "up", as_of="2024-01-02")]),
        Run("\u00e9t\u00e9 \U0001f600 \x01\x1f", 2, outcome="error", message="line\nbreak \u2028 \u2029", llm=[Llm()]),
    ]
    ascii_lines = [dump(request(spans_of(run)), ascii_only=True) for run in runs]
    slashed = [text.replace("/", "\\/") for text in ascii_lines]
    return [*ascii_lines, *[dump(request(spans_of(Run("z", 3 + i))), ascii_only=True) for i in range(2)], *slashed[:1]]


@canonical
def telemetry_losses() -> list[str]:
    lines = lines_for([Run("a", 1, losses=(3, 1)), Run("a", 2, losses=(5, 0))], instance="process-1")
    lines += lines_for([Run("b", 3, losses=(1, 7))], instance="process-2")
    lines += lines_for([Run("b", 4, losses=(2, 2)), Run("c", 5, losses=(0, 0))])  # no instance id
    root = spans_of(Run("c", 6))[-1]
    root["attributes"] += attrs({S.TELEMETRY_SPANS_DROPPED: 4})  # one counter only
    return [*lines, *span_lines([root], instance="process-1")]


@canonical
def supervisor_spans() -> list[str]:
    spans = [
        other_span(90, 1, S.SPAN_SUPERVISOR_RUN, {S.SUPERVISOR_DECISIONS: 2, S.SUPERVISOR_POLICY_FILE: "policy.yaml"}),
        other_span(90, 2, S.SPAN_SUPERVISOR_DECIDE, {S.SUPERVISOR_AGENT: "a", S.SUPERVISOR_ACTION: "retire", S.GEN_AI_AGENT_NAME: "a"}),
        other_span(90, 3, S.SPAN_SUPERVISOR_DECIDE, {S.SUPERVISOR_AGENT: "b"}, events=signal_events([("AAA", "up")])),
    ]
    return [*lines_for([Run("a", 1, llm=[Llm()])]), *span_lines(spans, per_line=3)]


@canonical
def other_spans_with_alpha_events() -> list[str]:
    spans = [
        other_span(5, 3, "tool fetch_prices", {S.GEN_AI_AGENT_NAME: "a"}, events=signal_events([("AAA", "up"), ("BBB", "flat")])),
        other_span(5, 4, "tool score", {S.GEN_AI_AGENT_NAME: "b"}, events=[kill_switch_event()], start_ms=DAY_NS / MS),
        other_span(5, 5, "no agent", {}, events=signal_events([("AAA", "down")])),
        other_span(5, 6, "plain", {"http.method": "GET", S.GEN_AI_OPERATION_NAME: "embeddings"}),
        other_span(5, 7, "invalid", {S.GEN_AI_AGENT_NAME: "c"}, events=[{"name": S.EVENT_ALPHA_SIGNAL_INVALID, "attributes": []}]),
    ]
    return [*span_lines(spans, per_line=2), *lines_for([Run("a", 6, signals=[Signal("AAA", "up", as_of="2024-01-02")])])]


@canonical
def invalid_signals_and_kill_switch_errors() -> list[str]:
    root = spans_of(Run("a", 1, invalid=["NaN prob_up", "prob_up > 1", ""]))[-1]
    root["events"] += [
        {"timeUnixNano": str(T0), "name": S.EVENT_ALPHA_SIGNAL_INVALID, "attributes": []},
        {"timeUnixNano": str(T0), "name": S.EVENT_ALPHA_SIGNAL_INVALID, "attributes": attrs({"other": "x"})},
        kill_switch_event(),
        kill_switch_event("again"),
        {"timeUnixNano": str(T0), "name": "some.other.event", "attributes": attrs({"k": 1})},
    ]
    return [*span_lines([root]), *lines_for([Run("b", 2, invalid=[f"reason {k}" for k in range(120)])])]


@canonical
def signals_all_fields() -> list[str]:
    signals = [
        Signal("AAA", "up", 0.7, 0.2, as_of="2024-01-02", horizon=5, tradable=True),
        Signal("AAA", "up", 0.3, -0.2, as_of="2024-01-02", horizon=1, tradable=False, time_ns=T0 + 5),  # supersedes
        Signal("BBB", "down", 0.0, -1.0, as_of="2024-01-03", horizon=20),
        Signal("BBB", "flat", 1.0, 0.0, as_of="2024-01-03", horizon=1, time_ns=T0),  # same time, later position
        Signal("GAP", "flat", 0.5, 3.5, as_of="2024-01-04T15:30:00Z"),
    ]
    runs = [Run(["a", "b"][t % 2], t, start_ms=t, signals=signals, as_of="2024-01-02") for t in range(1, 5)]
    return lines_for(runs, per_line=3)


@canonical
def many_agents_sharing_signal_names() -> list[str]:
    """60 agents sharing symbols and directions (the core interns them once a part, ``names.rs``), an
    agent whose (symbol, direction) table and signal store fill past 1,000 (``MAX_DISTINCT``: then
    "(other)"), a symbol that is "(other)" itself, and an agent whose table fills with the pairs
    the others have."""
    runs = [
        Run(
            f"agent-{k:02d}",
            k + 1,
            start_ms=k,
            signals=[
                Signal(["AAA", "BBB", "(other)", ""][(k + j) % 4], ["up", "down", "flat", "sideways"][(k * j) % 4], as_of=AS_OF[j % 4])
                for j in range(6)
            ],
            as_of=AS_OF[k % 4],
        )
        for k in range(60)
    ]
    wide = [Signal(f"S{j}", ["up", "down"][j % 2], as_of="2024-01-02") for j in range(1_010)]
    runs.append(Run("wide", 100, signals=wide[:505], as_of="2024-01-02"))
    runs.append(
        Run(
            "wide",
            101,
            signals=[*wide[505:], Signal("AAA", "up", as_of="2024-01-03"), Signal("S1", "flat", as_of="2024-01-03")],
            as_of="2024-01-02",
        )
    )
    shared = [Signal(["AAA", "BBB"][j % 2] if j < 4 else f"T{j}", "up", as_of="2024-01-02") for j in range(1_003)]
    runs.append(
        Run(
            "filled",
            102,
            signals=[*shared, Signal("AAA", "down", as_of="2024-01-02"), Signal("(other)", "up", as_of="2024-01-02")],
            as_of="2024-01-02",
        )
    )
    return lines_for(runs, per_line=7)


@canonical
def signals_missing_fields() -> list[str]:
    short = Run("a", 1, signals=[("SPX", "up"), ("NDX", "??"), ("", "down")])  # no as-of date, no horizon: unusable
    bad_values = Run(
        "b",
        2,
        signals=[
            Signal("AAA", "up", prob_up=1.5),
            Signal("AAA", "sideways"),
            Signal("", "up"),
            Signal("AAA", "up", horizon=0),
            Signal("AAA", "up", as_of="not a date"),
            Signal("AAA", "up", as_of="2024-13-01"),
            Signal("AAA", "up", as_of=" "),
            Signal("AAA", "up", prob_up=-0.1),
        ],
        as_of="2024-01-02",
    )
    root = spans_of(Run("c", 3, signals=[Signal("AAA", "up")], as_of="2024-01-05"))[-1]
    partial = copy.deepcopy(root["events"][0])
    partial["attributes"] = [kv for kv in partial["attributes"] if kv["key"] != S.ALPHA_HORIZON]
    no_symbol = copy.deepcopy(root["events"][0])
    no_symbol["attributes"] = no_symbol["attributes"][1:]
    reordered = copy.deepcopy(root["events"][0])
    reordered["attributes"] = reordered["attributes"][::-1]
    horizon_text = copy.deepcopy(root["events"][0])
    for kv in horizon_text["attributes"]:
        if kv["key"] == S.ALPHA_HORIZON:
            kv["value"] = {"stringValue": "5"}
    horizon_number = copy.deepcopy(root["events"][0])
    for kv in horizon_number["attributes"]:
        if kv["key"] == S.ALPHA_HORIZON:
            kv["value"] = {"intValue": "7"}
    no_tradable = copy.deepcopy(root["events"][0])
    no_tradable["attributes"] = [kv for kv in no_tradable["attributes"] if kv["key"] != S.ALPHA_TRADABLE]
    root["events"] += [partial, no_symbol, reordered, horizon_text, horizon_number, no_tradable]
    return [*lines_for([short, bad_values]), *span_lines([root])]


@canonical
def resource_variants() -> list[str]:
    spans = spans_of(Run("a", 1, llm=[Llm()]))
    as_text = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": S.RESOURCE_LLM_SIMULATED, "value": {"stringValue": "true"}}]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }
    no_resource = {"resourceSpans": [{"scopeSpans": [{"spans": spans_of(Run("b", 2, llm=[Llm()]))}]}]}
    two_scopes = request(spans_of(Run("c", 3, llm=[Llm()])))
    two_scopes["resourceSpans"][0]["scopeSpans"].append({"scope": {"name": "other"}, "spans": spans_of(Run("c", 4, llm=[Llm()]))})
    two_scopes["resourceSpans"].append(request(spans_of(Run("d", 5)), simulated=True, instance="p")["resourceSpans"][0])
    return [dump(as_text), dump(no_resource), dump(two_scopes), dump({"resourceSpans": [{"scopeSpans": []}]})]


@canonical
def key_orders() -> list[str]:
    """The core adds a line's spans as it parses them (``native/src/stream.rs``): keys in any order
    (``scopeSpans`` before its ``resource``: a simulated, tail-sampled resource named after its
    spans), unknown keys anywhere, scopes without spans, several resources and scopes in a line."""
    simulated = [
        {"key": S.RESOURCE_LLM_SIMULATED, "value": {"boolValue": True}},
        {"key": S.RESOURCE_SAMPLING, "value": {"stringValue": "tail"}},
        {"key": "service.instance.id", "value": {"stringValue": "p1"}},
    ]
    after = {
        "schemaUrl": "x",
        "scopeSpans": [{"spans": spans_of(Run("a", 1, llm=[Llm(), Llm()]))}, {"scope": {"name": "s"}}],
        "resource": {"attributes": simulated},
    }
    before = {
        "resource": {"attributes": simulated, "droppedAttributesCount": 0},
        "x": [{"y": [1, 2.5, None, True]}],
        "scopeSpans": [{"spans": spans_of(Run("b", 2, llm=[Llm()])), "scope": {"name": "t"}}, {"spans": []}],
    }
    without_resource = {"scopeSpans": [{"spans": spans_of(Run("c", 3, llm=[Llm()]))}]}
    first = {"x": {"resourceSpans": 5}, "resourceSpans": [after, before, without_resource]}
    second = {"resourceSpans": [{"scopeSpans": [{"spans": spans_of(Run("d", 4))}], "resource": None}], "y": 1}
    return [dump(first), dump(second), dump({"z": [], "resourceSpans": [{"resource": {"attributes": []}}]})]


@canonical
def runs_without_run_id() -> list[str]:
    spans = spans_of(Run("a", 1, llm=[Llm()]))
    for span in spans:
        span["attributes"] = [kv for kv in span["attributes"] if kv["key"] != S.AGENT_RUN_ID]
    root = spans_of(Run("b", 2))[-1]
    root["attributes"] = [kv for kv in root["attributes"] if kv["key"] != S.GEN_AI_AGENT_NAME]  # agent from the span name
    nameless = spans_of(Run("c", 3))[-1]
    nameless["attributes"] = [kv for kv in nameless["attributes"] if kv["key"] != S.GEN_AI_AGENT_NAME]
    nameless["name"] = "something"
    uuid_run = spans_of(Run("d", 4, run_id="0f8fad5b-d9cb-469f-a165-70867728950e", llm=[Llm()]))
    return span_lines([*spans, root, nameless, *uuid_run])


@canonical
def bad_durations_and_days() -> list[str]:
    runs = [Run("a", t, start_ms=t * 20_000_000, duration_ms=t * 10) for t in range(1, 8)]
    spans = [span for run in runs for span in spans_of(run)]
    backwards = spans_of(Run("b", 20))[-1]
    backwards["endTimeUnixNano"] = str(int(backwards["startTimeUnixNano"]) - 1)
    zero = spans_of(Run("b", 21))[-1]
    zero["startTimeUnixNano"] = "0"
    number = spans_of(Run("b", 22))[-1]
    number["startTimeUnixNano"] = T0  # a JSON number: OTLP/JSON allows it
    number["endTimeUnixNano"] = T0 + 5
    return span_lines([*spans, backwards, zero, number], per_line=4)


@canonical
def bench_like_mixture() -> list[str]:
    return lines_for(mixed_runs(80), per_line=16)


for _fixture in genai_fixtures.FIXTURES:  # other instrumentations' span shapes, hand-written
    CANONICAL[f"fixture_{_fixture}"] = functools.partial(genai_fixtures.lines, _fixture)


@canonical
def other_instrumentations_together() -> list[str]:
    """Every fixture in one file, with alphatrace's own runs between them."""
    own = lines_for(mixed_runs(9), per_line=2)
    return [line for name in genai_fixtures.FIXTURES for line in genai_fixtures.lines(name)] + own


BOM = b"\xef\xbb\xbf"


@canonical
def byte_order_marks() -> list[bytes]:
    """A UTF-8 byte order mark at the start of lines (and of the unterminated last one)."""
    lines = [text.encode() for text in lines_for(mixed_runs(12), per_line=2)]
    return [BOM + lines[0], *lines[1:3], BOM + lines[3], BOM + b"\n", BOM + b"  \n", *lines[4:-1], BOM + lines[-1].rstrip(b"\n")]


def conflicting_copies(span: dict) -> list[dict]:
    """``span`` again with its ids and other content: one change per copy, in each thing the content
    check covers (``fingerprints.content_check``)."""
    changes = [
        lambda s: s.update(startTimeUnixNano=str(int(s["startTimeUnixNano"]) + 1)),
        lambda s: s.update(endTimeUnixNano=str(int(s["endTimeUnixNano"]) + 1)),
        lambda s: s.update(name=s["name"] + "é"),
        lambda s: s.update(status={"code": 2}),
        lambda s: s.update(status={"code": s.get("status", {}).get("code", 0), "message": "other"}),
        lambda s: s["attributes"].append({"key": "extra", "value": {"intValue": "1"}}),
        lambda s: s.update(events=[*s.get("events", []), {"name": "extra"}]),
    ]
    copies = []
    for change in changes:
        again = copy.deepcopy(span)
        change(again)
        copies.append(again)
    return copies


def conflicting_duplicates() -> list[str]:
    """Spans again with the same ids: exact copies (retries) and copies with other content, in the
    same line and in later lines (hostile: the core declines a conflicting copy)."""
    llm, root = spans_of(Run("a", 1, llm=[Llm()], signals=[Signal("AAA", "up")]))
    others = spans_of(Run("b", 2, llm=[Llm(), Llm(tokens_in=7)]))
    lines = span_lines([llm, *conflicting_copies(llm)[:2], root], per_line=4)
    lines += span_lines([*conflicting_copies(root), root, llm, *others, *conflicting_copies(others[1])], per_line=3)
    return lines + lines[:1]  # and a whole line again: exact copies of the first copies


@canonical
def content_check_inputs(changed: bool = False) -> list[str]:
    """What the content check reads, in odd forms (times as numbers, negative, beyond 64 bits, as
    text Python's int() reads; status codes; names beyond ASCII): each span first, then an exact
    copy, and (``changed``, hostile) a copy with its start time one later (the same time where both
    read as 0)."""
    forms = [
        {"startTimeUnixNano": T0, "endTimeUnixNano": T0 + 5},
        {"startTimeUnixNano": "-5", "endTimeUnixNano": -7},
        {"startTimeUnixNano": str(2**64 + 3), "endTimeUnixNano": str(2**64 - 1)},
        {"startTimeUnixNano": " 12", "endTimeUnixNano": "1_000"},
        {"status": {"code": -3, "message": "ünïcödé"}},
        {"status": {"code": 2**62}},
        {"status": {}},
        {"name": "名前" * 40},
        {"name": ""},
    ]
    spans = []
    for i, form in enumerate(forms):
        span = other_span(300 + i, 1, f"form {i}", {S.GEN_AI_AGENT_NAME: "a"}, events=signal_events([("AAA", "up")]))
        span.update(form)
        later = copy.deepcopy(span)
        start = later["startTimeUnixNano"]
        later["startTimeUnixNano"] = start + 1 if isinstance(start, int) else str(int(start.strip().replace("_", "")) + 1)
        spans += [span, copy.deepcopy(span), *([later] if changed else [])]
    return span_lines(spans, per_line=4)


# --- hostile inputs: decline or agree, never differ ---------------------------------------------------


def _base() -> list[dict]:
    return spans_of(Run("a", 1, llm=[Llm()], signals=[Signal("AAA", "up", as_of="2024-01-02")], as_of="2024-01-02"))


def _set_attr(span: dict, key: str, value: Any) -> dict:
    span = copy.deepcopy(span)
    for kv in span["attributes"]:
        if kv["key"] == key:
            kv["value"] = value
            return span
    span["attributes"].append({"key": key, "value": value})
    return span


def _set_event_attr(span: dict, key: str, value: Any) -> dict:
    span = copy.deepcopy(span)
    for kv in span["events"][0]["attributes"]:
        if kv["key"] == key:
            kv["value"] = value
    return span


def _spans_line(*spans: dict) -> str:
    return dump(request(list(spans)))


def _hostile_cases() -> dict[str, list[str | bytes]]:
    llm, root = _base()
    good = lines_for(mixed_runs(8), per_line=2)
    cases: dict[str, list[str | bytes]] = {
        "corrupt_line": [good[0], "corrupt line\n", *good[1:]],
        "binary_garbage": [good[0], b"\x00\xff\xfe garbage\n", *good[1:]],
        "invalid_utf8_in_string": [good[0], _spans_line(llm).replace("gpt-4o-mini", "gpt\udcff").encode("utf-8", "surrogateescape")],
        "truncated_line": [good[0], good[1][: len(good[1]) // 2] + "\n", *good[2:]],
        "empty_object": [good[0], "{}\n", *good[1:]],
        "empty_resource_spans": [good[0], '{"resourceSpans":[]}\n', '{"resourceSpans":[],"x":1}\n'],
        "not_an_object": ["[1,2,3]\n", '"text"\n', "5\n", "null\n", *good],
        "blank_lines": ["\n", *good[:2], "   \n", "\t\r\n", "\n\n", *good[2:], "  "],
        "crlf_line_endings": [text.replace("\n", "\r\n") for text in good],
        "leading_bom": [b"\xef\xbb\xbf" + good[0].encode(), *good[1:]],
        "nul_run_then_lines": [b"\x00" * 5000 + b"\n", *good],  # what a crash can leave at the start of a file
        "nul_prefixed_line": [b"\x00" * 100 + good[0].encode(), *good[1:]],
        "zero_length_frames": [b"\x00\x00\x00\x00" * 64 + b"\n", *good],
        "trailing_garbage": [good[0].rstrip("\n") + " x\n", good[1].rstrip("\n") + "}\n", *good[2:]],
        "trailing_whitespace": [good[0].rstrip("\n") + "   \t\n", " " + good[1], *good[2:]],
        "resource_spans_wrong_type": ['{"resourceSpans":5}\n', '{"resourceSpans":{}}\n', *good],
        "scope_spans_null": ['{"resourceSpans":[{"scopeSpans":null}]}\n', '{"resourceSpans":[{"scopeSpans":[{"spans":null}]}]}\n'],
        "resource_null": ['{"resourceSpans":[{"resource":null,"scopeSpans":[{"spans":' + json.dumps([llm, root]) + "}]}]}\n"],
        "resource_attr_wrong": [
            dump({"resourceSpans": [{"resource": {"attributes": [5, {"key": S.RESOURCE_LLM_SIMULATED, "value": {"boolValue": "yes"}}]}}]}),
            dump({"resourceSpans": [{"resource": {"attributes": {}}, "scopeSpans": [{"spans": [llm, root]}]}]}),
        ],
        # found after some of the line's spans were added (the core adds them as it parses)
        "bad_span_after_good_ones": [*good[:2], _spans_line(llm, root, {**llm, "spanId": 5}), *good[2:]],
        "span_without_ids_after_good_ones": [*good[:2], _spans_line(llm, {k: v for k, v in root.items() if k != "spanId"}), *good[2:]],
        "keys_twice_after_spans": [
            good[0],
            '{"resourceSpans":[{"resource":{"attributes":[]},"scopeSpans":[{"spans":' + json.dumps([llm]) + ',"spans":[]}]}]}\n',
            '{"resourceSpans":[{"resource":{},"scopeSpans":[{"spans":' + json.dumps([llm]) + '}],"scopeSpans":[]}]}\n',
            '{"resourceSpans":[{"scopeSpans":[{"spans":' + json.dumps([root]) + '}]}],"resourceSpans":[]}\n',
            '{"resourceSpans":[{"scopeSpans":[],"resource":{},"resource":{}}]}\n',
            *good[1:],
        ],
        "trace_id_null": [_spans_line({**llm, "traceId": None}, root)],
        "trace_id_number": [_spans_line({**llm, "traceId": 5}, root)],
        "span_id_list": [_spans_line(llm, {**root, "spanId": ["a"]})],
        "missing_ids": [_spans_line({k: v for k, v in llm.items() if k not in ("traceId", "spanId")}, root), *good[:1]],
        "missing_ids_repeated": [_spans_line({k: v for k, v in root.items() if k != "spanId"})] * 2,
        "empty_ids": [_spans_line({**llm, "traceId": ""}, {**root, "spanId": ""})],
        "ids_not_hex": [_spans_line({**llm, "traceId": "z" * 32}, {**root, "spanId": "g" * 16})],
        "ids_other_lengths": [_spans_line({**llm, "traceId": "ab" * 8}, {**root, "spanId": "abc"})],
        "ids_upper_hex_digits": [
            _spans_line(*spans_of(Run("a", 0xABCDEF, llm=[Llm()]))),
            _spans_line(*[{**s, "traceId": s["traceId"].upper(), "spanId": s["spanId"].upper()} for s in spans_of(Run("a", 0xABCDEF))]),
        ],
        "ids_with_sign_or_space": [_spans_line({**llm, "traceId": "+" + llm["traceId"][1:]}, {**root, "spanId": " " + root["spanId"][1:]})],
        "ids_with_underscore": [_spans_line({**llm, "traceId": "0_" + llm["traceId"][2:]}, root)],
        "int_value_float": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": 1.5}), root)],
        "int_value_integral_float": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": 100.0}), root)],
        "int_value_number": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": 100}), root)],
        "int_value_text": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": "12abc"}), root)],
        "int_value_signs": [
            _spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": "+100"}), root),
            _spans_line(_set_attr(_base()[0], S.GEN_AI_USAGE_OUTPUT_TOKENS, {"intValue": " 10 "}), _base()[1]),
            _spans_line(_set_attr(spans_of(Run("b", 2, llm=[Llm()]))[0], S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": "1_000"})),
            _spans_line(_set_attr(spans_of(Run("b", 3, llm=[Llm()]))[0], S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": "0100"})),
            _spans_line(_set_attr(spans_of(Run("b", 4, llm=[Llm()]))[0], S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": "١٢"})),
        ],
        "int_value_as_double": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"doubleValue": 100.0}), root)],
        "int_value_null": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": None}), root)],
        "int_value_bool": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": True}), root)],
        "negative_tokens": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": "-5"}), root)],
        "cached_above_input": [_spans_line(_set_attr(llm, S.GEN_AI_USAGE_CACHED_INPUT_TOKENS, {"intValue": "1000"}), root)],
        "huge_tokens": [
            _spans_line(_set_attr(llm, S.GEN_AI_USAGE_INPUT_TOKENS, {"intValue": "1000000000000000000000"}), root),
            _spans_line(_set_attr(spans_of(Run("b", 2, llm=[Llm()]))[0], S.GEN_AI_USAGE_OUTPUT_TOKENS, {"intValue": str(10**15 + 1)})),
            _spans_line(_set_attr(spans_of(Run("b", 3, llm=[Llm()]))[0], S.GEN_AI_USAGE_OUTPUT_TOKENS, {"intValue": str(2**63)})),
            _spans_line(_set_attr(spans_of(Run("b", 4, llm=[Llm()]))[0], S.GEN_AI_USAGE_OUTPUT_TOKENS, {"intValue": 2**64 + 1})),
            _spans_line(_set_attr(spans_of(Run("b", 5, llm=[Llm()]))[0], S.GEN_AI_USAGE_OUTPUT_TOKENS, {"intValue": str(10**15)})),
        ],
        "huge_root_totals": [
            _spans_line(llm, _set_attr(root, S.RUN_INPUT_TOKENS, {"intValue": str(10**30)})),
            _spans_line(*[_set_attr(s, S.RUN_LLM_CALLS, {"intValue": str(2**64)}) for s in spans_of(Run("b", 2, llm=[Llm()]))]),
            _spans_line(*[_set_attr(s, S.RUN_LLM_CALLS, {"intValue": "-1"}) for s in spans_of(Run("b", 3, llm=[Llm()]))]),
            _spans_line(*[_set_attr(s, S.RUN_LLM_CALLS, {"doubleValue": 1.0}) for s in spans_of(Run("b", 4, llm=[Llm()]))]),
            _spans_line(*[_set_attr(s, S.RUN_LLM_CALLS, {"stringValue": "1"}) for s in spans_of(Run("b", 5, llm=[Llm()]))]),
        ],
        "double_value_bool": [_spans_line(llm, _set_attr(root, S.RUN_COST_USD, {"doubleValue": True}))],
        "double_value_text": [_spans_line(llm, _set_attr(root, S.RUN_COST_USD, {"doubleValue": "0.5"}))],
        "double_value_int": [_spans_line(llm, _set_attr(root, S.RUN_COST_USD, {"doubleValue": 0}))],
        "double_value_nan_inf": [
            _spans_line(llm, _set_attr(root, S.RUN_COST_USD, {"doubleValue": "NaN"})),
            _spans_line(*[_set_attr(s, S.RUN_COST_USD, {"doubleValue": "Infinity"}) for s in spans_of(Run("b", 2, llm=[Llm()]))]),
            _spans_line(*[_set_attr(s, S.RUN_COST_USD, {"doubleValue": "-Infinity"}) for s in spans_of(Run("b", 3, llm=[Llm()]))]),
            _spans_line(*[_set_attr(s, S.RUN_COST_USD, {"doubleValue": "nan"}) for s in spans_of(Run("b", 4, llm=[Llm()]))]),
            _spans_line(*[_set_attr(s, S.RUN_COST_USD, {"intValue": "0"}) for s in spans_of(Run("b", 5))]),
            _spans_line(*[_set_attr(s, S.RUN_COST_USD, {"doubleValue": 1e308}) for s in spans_of(Run("b", 6))]),
        ],
        "double_literals": [
            _spans_line(llm, root).replace('"doubleValue":0.6', '"doubleValue":6e-1'),
            _spans_line(*spans_of(Run("c", 2, llm=[Llm()]))).replace('"doubleValue":0.0000', '"doubleValue":0.00000'),
            _spans_line(*spans_of(Run("c", 3, signals=[Signal("AAA", "up", as_of="2024-01-02")], as_of="2024-01-02"))).replace(
                '"doubleValue":0.1}', '"doubleValue":1.0000000000000000000000000000001E-1}'
            ),
            _spans_line(*spans_of(Run("c", 4, signals=[Signal("AAA", "up", prob_up=1.0, as_of="2024-01-02")]))).replace(
                '"doubleValue":1.0}', '"doubleValue":1e400}'
            ),
            _spans_line(*spans_of(Run("c", 5, signals=[Signal("AAA", "up", prob_up=0.0, as_of="2024-01-02")]))).replace(
                '"doubleValue":0.0}', '"doubleValue":-0.0}'
            ),
            # msgspec reads the integer -0 as 0.0 (serde_json: -0.0)
            _spans_line(*spans_of(Run("c", 6, signals=[Signal("AAA", "up", prob_up=0.0, as_of="2024-01-02")]))).replace(
                '"doubleValue":0.0}', '"doubleValue":-0}'
            ),
        ],
        "signal_doubles_odd": [
            _spans_line(llm, _set_event_attr(root, S.ALPHA_PROB_UP, {"doubleValue": "Infinity"})),
            _spans_line(*[_set_event_attr(s, S.ALPHA_SCORE_FINAL, {"doubleValue": "NaN"}) for s in _base()[1:]]),
            _spans_line(
                *[_set_event_attr(s, S.ALPHA_PROB_UP, {"doubleValue": "0.5"}) for s in spans_of(Run("d", 3, signals=[Signal("A", "up")]))]
            ),
            _spans_line(
                *[_set_event_attr(s, S.ALPHA_PROB_UP, {"intValue": "1"}) for s in spans_of(Run("d", 4, signals=[Signal("A", "up")]))]
            ),
            _spans_line(
                *[_set_event_attr(s, S.ALPHA_PROB_UP, {"doubleValue": 1}) for s in spans_of(Run("d", 5, signals=[Signal("A", "up")]))]
            ),
            _spans_line(
                *[_set_event_attr(s, S.ALPHA_PROB_UP, {"stringValue": "1"}) for s in spans_of(Run("d", 6, signals=[Signal("A", "up")]))]
            ),
        ],
        "signal_horizon_odd": [
            _spans_line(*[_set_event_attr(s, S.ALPHA_HORIZON, {"intValue": h}) for s in spans_of(Run("d", t, signals=[Signal("A", "up")]))])
            for t, h in enumerate(["99999999999999999999", str(2**63 - 1), str(2**63), "-3", "0x10", 5, 5.0, " 7", "+7", "١"], start=1)
        ]
        + [_spans_line(*[_set_event_attr(s, S.ALPHA_HORIZON, None) for s in spans_of(Run("d", 30, signals=[Signal("A", "up")]))])],
        "signal_as_of_formats": [
            _spans_line(
                *[_set_event_attr(s, S.ALPHA_AS_OF, {"stringValue": text}) for s in spans_of(Run("d", t, signals=[Signal("A", "up")]))]
            )
            for t, text in enumerate(
                [
                    "20240102",
                    "2024-W01-1",
                    "2024-002",
                    "2024-01-02junk",
                    " 2024-01-02",
                    "2024-1-2",
                    "0001-01-01",
                    "9999-12-31",
                    "2024-02-30",
                ],
                start=1,
            )
        ]
        + [
            _spans_line(
                *[_set_event_attr(s, S.ALPHA_AS_OF, {"intValue": "5"}) for s in spans_of(Run("d", 40, signals=[Signal("A", "up")]))]
            )
        ],
        "signal_tradable_odd": [
            _spans_line(
                *[_set_event_attr(s, S.ALPHA_TRADABLE, v) for s in spans_of(Run("d", t, signals=[Signal("A", "up", tradable=True)]))]
            )
            for t, v in enumerate([{"boolValue": "true"}, {"stringValue": "true"}, None, {"boolValue": None}, {"boolValue": 1}], start=1)
        ],
        "signal_event_time_odd": [
            _spans_line(*[_set_signal_time(s, v) for s in spans_of(Run("d", t, signals=[Signal("A", "up")] * 2, as_of="2024-01-02"))])
            for t, v in enumerate(["abc", "-5", str(2**64), str(2**64 - 1), 12.5, None, "", 7], start=1)
        ],
        "string_value_number": [_spans_line(_set_attr(llm, S.GEN_AI_AGENT_NAME, {"stringValue": 5}), root)],
        "agent_name_null": [
            _spans_line(_set_attr(llm, S.GEN_AI_AGENT_NAME, {"stringValue": None}), _set_attr(root, S.GEN_AI_AGENT_NAME, {}))
        ],
        "agent_as_int": [
            _spans_line(_set_attr(llm, S.GEN_AI_AGENT_NAME, {"intValue": "5"}), _set_attr(root, S.GEN_AI_AGENT_NAME, {"intValue": "5"}))
        ],
        "operation_not_string": [_spans_line(_set_attr(llm, S.GEN_AI_OPERATION_NAME, {"intValue": "1"}), root)],
        "value_null": [_spans_line({**llm, "attributes": [{"key": S.GEN_AI_OPERATION_NAME, "value": None}]}, root)],
        "value_missing": [_spans_line({**llm, "attributes": [{"key": S.GEN_AI_OPERATION_NAME}]}, root)],
        "key_missing": [_spans_line({**llm, "attributes": [{"value": {"stringValue": "chat"}}]}, root)],
        "key_not_string": [_spans_line({**llm, "attributes": [{"key": 5, "value": {"stringValue": "chat"}}]}, root)],
        "attributes_not_a_list": [_spans_line({**llm, "attributes": {"not": "a list"}}, root), *good[:1]],
        "attributes_of_non_objects": [_spans_line({**llm, "attributes": [1, "x", None]}, root)],
        "attributes_null": [_spans_line({**llm, "attributes": None}, root)],
        "events_not_a_list": [_spans_line(llm, {**root, "events": {}})],
        "event_attributes_wrong": [_spans_line(llm, {**root, "events": [{"name": S.EVENT_ALPHA_SIGNAL, "attributes": 5}]})],
        "event_name_not_string": [_spans_line(llm, {**root, "events": [{"name": 5}]})],
        "status_odd": [
            _spans_line(llm, {**root, "status": None}),
            _spans_line(*[{**s, "status": {"code": "2"}} for s in spans_of(Run("b", 2, outcome=None, llm=[Llm()]))]),
            _spans_line(*[{**s, "status": {"code": 2.0}} for s in spans_of(Run("b", 3, outcome=None, llm=[Llm()]))]),
            _spans_line(*[{**s, "status": {"code": 2, "message": None}} for s in spans_of(Run("b", 4, outcome="error"))]),
            _spans_line(*[{**s, "status": {"code": 2**70}} for s in spans_of(Run("b", 5, outcome=None))]),
            _spans_line(*[{**s, "status": "ERROR"} for s in spans_of(Run("b", 6, outcome=None))]),
        ],
        "name_not_string": [_spans_line(llm, {**root, "name": None})],
        "times_odd": [
            _spans_line(*[{**s, "startTimeUnixNano": v} for s in spans_of(Run("t", t, llm=[Llm()]))])
            for t, v in enumerate(
                ["-1000", "abc", "", "1e18", str(2**64), str(2**64 - 1), 1.5e18, -5, None, True, "  5", "+5", "-" + "9" * 36], start=1
            )
        ]
        + [
            _spans_line(*[{**s, "endTimeUnixNano": v} for s in spans_of(Run("u", 50 + t))])
            for t, v in enumerate(["x", str(2**64), -1, 2.5])
        ],
        "outcome_odd": [
            _spans_line(_set_attr(root, S.AGENT_RUN_OUTCOME, {"stringValue": "timeout"})),
            _spans_line(*[_set_attr(s, S.AGENT_RUN_OUTCOME, {"stringValue": ""}) for s in spans_of(Run("b", 2))]),
            _spans_line(*[_set_attr(s, S.AGENT_RUN_OUTCOME, {"intValue": "1"}) for s in spans_of(Run("b", 3))]),
            *[
                _spans_line(*[_set_attr(s, S.AGENT_RUN_OUTCOME, {"stringValue": f"o{k}"}) for s in spans_of(Run("c", 10 + k))])
                for k in range(25)
            ],
        ],
        "many_models_and_symbols": [
            _spans_line(*spans_of(Run("m", 100 + k, llm=[Llm(model=f"model-{k}")], signals=[Signal(f"S{k}", "up", as_of="2024-01-02")])))
            for k in range(60)
        ],
        "duplicate_keys": [
            _spans_line(llm, root).replace('"traceId":', '"traceId":"' + "f" * 32 + '","traceId":', 1),
            _spans_line(*spans_of(Run("b", 2, llm=[Llm()]))).replace('"intValue":"100"', '"intValue":"1","intValue":"100"', 1),
            _spans_line(*spans_of(Run("b", 3))).replace('{"stringValue":"b"}', '{"stringValue":"x","stringValue":"b"}'),
            dump(request(spans_of(Run("b", 4)))).replace('{"resourceSpans":', '{"resourceSpans":[],"resourceSpans":', 1),
        ],
        "escaped_keys": [_spans_line(llm, root).replace('"traceId"', '"trace\\u0049d"').replace('"key"', '"k\\u0065y"')],
        "lone_surrogates": [
            _spans_line(llm, root).replace('"a"', '"\\ud800"'),
            _spans_line(*spans_of(Run("b", 2))).replace('"b"', '"x\\udc00y"'),
            _spans_line(*spans_of(Run("c", 3))).replace('"c"', '"\\ud83d"'),
            _spans_line(*spans_of(Run("e", 4, llm=[Llm()]))).replace(S.GEN_AI_AGENT_NAME, "gen_ai.agent.nam\\ud800"),
        ],
        "surrogate_pairs": [_spans_line(llm, root).replace('"a"', '"\\ud83d\\ude00"')],
        "control_characters_raw": [
            _spans_line(llm, root).replace('"a"', '"a\tb"'),
            _spans_line(*spans_of(Run("c", 3))).replace('"c"', '"c\x01"'),
        ],
        "bad_escapes": [_spans_line(llm, root).replace('"a"', '"\\x41"'), _spans_line(*spans_of(Run("c", 3))).replace('"c"', '"\\u12"')],
        "deep_nesting": [
            _spans_line(_set_attr(llm, "deep", {"arrayValue": json.loads("[" * 200 + "]" * 200)}), root),
            _spans_line(*spans_of(Run("b", 2))).replace('"flags":256', '"flags":' + "[" * 5000 + "]" * 5000, 1),
            _spans_line(*spans_of(Run("b", 3))).replace('"flags":256', '"flags":' + '{"a":' * 3000 + "1" + "}" * 3000, 1),
        ],
        "megabyte_values": [
            _spans_line(_set_attr(llm, "big", {"stringValue": "x" * (1 << 20)}), root),
            _spans_line(*[_set_attr(s, S.GEN_AI_AGENT_NAME, {"stringValue": "é" * (1 << 19)}) for s in spans_of(Run("b", 2, llm=[Llm()]))]),
            _spans_line(*spans_of(Run("c", 3, kill_reason="k" * (1 << 20), outcome="killed", totals=False))),
        ],
        "spans_not_objects": [dump({"resourceSpans": [{"scopeSpans": [{"spans": [5, None, llm, root]}]}]})],
        "unknown_fields_everywhere": [
            dump(
                {
                    "resourceSpans": [
                        {
                            "resource": {"attributes": [], "droppedAttributesCount": 1},
                            "schemaUrl": "x",
                            "scopeSpans": [
                                {
                                    "scope": {"name": "s", "attributes": [{"key": "k", "value": {"kvlistValue": {"values": []}}}]},
                                    "schemaUrl": "y",
                                    "spans": [{**llm, "links": [{"traceId": "ab"}], "droppedEventsCount": 2, "traceState": "x=1"}, root],
                                }
                            ],
                        }
                    ],
                    "extra": [1, {"a": None}],
                }
            ),
        ],
        "array_and_bytes_values": [
            _spans_line(_set_attr(llm, S.GEN_AI_AGENT_NAME, {"arrayValue": {"values": [{"stringValue": "a"}]}}), root),
            _spans_line(*[_set_attr(s, S.GEN_AI_RESPONSE_MODEL, {"bytesValue": "AAEC"}) for s in spans_of(Run("b", 2, llm=[Llm()]))]),
            _spans_line(
                *[_set_attr(s, S.GEN_AI_RESPONSE_MODEL, {"stringValue": "x", "intValue": "1"}) for s in spans_of(Run("b", 3, llm=[Llm()]))]
            ),
        ],
    }
    # JSON arrays where the schema has objects: msgspec rejects them (a bad line, or bad spans)
    one = _spans_line(*spans_of(Run("b", 2, llm=[Llm()])))
    simulated = '[[{"key":"alphatrace.llm.simulated","value":{"boolValue":true}}]]'
    arrays = {
        "array_for_request": "[]\n",
        "array_for_request_nested": "[[[]]]\n",
        "array_for_request_unterminated": "[]",
        "array_for_resource_spans": '{"resourceSpans":[[]]}\n',
        "array_for_scope_spans": '{"resourceSpans":[{"scopeSpans":[[]]}]}\n',
        "array_for_resource": '{"resourceSpans":[{"resource":'
        + simulated
        + ',"scopeSpans":[{"spans":'
        + json.dumps(spans_of(Run("b", 3, llm=[Llm()])))
        + "}]}]}\n",
        "array_for_status": one.replace('"status":{}', '"status":[]'),
        "array_for_attribute": one.replace('{"key":"gen_ai.provider.name","value":{"stringValue":"openai"}}', "[]"),
        "array_for_key_value": one.replace('{"key":"gen_ai.agent.name","value":{"stringValue":"b"}}', '["gen_ai.agent.name",["b"]]'),
        "array_for_value": one.replace('{"stringValue":"b"}', '["b"]'),
        "array_for_span": '{"resourceSpans":[{"scopeSpans":[{"spans":[["' + "1" * 32 + '","' + "2" * 16 + '","invoke_agent a"]]}]}]}\n',
        "array_for_event": _spans_line(llm, root).replace('"events":[{', '"events":[["' + S.EVENT_ALPHA_SIGNAL + '"],{', 1),
    }
    for name, text in arrays.items():
        cases[name] = [good[0], text]
    return cases


# --- what the core's scanner of a line's bytes decides (native/src/scan.rs) ---------------------------

# (where, accepted, refused): raw JSON put in a span (an attribute's value, a whole attribute, an
# unknown key's value, the status); serde_json's strict types read the first and refuse the second,
# and the scanner must agree: a refused one declines the part wherever it is in its line.
SCANNER_EDGES: dict[str, tuple[str, str, str]] = {
    "surrogate_pair": ("value", r'{"stringValue":"\ud83d\ude00 \u00e9\u0000"}', r'{"stringValue":"\ud83d"}'),
    "lone_trailing_surrogate": ("value", r'{"stringValue":"\uDBFF\uDFFF"}', r'{"stringValue":"a\ude00"}'),
    "leading_surrogate_then_other": ("value", r'{"stringValue":"\ud800\udc00"}', r'{"stringValue":"\ud83d\u0041"}'),
    "leading_surrogate_then_escape": ("value", r'{"stringValue":"\u0041\n"}', r'{"stringValue":"\ud83d\n"}'),
    "escapes": ("value", r'{"stringValue":"\/\b\f\n\r\t\"\\ \u20AC"}', r'{"stringValue":"\x"}'),
    "short_unicode_escape": ("value", r'{"stringValue":"\u00e9"}', r'{"stringValue":"\u00g9"}'),
    "control_character": ("value", r'{"stringValue":"a\tb"}', '{"stringValue":"a\tb"}'.replace("\\t", "\t")),
    "escaped_keys": (
        "attribute",
        r'{"k\u0065y":"gen_ai.agent.n\u0061me","v\u0061lue":{"string\u0056alue":"b"}}',
        r'{"k\u0065y":"x","key":"y"}',
    ),
    "int_minus_zero": ("value", '{"intValue":-9223372036854775808}', '{"intValue":-0}'),
    "int_beyond_u64": ("value", '{"intValue":18446744073709551615}', '{"intValue":18446744073709551616}'),
    "int_below_i64": ("value", '{"intValue":"-9223372036854775809"}', '{"intValue":-9223372036854775809}'),
    "int_fraction": ("value", '{"intValue":"1.5"}', '{"intValue":1.5}'),
    "int_exponent": ("value", '{"intValue":5}', '{"intValue":5e0}'),
    "int_null_or_bool": ("value", '{"intValue":null}', '{"intValue":true}'),
    "double_range": ("value", '{"doubleValue":1.7976931348623157e308}', '{"doubleValue":1e309}'),
    "double_forms": ("value", '{"doubleValue":-0}', '{"doubleValue":-}'),
    "double_strings": ("value", '{"doubleValue":"-Infinity"}', '{"doubleValue":[1]}'),
    "skipped_numbers": ("unknown", "[1e308,-1e-400,123456789012345678901234567890,-0,0.5]", "[1e400]"),
    "leading_zero": ("unknown", "[0,10,-0.0]", "[01]"),
    "fraction_without_digits": ("unknown", "[1.0e+5,2E-3]", "[1.]"),
    "exponent_without_digits": ("unknown", "[1e5]", "[1e+]"),
    "nesting_limit": ("unknown", "[" * 120 + "]" * 120, "[" * 121 + "]" * 121),
    "nesting_limit_in_value": (
        "value",
        '{"arrayValue":' + '{"a":' * 117 + "1" + "}" * 118,
        '{"arrayValue":' + '{"a":' * 118 + "1" + "}" * 119,
    ),
    "key_twice_in_value": ("value", '{"stringValue":null,"boolValue":true}', '{"stringValue":"a","stringValue":"b"}'),
    "key_twice_in_attribute": (
        "attribute",
        '{"value":{"stringValue":"v"},"key":"x.edge","x":[{}]}',
        '{"key":"x.edge","key":"y","value":null}',
    ),
    "trailing_comma": ("unknown", '{"a":[1,{}],"b":{}}', "[1,]"),
    "trailing_comma_in_object": ("unknown", '{"a":1}', '{"a":1,}'),
    "trailing_comma_in_value": ("value", '{"boolValue":true}', '{"boolValue":true,}'),
    "missing_comma": ("unknown", '{"a":1,"b":2}', '{"a":1 "b":2}'),
    "literals": ("unknown", "[true,false,null]", "[tru]"),
    "bool_value": ("value", '{"boolValue":false}', '{"boolValue":"false"}'),
    "status_code": ("status", '{"code":2,"message":"m"}', '{"code":-0}'),
    "status_code_beyond_i64": ("status", '{"code":9223372036854775807}', '{"code":9223372036854775808}'),
    "key_not_a_string": ("unknown", '{"a":1}', "{1:1}"),
    "whitespace": ("value", ' {\t"intValue" :\r "5" ,"x" : [ 1 , { } ] } ', '{"intValue" "5"}'),
    "null_where_no_option": ("attribute", '{"key":"x.edge","value":null}', '{"key":null,"value":null}'),
    "other_values": (
        "value",
        '{"bytesValue":"AAEC","arrayValue":{"values":[{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"1"}}]}}]}}',
        '{"arrayValue":{"values":[}}',
    ),
    # the compact attribute's fast path reads a value whole, then finds more: the general path reads it all
    "compact_value_then_more": ("value", '{"stringValue":"a","intValue":"7"}', '{"stringValue":"a","intValue":"7","stringValue":"b"}'),
    "compact_double_then_more": ("value", '{"doubleValue":1.5,"boolValue":false}', '{"doubleValue":1.5,"doubleValue":2}'),
    "compact_attribute_then_more": (
        "attribute",
        '{"key":"x.edge","value":{"boolValue":true},"x":[1]}',
        '{"key":"x.edge","value":{"boolValue":true},"key":"y"}',
    ),
    "unterminated_string": ("unknown", '"a"', '"a'),
}


def scanner_edge_lines(where: str, raw: str, after_good: bool) -> list[str]:
    """A line of two spans, the second (``after_good``: added after the first) or the first with
    ``raw`` where ``where`` says (see ``SCANNER_EDGES``)."""
    llm, root = _base()
    target = copy.deepcopy(root)
    if where == "value":
        target["attributes"].insert(0, {"key": "x.edge", "value": "@@EDGE@@"})
    elif where == "attribute":
        target["attributes"].insert(0, "@@EDGE@@")
    elif where == "unknown":
        target["x.edge"] = "@@EDGE@@"
    else:
        target["status"] = "@@EDGE@@"
    spans = [llm, target] if after_good else [target, llm]
    return [dump(request(spans)).replace('"@@EDGE@@"', raw)]


def _set_signal_time(span: dict, value: Any) -> dict:
    span = copy.deepcopy(span)
    for event in span.get("events", ()):
        event["timeUnixNano"] = value
    return span


HOSTILE = {
    **_hostile_cases(),
    "conflicting_duplicates": conflicting_duplicates(),
    "content_check_inputs_changed": content_check_inputs(changed=True),
    **{f"scanner_{name}": scanner_edge_lines(where, refused, True) for name, (where, _, refused) in SCANNER_EDGES.items()},
}
