"""Every name a demo run writes is a semantic-conventions name or lies under the project namespace.

A replayed fleet (the scheduler's replay path, the simulated model through the real ``openai`` client
and the official instrumentation, a killed agent, spans to the trace file) and the supervisor's
decision spans are checked, name by name, against rules rather than a list of today's names, so new
spans and keys pass when they follow them:

* span names: ``{gen_ai.operation.name} {subject}`` for a GenAI operation (``invoke_agent
  {gen_ai.agent.name}``, ``chat {gen_ai.request.model}``, ``execute_tool {gen_ai.tool.name}``), else
  under ``alphatrace.``;
* attribute keys (span, event and resource): defined by ``opentelemetry-semantic-conventions`` (stable
  and incubating attribute modules) or ``opentelemetry-util-genai``, collected from the installed
  packages, or under ``alphatrace.``;
* event names: the SDK's exception event (its name taken from the SDK itself), the GenAI conventions'
  evaluation event (``gen_ai.evaluation.result``: the installed package defines its attributes, not
  the event name) or under ``alphatrace.``;
* value types: token counts and other counts non-negative integers, costs doubles, outcomes one of
  ``semconv.OUTCOMES``, dates ISO dates, flags booleans.

The same file, read by the report (Python reader and native core), counts each LLM call's tokens once:
the run span's ``gen_ai.usage.*`` repeat its LLM spans' and are not counted again.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import opentelemetry.semconv._incubating.attributes as incubating_attributes
import opentelemetry.semconv.attributes as stable_attributes
import opentelemetry.util.genai as util_genai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GenAiOperationNameValues

import scheduler
from meta_supervisor.cli import report as report_cli
from meta_supervisor.supervisor.decision_spans import emit_decision_spans
from otel import semconv

REPO = Path(__file__).resolve().parent.parent
DOTTED_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
OPERATIONS = frozenset(value.value for value in GenAiOperationNameValues)
# the attribute naming each GenAI operation's subject in its span name (the conventions' span name rule)
SUBJECT = {
    semconv.OPERATION_INVOKE_AGENT: semconv.GEN_AI_AGENT_NAME,
    semconv.OPERATION_EXECUTE_TOOL: semconv.GEN_AI_TOOL_NAME,
}


def _module_names(package) -> set[str]:
    """Every dotted name a package's modules define as a module-level string."""
    names = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        names.update(value for value in vars(module).values() if isinstance(value, str) and DOTTED_NAME.fullmatch(value))
    return names


def upstream_attribute_names() -> frozenset[str]:
    """The attribute keys the installed semantic conventions (stable and incubating) and util-genai
    define (util-genai names some the conventions package does not have yet, e.g. cache-write tokens)."""
    return frozenset(_module_names(stable_attributes) | _module_names(incubating_attributes) | _module_names(util_genai))


def sdk_exception_event_name() -> str:
    """The event name the SDK records an exception under (the conventions' exception event)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("probe").start_as_current_span("probe") as span:
        span.record_exception(ValueError("probe"))
    provider.shutdown()
    (event,) = exporter.get_finished_spans()[0].events
    return event.name


GENAI_EVENTS = frozenset({"gen_ai.evaluation.result"})  # the GenAI conventions' events alphatrace writes


def _ours(name: str) -> bool:
    return name.startswith(semconv.PROJECT_PREFIX)


# --- value types, by rule ------------------------------------------------------------------------


def _is_count(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf.endswith(("tokens", "_calls", "_signals", "_days", "_length", "dropped", "_failed", "decisions")) or leaf in (
        "horizon",
        "port",
    )


def type_problem(key: str, value: Any) -> str | None:
    """What is wrong with a value of ``key`` (a Python value as the SDK holds it), or None."""
    leaf = key.rsplit(".", 1)[-1]
    if key == semconv.AGENT_RUN_OUTCOME:
        return None if value in semconv.OUTCOMES else f"not an outcome: {value!r}"
    if _is_count(key):
        return None if type(value) is int and value >= 0 else f"not a count: {value!r}"
    if leaf.endswith("_usd"):
        return None if type(value) is float and value >= 0 else f"not a cost in USD: {value!r}"
    if leaf in ("as_of", "last_bar"):
        try:
            dt.date.fromisoformat(value)
        except (TypeError, ValueError):
            return f"not an ISO date: {value!r}"
        return None
    if leaf in ("stale", "tradable", "applied"):
        return None if type(value) is bool else f"not a flag: {value!r}"
    if key == semconv.GEN_AI_OPERATION_NAME:
        return None if value in OPERATIONS else f"not a GenAI operation: {value!r}"
    return None if isinstance(value, str | int | float | bool | tuple | list) else f"not an attribute value: {value!r}"


def _otlp_value(value: dict) -> Any:
    """A Python value from an OTLP/JSON AnyValue (ints are strings there)."""
    (kind, raw), *_ = value.items()
    if kind == "intValue":
        return int(raw)
    if kind == "arrayValue":
        return [_otlp_value(item) for item in raw.get("values", [])]
    return raw


# --- what a demo-like run writes ------------------------------------------------------------------


@pytest.fixture
def written(world, tmp_path, monkeypatch) -> dict:
    """The replayed fleet's trace file (three days, then two with the LLM analyst killed) and the
    supervisor's decision spans, as (span name, attributes, events, resource attributes) records."""
    trace_file = tmp_path / "fleet" / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    assert scheduler.main(["--replay", "--days", "3", "--config", str(world["config"])]) == 0
    world["kill_file"].write_text(json.dumps({"llm_analyst": {"reason": "too expensive", "by": "alice", "at": ""}}))
    assert scheduler.main(["--replay", "--days", "2", "--config", str(world["config"])]) == 0
    report = ["--input", str(trace_file), "--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / "out"), "--quiet"]
    assert report_cli.main([*report, "--evaluation-spans", "--fleet-config", str(world["config"])]) == 0  # forecast outcomes
    spans = []
    for line in trace_file.read_text().splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            resource = {kv["key"]: _otlp_value(kv["value"]) for kv in resource_spans["resource"]["attributes"]}
            for scope in resource_spans["scopeSpans"]:
                for span in scope["spans"]:
                    events = [
                        (e["name"], {kv["key"]: _otlp_value(kv["value"]) for kv in e.get("attributes", [])}) for e in span.get("events", [])
                    ]
                    spans.append((span["name"], {kv["key"]: _otlp_value(kv["value"]) for kv in span["attributes"]}, events, resource))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    figures = {"runs": 3, "error_rate": 0.0, "ic": 0.12, "ic_kind": "rank", "last_run": None}
    record = {"agent": "momentum", "action": "keep", "would": "keep", "rule": "none", "reason": "fine", "result": "no change"}
    records = [{**record, "applied": False, "status": "live", "figures": figures, "held_by": {"by": "alice"}}]
    emit_decision_spans(provider.get_tracer("alphatrace.supervisor"), records, "policy.yaml", ("2018-04-02", "2018-04-06"))
    provider.shutdown()
    for span in exporter.get_finished_spans():
        spans.append((span.name, dict(span.attributes), [(e.name, dict(e.attributes)) for e in span.events], {}))
    return {"spans": spans, "file": trace_file}


def test_every_name_written_is_a_convention_name_or_ours_with_the_expected_type(written) -> None:
    upstream = upstream_attribute_names()
    exception_event = sdk_exception_event_name()
    problems: list[str] = []
    operations_seen = set()
    for name, attributes, events, resource in written["spans"]:
        operation = attributes.get(semconv.GEN_AI_OPERATION_NAME)
        if operation is not None:
            operations_seen.add(operation)
            subject = attributes.get(SUBJECT.get(operation, semconv.GEN_AI_REQUEST_MODEL))
            if name != f"{operation} {subject}":
                problems.append(f"span {name!r}: a GenAI span is named '{{operation}} {{subject}}', here {operation!r} {subject!r}")
        elif not _ours(name):
            problems.append(f"span {name!r}: neither a GenAI operation's span nor under {semconv.PROJECT_PREFIX}")
        for where, values in [("span " + name, attributes), ("resource", resource)] + [(f"event {e} of {name}", a) for e, a in events]:
            for key, value in values.items():
                if key not in upstream and not _ours(key):
                    problems.append(f"{where}: key {key!r} is neither a semantic-conventions name nor under {semconv.PROJECT_PREFIX}")
                problem = type_problem(key, value)
                if problem:
                    problems.append(f"{where}: {key}: {problem}")
        for event, _ in events:
            if event != exception_event and event not in GENAI_EVENTS and not _ours(event):
                problems.append(f"span {name!r}: event {event!r} is neither the exception event nor under {semconv.PROJECT_PREFIX}")
    assert problems == []
    # what the run covered: runs, LLM calls, a kill, signals, the supervisor's decisions
    assert {semconv.OPERATION_INVOKE_AGENT, semconv.OPERATION_CHAT} <= operations_seen
    written_keys = {key for _, attributes, _, _ in written["spans"] for key in attributes}
    assert {semconv.KILL_REASON, semconv.SUPERVISOR_ACTION, semconv.SUPERVISOR_FIGURE_PREFIX + "ic"} <= written_keys
    assert any(event == semconv.EVENT_ALPHA_SIGNAL for _, _, events, _ in written["spans"] for event, _ in events)
    assert any(event == semconv.EVENT_GEN_AI_EVALUATION_RESULT for _, _, events, _ in written["spans"] for event, _ in events)


def test_the_rules_reject_names_outside_the_conventions_and_the_namespace() -> None:
    """The check is not vacuous: the old names and made-up keys fail it, today's pass."""
    upstream = upstream_attribute_names()
    for old in semconv.LEGACY_NAMES:
        assert old not in upstream and not _ours(old)
    assert "gen_ai.usage.made_up_tokens" not in upstream
    assert {semconv.GEN_AI_USAGE_CACHED_INPUT_TOKENS, "gen_ai.usage.cache_write.input_tokens", "server.port"} <= upstream
    assert type_problem(semconv.RUN_COST_USD, 1) is not None and type_problem(semconv.RUN_COST_USD, 0.5) is None
    assert type_problem(semconv.AGENT_RUN_OUTCOME, "fine") is not None
    assert type_problem(semconv.GEN_AI_USAGE_INPUT_TOKENS, "12") is not None
    assert type_problem("alphatrace.budget.spent_usd", 0.25) is None and type_problem("alphatrace.run.tool_calls", -1) is not None


def test_the_run_span_carries_the_invoke_agent_attributes_of_a_run_that_called_a_model(written) -> None:
    roots = [attributes for name, attributes, _, _ in written["spans"] if attributes.get(semconv.GEN_AI_OPERATION_NAME) == "invoke_agent"]
    called = [root for root in roots if root[semconv.RUN_LLM_CALLS] > 0]
    assert called and {root[semconv.GEN_AI_AGENT_NAME] for root in called} == {"llm_analyst"}
    for root in called:
        assert root[semconv.GEN_AI_PROVIDER_NAME] == semconv.PROVIDER_OPENAI and root[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert root[semconv.GEN_AI_USAGE_INPUT_TOKENS] == root[semconv.RUN_INPUT_TOKENS] > 0
        assert root[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == root[semconv.RUN_OUTPUT_TOKENS]
        assert root[semconv.GEN_AI_USAGE_CACHED_INPUT_TOKENS] == root[semconv.RUN_CACHED_INPUT_TOKENS]
    unset = (semconv.GEN_AI_PROVIDER_NAME, semconv.GEN_AI_REQUEST_MODEL, semconv.GEN_AI_USAGE_INPUT_TOKENS)
    assert all(not set(unset) & set(root) for root in roots if root[semconv.RUN_LLM_CALLS] == 0)  # rule agents, killed runs
    assert not any({"gen_ai.agent.id", "gen_ai.conversation.id"} & set(root) for root in roots)


@pytest.mark.parametrize("reader", ["off", "on"])
def test_the_report_counts_each_call_s_tokens_once(written, tmp_path, reader) -> None:
    """The run spans repeat their LLM spans' usage: the report (Python reader, native core) counts the
    LLM spans' alone, and the run totals still agree with them."""
    chats = [attributes for _, attributes, _, _ in written["spans"] if attributes.get(semconv.GEN_AI_OPERATION_NAME) == "chat"]
    args = [sys.executable, "meta_supervisor/build_meta_report.py", "--input", str(written["file"]), "--out", str(tmp_path)]
    args += ["--no-state", "--quiet", "--format", "json", "--no-alpha-quality"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env={**_env(), "ALPHATRACE_NATIVE": reader})
    assert done.returncode == 0, done.stderr
    analyst = json.loads((tmp_path / "meta_report.json").read_text())["agents"]["llm_analyst"]
    assert analyst["llm_calls"] == len(chats) > 0
    assert analyst["tokens_in"] == sum(chat[semconv.GEN_AI_USAGE_INPUT_TOKENS] for chat in chats)
    assert analyst["tokens_out"] == sum(chat[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] for chat in chats)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
