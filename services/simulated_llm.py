"""A simulated chat model behind the real ``openai`` client: an httpx transport, not a mock of the SDK.

With no API key configured, ``ai_analysis`` hands this transport to ``openai.OpenAI(http_client=...)``,
so the real SDK, the real OpenTelemetry instrumentation and the real span path all run. The "model"
reads the features the prompt carries and answers in the verdict format the prompt asks for,
deterministically for a given prompt, with plausible token counts. Offered ``tools`` (the research
tools, ``services/research_tools.py``), it answers in OpenAI's tool-calling wire format: parallel
tool calls in one message (``finish_reason: "tool_calls"``), then maybe one more call, then a
verdict derived from the tool results it was sent (``simulated_tool_turn``); prompt tokens count the
tool definitions too. A request with ``stream: true`` gets the same answer as server-sent events
(``sse_events``: ``text/event-stream``, the usage chunk when ``stream_options.include_usage``). It is labelled simulated
everywhere (resource attribute, start-up log line, report) and never priced.

Reads no environment variables.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable

import httpx2

from services.call_estimate import count_tokens
from services.research_tools import SYMBOLS_MARKER, TOOL_MARKET_REGIME, TOOL_PRICE_FEATURES, TOOL_RECENT_CLOSES

SIMULATED_BASE_URL = "http://simulated-llm.alphatrace.invalid/v1"
FEATURES_MARKER = "FEATURES_JSON:"


def _unit_noise(seed: str) -> float:
    """A deterministic number in [-1, 1) derived from ``seed``."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


def simulated_verdicts(prompt: str) -> dict:
    """The verdict a cautious trend-following analyst would give on the prompt's features."""
    features: dict = {}
    if FEATURES_MARKER in prompt:
        try:
            features = json.loads(prompt.split(FEATURES_MARKER, 1)[1].strip())
        except ValueError:
            features = {}
    return _verdicts(features, prompt)


def _verdicts(features: dict, seed: str, nudges: dict[str, float] | None = None) -> dict:
    """Verdicts on ``features`` (symbol -> features), ``nudges`` added to a symbol's score."""
    signals = []
    for symbol in sorted(features):
        f = features[symbol] if isinstance(features[symbol], dict) else {}
        score = 2.0 * float(f.get("momentum_60d", 0.0)) + 1.0 * float(f.get("momentum_20d", 0.0))
        score -= 0.02 * float(f.get("zscore_20d", 0.0))
        score += 0.03 * _unit_noise(seed + symbol)
        if nudges and symbol in nudges:
            score += nudges[symbol]
        prob_up = min(0.95, max(0.05, 1.0 / (1.0 + math.exp(-8.0 * score))))
        direction = "up" if prob_up > 0.55 else "down" if prob_up < 0.45 else "flat"
        signals.append(
            {
                "symbol": symbol,
                "direction": direction,
                "prob_up": round(prob_up, 4),
                "confidence": round(min(1.0, abs(prob_up - 0.5) * 2 + 0.2), 4),
                "rationale": f"{'positive' if score > 0 else 'negative'} medium-term momentum",
            }
        )
    return {"signals": signals}


def _json_object(text: object) -> dict:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_results(messages: list) -> list[tuple[str, dict, dict]]:
    """(tool name, arguments, result) of every tool call answered in the conversation, in order."""
    asked: dict[str, tuple[str, dict]] = {}
    results = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            asked[str(call.get("id"))] = (str(function.get("name")), _json_object(function.get("arguments")))
        if message.get("role") == "tool" and str(message.get("tool_call_id")) in asked:
            name, arguments = asked[str(message["tool_call_id"])]
            results.append((name, arguments, _json_object(message.get("content"))))
    return results


def simulated_tool_turn(messages: list, offered: set[str], seed: str) -> tuple[list[tuple[str, dict]], str | None]:
    """The analyst with tools: (tool calls to make, None), or ([], its final verdict's JSON).

    First turn: the regime and every symbol's features, in parallel. Second: the last closes of the
    symbol furthest from its 20-day mean. Then the verdict: the features it was sent, nudged by that
    symbol's last week and the universe's breadth."""
    symbols: list = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user" and SYMBOLS_MARKER in str(message.get("content")):
            try:
                symbols = json.loads(str(message["content"]).split(SYMBOLS_MARKER, 1)[1].strip())
            except ValueError:
                symbols = []
    symbols = [s for s in symbols if isinstance(s, str)] if isinstance(symbols, list) else []
    turns = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
    results = _tool_results(messages)
    features = {a.get("symbol"): r for name, a, r in results if name == TOOL_PRICE_FEATURES and "error" not in r}
    if turns == 0:
        calls = [(TOOL_MARKET_REGIME, {})] if TOOL_MARKET_REGIME in offered else []
        if TOOL_PRICE_FEATURES in offered:
            calls += [(TOOL_PRICE_FEATURES, {"symbol": symbol}) for symbol in symbols]
        if calls:
            return calls, None
    if turns == 1 and TOOL_RECENT_CLOSES in offered and features:
        furthest = max(sorted(features), key=lambda s: abs(float(features[s].get("zscore_20d", 0.0))))
        return [(TOOL_RECENT_CLOSES, {"symbol": furthest, "days": 5})], None
    tilt = 0.0
    week: dict[str, float] = {}
    for name, arguments, result in results:
        if name == TOOL_MARKET_REGIME and isinstance(result.get("breadth"), (int, float)):
            tilt = 0.02 * (float(result["breadth"]) - 0.5)
        closes = [c.get("close") for c in result.get("closes", ()) if isinstance(c, dict)]
        if name == TOOL_RECENT_CLOSES and len(closes) > 1 and all(isinstance(c, (int, float)) and c > 0 for c in closes):
            week[str(arguments.get("symbol"))] = 0.5 * (closes[-1] / closes[0] - 1.0)
    nudges = {symbol: tilt + week.get(symbol, 0.0) for symbol in features}
    return [], json.dumps(_verdicts(features, seed, nudges), separators=(",", ":"))


def _message_tokens(message: object) -> int:
    if not isinstance(message, dict):
        return 0
    text = str(message.get("content") or "")
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"], separators=(",", ":"))
    return count_tokens(text) + 4


def sse_events(completion: dict, include_usage: bool) -> bytes:
    """A ``chat.completion`` body as OpenAI streams it: ``data: {chunk}`` events (the role, the text
    in pieces, each tool call's id and name then its arguments, the finish reason), with
    ``include_usage`` a last chunk with no choices and the usage (every other chunk ``usage: null``),
    then ``data: [DONE]``."""
    choice = completion["choices"][0]
    message = choice["message"]
    head = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"], "model": completion["model"]}

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        if include_usage:
            body["usage"] = None
        return body

    text = message.get("content") or ""
    chunks = [chunk({"role": "assistant", "content": "" if text else None})]
    chunks += [chunk({"content": text[start : start + 128]}) for start in range(0, len(text), 128)]
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        opening = {"index": index, "id": call["id"], "type": "function", "function": {"name": function["name"], "arguments": ""}}
        chunks.append(chunk({"tool_calls": [opening]}))
        chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": function["arguments"]}}]}))
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": completion["usage"]})
    return b"".join(b"data: " + json.dumps(c, separators=(",", ":")).encode("utf-8") + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _completion(digest: str, model: str, message: dict, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-sim-{digest[:24]}",
        "object": "chat.completion",
        "created": int(digest[:8], 16),
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _tool_completion(messages: list, model: str, tools: list) -> dict:
    """The answer to a request offering ``tools``: tool calls (several in one turn) or the verdict."""
    offered = {t["function"].get("name") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)}
    transcript = json.dumps(messages, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(transcript.encode("utf-8")).hexdigest()
    calls, content = simulated_tool_turn(messages, offered, transcript)
    prompt_tokens = sum(_message_tokens(m) for m in messages) + 3 + count_tokens(json.dumps(tools, separators=(",", ":")))
    if content is not None:
        return _completion(digest, model, {"role": "assistant", "content": content}, "stop", prompt_tokens, count_tokens(content))
    tool_calls = [
        {
            "id": "call_" + hashlib.sha256(f"{digest}:{index}".encode()).hexdigest()[:24],
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, separators=(",", ":"))},
        }
        for index, (name, arguments) in enumerate(calls)
    ]
    completion_tokens = count_tokens(json.dumps(tool_calls, separators=(",", ":")))
    message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    return _completion(digest, model, message, "tool_calls", prompt_tokens, completion_tokens)


class SimulatedLLMTransport(httpx2.BaseTransport):
    """Answers ``POST .../chat/completions`` like an OpenAI-compatible server would: a verdict, tool
    calls when the request offers ``tools``, and server-sent events when it asks to ``stream``."""

    def __init__(self, latency_seconds: float = 0.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._latency = latency_seconds
        self._sleep = sleep
        self.requests = 0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return httpx2.Response(404, json={"error": {"message": f"simulated model has no {request.url.path}", "type": "not_found"}})
        try:
            body = json.loads(request.read())
            messages = body["messages"]
            model = str(body["model"])
            tools = body.get("tools")
            if tools is not None and not isinstance(tools, list):
                raise TypeError("tools must be a list")
        except (ValueError, KeyError, TypeError):
            return httpx2.Response(400, json={"error": {"message": "malformed chat request", "type": "invalid_request_error"}})
        if tools:
            completion = _tool_completion(messages, model, tools)
        else:
            prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
            content = json.dumps(simulated_verdicts(prompt), separators=(",", ":"))
            prompt_tokens = sum(count_tokens(str(m.get("content", ""))) + 4 for m in messages if isinstance(m, dict)) + 3
            digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
            completion = _completion(digest, model, {"role": "assistant", "content": content}, "stop", prompt_tokens, count_tokens(content))
        if self._latency:
            self._sleep(self._latency)
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse_events(completion, include_usage))
        return httpx2.Response(200, json=completion)
