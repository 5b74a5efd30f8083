"""The LLM side of a tool-calling agent: offer the model tools, run the calls it asks for, feed the
results back, until it answers without asking for a tool (its final answer) or the step limit.

``ToolLoop.run(messages, tools, max_steps)`` makes at most ``max_steps`` model calls through
``AIAnalysis.chat`` (each after the run's checkpoint before an LLM call; usage and cost onto the run
as for any call; streamed when asked). The tool calls of one answer (several in one turn when the
model asks in parallel) are executed in order, each after ``checkpoint(STEP_TOOL_STEP)`` (the kill
switch, the budgets: ``RunStopped`` propagates and no further step or call is made), each counted on
the run (``add_tool_call``) and traced as an ``execute_tool {name}`` span (kind INTERNAL,
``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``gen_ai.tool.type=function``) by
opentelemetry-util-genai's tool helper on the project's tracer provider: a child of the run span,
a sibling of the ``chat`` spans, stamped with the run's agent name and id like every span of a run.
Each result goes back as a ``tool`` message with the call's ``tool_call_id``.

A tool call the loop cannot run (an unknown tool, arguments that are not a JSON object, values the
tool refuses: ``ToolError``) fails its span (status ERROR, ``error.type``) and the model gets an
``{"error": ...}`` result, so it can correct itself; the step limit bounds how often. An answer that
still asks for tools on the last allowed call raises ``ToolLoopLimitError`` (the run ends as an
error: a loop that never concludes burns money, and an error rate shows it in the report, where "ok
with no signals" would hide it). Any other exception of a tool is a bug: the span and the run fail.

Content: tool arguments and results are recorded on the span only with content capture opted in
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY`` or ``SPAN_AND_EVENT``, the
helper's rule); error messages name what was wrong, never the model's argument values.

Environment: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (read by the helper when the
loop is built).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import TracerProvider
from opentelemetry.util.genai.handler import TelemetryHandler

from otel import semconv
from otel.run_context import checkpoint, get_current_run
from services.ai_analysis import AIAnalysis
from services.llm_turns import ToolCallRequest

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for a function name


class ToolError(ValueError):
    """A tool call that cannot be run as asked. Its message goes to the model and onto the span:
    it names what was wrong, never the values the model sent (they are content)."""


class UnknownToolError(ToolError):
    pass


class ToolArgumentsError(ToolError):
    pass


class ToolLoopLimitError(RuntimeError):
    """The model still asked for tools on the last call ``max_steps`` allows: no final answer."""


@dataclass(frozen=True)
class Tool:
    """One function the model may call: ``run`` gets the parsed arguments and returns a JSON-able
    result, or raises ``ToolError`` for arguments it refuses."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    run: Callable[[Mapping[str, Any]], Any]

    def spec(self) -> dict[str, Any]:
        """The tool as the ``tools`` argument of a chat request offers it."""
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}}


def _result_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class ToolLoop:
    """Runs the tool loop of a conversation. ``tracer_provider`` is the project's (the tool spans'
    provider); the util's handler is made here, not its process-wide ``get_telemetry_handler``,
    which would bind to the first provider it ever saw."""

    def __init__(self, llm: AIAnalysis, tracer_provider: TracerProvider) -> None:
        self._llm = llm
        self._handler = TelemetryHandler(tracer_provider=tracer_provider, instrumentation_scope_name=__name__)

    def run(self, messages: list[dict[str, Any]], tools: Sequence[Tool], max_steps: int, stream: bool | None = None) -> str | None:
        """The model's final answer (its text) after at most ``max_steps`` calls; ``messages``
        grows with the conversation."""
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        by_name = {tool.name: tool for tool in tools}
        specs = [tool.spec() for tool in tools]
        for step in range(1, max_steps + 1):
            turn = self._llm.chat(messages, stream=stream, tools=specs, temperature=0, response_format={"type": "json_object"})
            if not turn.tool_calls:
                return turn.content
            if step == max_steps:
                raise ToolLoopLimitError(
                    f"the model still asked for {len(turn.tool_calls)} tool call(s) on call {step} of {max_steps} "
                    "(max_steps) and gave no final answer; raise the agent's max_steps or check its prompt"
                )
            messages.append(turn.assistant_message())
            for call in turn.tool_calls:
                checkpoint(semconv.STEP_TOOL_STEP)  # the kill switch and budgets, before each tool step
                messages.append({"role": "tool", "tool_call_id": call.id, "content": self._execute(call, by_name)})
        raise AssertionError("unreachable: the last step returns or raises")

    def _execute(self, call: ToolCallRequest, tools: Mapping[str, Tool]) -> str:
        """One tool step in its ``execute_tool`` span: the result's text, or an error result."""
        run = get_current_run()
        if run is not None:
            run.add_tool_call()
        name = call.name if _FUNCTION_NAME.match(call.name) else semconv.TOOL_NAME_OTHER
        invocation = self._handler.tool(name, tool_type=semconv.TOOL_TYPE_FUNCTION)
        invocation.tool_call_id = call.id or None
        capture = invocation.should_capture_content
        if capture:
            invocation.arguments = call.arguments
        try:
            with invocation:  # ends the span; an exception fails it (status ERROR, error.type)
                text = _result_text(self._call(call, name, tools))
                if capture:
                    invocation.tool_result = text
        except ToolError as exc:
            text = _result_text({"error": str(exc)})
        return text

    @staticmethod
    def _call(call: ToolCallRequest, name: str, tools: Mapping[str, Tool]) -> Any:
        tool = tools.get(call.name)
        if tool is None:
            raise UnknownToolError(f"unknown tool {name!r}; the tools are {', '.join(sorted(tools))}")
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            length = len(call.arguments)
            raise ToolArgumentsError(f"the arguments of {tool.name} must be a JSON object (got {length} characters that are not)")
        return tool.run(arguments)
