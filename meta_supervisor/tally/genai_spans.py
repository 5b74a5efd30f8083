"""Spans that are not alphatrace's own but follow the GenAI conventions: what each one is, the names and
token counts read from it, and the tool calls (a mixin of ``span_aggregator.SpanAggregator``).

alphatrace's own spans (``invoke_agent`` roots, ``chat`` children) are told apart in
``SpanAggregator.add_spans`` before anything here is asked. Any other span is classified by the first
of these keys whose value names a kind the report knows (values compared exactly: OpenInference's
are upper case):

* ``gen_ai.operation.name`` (OpenTelemetry GenAI conventions; util-genai): ``chat``,
  ``text_completion``, ``generate_content``, ``embeddings`` are LLM calls, ``invoke_agent`` a run,
  ``execute_tool`` a tool call;
* ``openinference.span.kind`` (OpenInference): ``LLM`` (operation ``llm``: OpenInference does not say
  chat or completion) and ``EMBEDDING`` (``embeddings``) LLM calls, ``AGENT`` a run, ``TOOL`` a tool call;
* ``traceloop.span.kind`` (OpenLLMetry's decorators): ``agent`` a run, ``tool`` a tool call;
* ``llm.request.type`` (OpenLLMetry's LLM spans): ``chat``, ``completion`` (``text_completion``),
  ``embedding`` (``embeddings``).

Anything else (``create_agent``, ``invoke_workflow``, CHAIN, RETRIEVER, workflow, task, rerank, an
unknown value, no key at all) is "other".

Names, the first non-empty string counting. A run's agent: ``gen_ai.agent.name``, ``agent.name``,
``traceloop.entity.name``, else from the span's name: ``invoke_agent {name}`` for a GenAI
``invoke_agent`` span (``(unknown agent)`` when the name is only ``invoke_agent``), and for another
producer's agent span its name (``{name}.agent``, OpenLLMetry's form, gives ``{name}``). A tool:
``gen_ai.tool.name``, ``tool.name``, ``traceloop.entity.name``, else ``execute_tool {name}`` for a
GenAI ``execute_tool`` span, another producer's tool span's name (``{name}.tool`` gives ``{name}``),
else ``(unknown tool)``. A tool call's agent is its ``gen_ai.agent.name``, as an LLM call's is.

Values, the first key present counting (``otel.semconv``'s key tuples): the model (GenAI response,
then request model, then OpenInference's names), input, output and cached input tokens (the GenAI
keys, then the deprecated ``gen_ai.usage.prompt_tokens`` / ``completion_tokens`` and OpenLLMetry's
older cache key, then OpenInference's ``llm.token_count.*``).

``native/src/kinds.rs`` does all of this the same way. Reads no environment variables.
"""

from __future__ import annotations

from meta_supervisor.reading.otlp_schema import AnyValue, Span, as_int, as_str
from meta_supervisor.tally.agent_counts import DEFERRED_TOOL
from meta_supervisor.tally.bounds import UNKNOWN_AGENT, label
from meta_supervisor.tally.tool_tallies import add_tool_call
from otel import semconv as S

OTHER, LLM, RUN, TOOL = 0, 1, 2, 3
UNKNOWN_TOOL = "(unknown tool)"
STATUS_ERROR = 2

_BY_OPERATION = {
    S.OPERATION_CHAT: (LLM, S.OPERATION_CHAT),
    S.OPERATION_TEXT_COMPLETION: (LLM, S.OPERATION_TEXT_COMPLETION),
    S.OPERATION_GENERATE_CONTENT: (LLM, S.OPERATION_GENERATE_CONTENT),
    S.OPERATION_EMBEDDINGS: (LLM, S.OPERATION_EMBEDDINGS),
    S.OPERATION_INVOKE_AGENT: (RUN, None),
    S.OPERATION_EXECUTE_TOOL: (TOOL, None),
}
_BY_OPENINFERENCE_KIND = {
    S.OPENINFERENCE_LLM: (LLM, S.OPERATION_LLM),
    S.OPENINFERENCE_EMBEDDING: (LLM, S.OPERATION_EMBEDDINGS),
    S.OPENINFERENCE_AGENT: (RUN, None),
    S.OPENINFERENCE_TOOL: (TOOL, None),
}
_BY_TRACELOOP_KIND = {S.TRACELOOP_KIND_AGENT: (RUN, None), S.TRACELOOP_KIND_TOOL: (TOOL, None)}
_BY_REQUEST_TYPE = {
    S.LLM_REQUEST_CHAT: (LLM, S.OPERATION_CHAT),
    S.LLM_REQUEST_COMPLETION: (LLM, S.OPERATION_TEXT_COMPLETION),
    S.LLM_REQUEST_EMBEDDING: (LLM, S.OPERATION_EMBEDDINGS),
}
_KIND_KEYS = (
    (S.OPENINFERENCE_SPAN_KIND, _BY_OPENINFERENCE_KIND),
    (S.TRACELOOP_SPAN_KIND, _BY_TRACELOOP_KIND),
    (S.LLM_REQUEST_TYPE, _BY_REQUEST_TYPE),
)
_NOT_KNOWN = (OTHER, None)
_OTHER_MODEL_KEYS = S.LLM_MODEL_KEYS[2:]  # after the GenAI response and request model, read first
_RUN_PREFIX = S.OPERATION_INVOKE_AGENT + " "
_TOOL_PREFIX = S.OPERATION_EXECUTE_TOOL + " "


def classify(attrs: dict[str, AnyValue], operation: str | None) -> tuple[int, str | None]:
    """(``OTHER``, ``LLM``, ``RUN`` or ``TOOL``, the LLM operation or None) of a span whose
    ``gen_ai.operation.name`` is ``operation`` (None when absent or not a string)."""
    known = _BY_OPERATION.get(operation) if operation is not None else None
    if known is not None:
        return known
    for key, kinds in _KIND_KEYS:
        value = attrs.get(key)
        if value is not None:
            known = kinds.get(value.stringValue)
            if known is not None:
                return known
    return _NOT_KNOWN


def first_present(attrs: dict[str, AnyValue], keys: tuple[str, ...]) -> AnyValue | None:
    """The value of the first of ``keys`` the span has (a key whose value is null counts as absent)."""
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def first_name(attrs: dict[str, AnyValue], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` whose value is a non-empty string."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value.stringValue:
            return value.stringValue
    return None


def model_value(attrs: dict[str, AnyValue]) -> AnyValue | None:
    """The model's value when the GenAI response and request model are both absent."""
    return first_present(attrs, _OTHER_MODEL_KEYS)


def _int_value(value: AnyValue | None) -> int:
    """An int attribute read the fast way (a string of digits); anything else via ``as_int``; 0 when
    absent or not an integer."""
    if value is None:
        return 0
    try:
        return int(value.intValue)
    except (TypeError, ValueError):
        return as_int(value) or 0


def llm_tokens(attrs: dict[str, AnyValue]) -> tuple[int, int, int]:
    """Input, output and cached input tokens, each from the first of its keys present (0 when none is,
    or its value is not an integer)."""
    return (
        _int_value(first_present(attrs, S.INPUT_TOKEN_KEYS)),
        _int_value(first_present(attrs, S.OUTPUT_TOKEN_KEYS)),
        _int_value(first_present(attrs, S.CACHED_TOKEN_KEYS)),
    )


def run_agent_name(span: Span, attrs: dict[str, AnyValue]) -> str | None:
    """A run's agent when its ``gen_ai.agent.name`` is absent or empty; None: ``(unknown agent)``."""
    name = first_name(attrs, S.RUN_AGENT_NAME_KEYS)
    if name:
        return name
    if as_str(attrs.get(S.GEN_AI_OPERATION_NAME)) == S.OPERATION_INVOKE_AGENT:
        return span.name[len(_RUN_PREFIX) :] if span.name.startswith(_RUN_PREFIX) else None
    return span.name.removesuffix(S.TRACELOOP_AGENT_SUFFIX) or None


def tool_name(span: Span, attrs: dict[str, AnyValue], operation: str | None) -> str:
    name = first_name(attrs, S.TOOL_NAME_KEYS)
    if name:
        return name
    if operation == S.OPERATION_EXECUTE_TOOL:
        name = span.name[len(_TOOL_PREFIX) :] if span.name.startswith(_TOOL_PREFIX) else None
    else:
        name = span.name.removesuffix(S.TRACELOOP_TOOL_SUFFIX)
    return name or UNKNOWN_TOOL


class ToolSpans:
    """Tool calls, per agent and tool (``AgentTally.tools``): a mixin of ``SpanAggregator``."""

    def _tool_span(self, span: Span, attrs: dict[str, AnyValue], start: int, end: int, operation: str | None, fp: int) -> None:
        value = attrs.get(S.GEN_AI_AGENT_NAME)
        agent = value.stringValue if value is not None else None
        status = span.status
        error = (status is not None and status.code == STATUS_ERROR) or bool(as_str(attrs.get(S.ERROR_TYPE)))
        name = label(tool_name(span, attrs, operation), UNKNOWN_TOOL)
        value = attrs.get(S.AGENT_RUN_ID)
        run_id = (value.stringValue if value is not None else None) or ""
        run_key = run_id or span.traceId or span.spanId
        if not agent:  # another instrumentation's child: its run's agent, or later (agent_counts)
            run_agent = self._run_agent(run_key)
            if run_agent is None:
                self._join_tool(run_key, span.traceId, run_id, UNKNOWN_AGENT, (DEFERRED_TOOL, name, error, start, end))
                return
            add_tool_call(self._agent(run_agent)[1].tools, name, error, start, end)
            self._join_tool(run_key, span.traceId, run_id, run_agent, None)
            return
        agent, tally = self._agent(agent)
        add_tool_call(tally.tools, name, error, start, end)
        self._join_tool(run_key, span.traceId, run_id, agent, None)
        if span.events:  # its alpha events count for its agent, as an "other" span's do
            self._events(tally, span, self._day_row(tally, start), fp)
