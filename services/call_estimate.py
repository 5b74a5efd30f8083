"""What an LLM call will use, estimated from its request before it is made (the budgets' first call).

Before a call its usage is not known. The LLM wrapper (``services/ai_analysis.py``) estimates it from
the request it is about to send and leaves it on the run (``RunTelemetry.next_call``) just before the
run's checkpoint, where the budgets price it (``services/budgets.py``):

* input: about four characters a token (``count_tokens``, OpenAI's rule of thumb for English and
  JSON) over each message's text and tool calls, plus 4 tokens a message, plus the tool definitions;
* output: the request's ``max_completion_tokens`` (or the older ``max_tokens``) when set, else
  ``DEFAULT_OUTPUT_TOKENS``, a call's allowance when the request sets none.

Only counts leave this module: no prompt text is kept on the run.

Reads no environment variables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from otel.run_context import CallEstimate

DEFAULT_OUTPUT_TOKENS = 1_000  # the output allowance of a request that sets no max_(completion_)tokens
MESSAGE_OVERHEAD_TOKENS = 4  # each message's role and separators


def count_tokens(text: str) -> int:
    """About four characters a token, as OpenAI's rule of thumb for English and JSON."""
    return max(1, math.ceil(len(text) / 4))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


def _message_tokens(message: object) -> int:
    if not isinstance(message, Mapping):
        return 0
    text = _text(message.get("content") or "")
    if message.get("tool_calls"):
        text += _text(message["tool_calls"])
    return count_tokens(text) + MESSAGE_OVERHEAD_TOKENS


def output_allowance(request: Mapping[str, Any]) -> int:
    """The output tokens a request allows: ``max_completion_tokens``, else ``max_tokens``, else the default."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = request.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_OUTPUT_TOKENS


def estimate_call(messages: Iterable[object], request: Mapping[str, Any]) -> CallEstimate:
    """The call ``chat.completions.create(messages=messages, **request)`` is expected to use."""
    tokens_in = sum(_message_tokens(message) for message in messages)
    if request.get("tools"):
        tokens_in += count_tokens(_text(request["tools"]))
    return CallEstimate(tokens_in, output_allowance(request))
