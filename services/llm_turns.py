"""One model turn from what the ``openai`` client returned: a ``ChatCompletion``, or a stream of
``ChatCompletionChunk``s read to its end.

``ModelTurn`` is what a caller needs of an answer, streamed or not: the text, the tool calls the model
asked for (``ToolCallRequest``: id, function name, arguments as the JSON text the model wrote), the
finish reason, the model and the usage (``Usage``; ``None`` when a stream carried no usage chunk).
A stream's pieces are joined the way OpenAI sends them: text deltas in order, each tool call's id and
name in its first delta and its arguments spread over later ones, keyed by the call's ``index``; the
usage arrives in a last chunk with no choices (``stream_options.include_usage``).

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Usage:
    tokens_in: int
    tokens_out: int
    cached_tokens_in: int = 0


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (not parsed: it may be broken)

    def message(self) -> dict[str, Any]:
        """The call as the assistant message sent back to the model carries it."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ModelTurn:
    content: str | None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    finish_reason: str | None = None
    model: str | None = None
    usage: Usage | None = None
    sdk_usage: Any = None  # the SDK's usage object itself (cache writes, reasoning tokens: services/ai_analysis.py prices it)

    def assistant_message(self) -> dict[str, Any]:
        """The turn as the ``assistant`` message of the conversation sent with the next call."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.message() for call in self.tool_calls]
        return message


def usage_of(usage: Any) -> Usage | None:
    """The counts of an SDK ``CompletionUsage`` (absent fields count 0), or ``None`` without one."""
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
        tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens_in=int(getattr(details, "cached_tokens", 0) or 0),
    )


def turn_of_completion(response: Any) -> ModelTurn:
    """The turn of a non-streamed ``ChatCompletion`` (its first choice)."""
    usage = usage_of(response.usage) or Usage(0, 0)
    if not response.choices:
        return ModelTurn(content=None, model=response.model, usage=usage, sdk_usage=response.usage)
    choice = response.choices[0]
    calls = tuple(
        ToolCallRequest(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
        for call in (choice.message.tool_calls or ())
        if getattr(call, "function", None) is not None
    )
    message = choice.message
    return ModelTurn(
        content=message.content,
        tool_calls=calls,
        finish_reason=choice.finish_reason,
        model=response.model,
        usage=usage,
        sdk_usage=response.usage,
    )


@dataclass
class _CallPieces:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def turn_of_stream(chunks: Iterable[Any]) -> ModelTurn:
    """The turn of a stream of ``ChatCompletionChunk``s, read to its end (first choice only)."""
    text: list[str] = []
    calls: dict[int, _CallPieces] = {}
    finish_reason = model = None
    usage = sdk_usage = None
    for chunk in chunks:
        model = model or getattr(chunk, "model", None)
        if getattr(chunk, "usage", None) is not None:
            usage, sdk_usage = usage_of(chunk.usage), chunk.usage
        for choice in getattr(chunk, "choices", None) or ():
            if choice.index != 0:
                continue
            finish_reason = choice.finish_reason or finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                text.append(delta.content)
            for piece in delta.tool_calls or ():
                call = calls.setdefault(piece.index, _CallPieces())
                call.id = call.id or (piece.id or "")
                if piece.function is not None:
                    call.name = call.name or (piece.function.name or "")
                    if piece.function.arguments:
                        call.arguments.append(piece.function.arguments)
    requests = tuple(ToolCallRequest(call.id, call.name, "".join(call.arguments)) for _, call in sorted(calls.items()))
    return ModelTurn(
        content="".join(text) if text else None,
        tool_calls=requests,
        finish_reason=finish_reason,
        model=model,
        usage=usage,
        sdk_usage=sdk_usage,
    )
