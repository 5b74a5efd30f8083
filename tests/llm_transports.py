"""httpx transports that answer like the OpenAI API does, for driving the real ``openai`` client."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2


def chat_completion(
    content: str,
    model: str = "gpt-4o-mini-2024-07-18",
    prompt_tokens: int = 812,
    completion_tokens: int = 64,
    cached_tokens: int | None = None,
) -> dict:
    """The shape of a real ``chat.completion`` response body (fields as the API returns them)."""
    usage: dict = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }


def verdict_json(*symbols: str, direction: str = "up", prob_up: float = 0.64) -> str:
    return json.dumps(
        {"signals": [{"symbol": s, "direction": direction, "prob_up": prob_up, "confidence": 0.5, "rationale": "trend"} for s in symbols]}
    )


class ScriptedTransport(httpx2.BaseTransport):
    """Answers each request with the next scripted response (or exception); records the requests."""

    def __init__(self, *responses: httpx2.Response | Exception | Callable[[httpx2.Request], httpx2.Response]) -> None:
        self._responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.requests.append(request)
        if not self._responses:
            raise AssertionError("more requests than scripted responses")
        nxt = self._responses.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        if callable(nxt):
            return nxt(request)
        return nxt


def ok(body: dict) -> httpx2.Response:
    return httpx2.Response(200, json=body)


def error(status: int, message: str, headers: dict | None = None) -> httpx2.Response:
    return httpx2.Response(
        status, json={"error": {"message": message, "type": "requests", "param": None, "code": None}}, headers=headers or {}
    )


def tool_call_completion(*calls: tuple[str, str, str], prompt_tokens: int = 420, completion_tokens: int = 48) -> dict:
    """A ``chat.completion`` whose answer asks for tool calls, each ``(id, function name, arguments
    JSON text)``, all in one message (parallel tool calls), as the API returns it."""
    body = chat_completion("", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    message = body["choices"][0]["message"]
    message["content"] = None
    message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": name, "arguments": args}} for i, name, args in calls]
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body
