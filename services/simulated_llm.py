"""A simulated chat model behind the real ``openai`` client: an httpx transport, not a mock of the SDK.

With no API key configured, ``ai_analysis`` hands this transport to ``openai.OpenAI(http_client=...)``,
so the real SDK, the real OpenTelemetry instrumentation and the real span path all run. The "model"
reads the features the prompt carries and answers in the verdict format the prompt asks for,
deterministically for a given prompt, with plausible token counts. It is labelled simulated
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

SIMULATED_BASE_URL = "http://simulated-llm.alphatrace.invalid/v1"
FEATURES_MARKER = "FEATURES_JSON:"


def count_tokens(text: str) -> int:
    """About four characters a token, as OpenAI's rule of thumb for English and JSON."""
    return max(1, math.ceil(len(text) / 4))


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
    signals = []
    for symbol in sorted(features):
        f = features[symbol] if isinstance(features[symbol], dict) else {}
        score = 2.0 * float(f.get("momentum_60d", 0.0)) + 1.0 * float(f.get("momentum_20d", 0.0))
        score -= 0.02 * float(f.get("zscore_20d", 0.0))
        score += 0.03 * _unit_noise(prompt + symbol)
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


class SimulatedLLMTransport(httpx2.BaseTransport):
    """Answers ``POST .../chat/completions`` like an OpenAI-compatible server would."""

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
        except (ValueError, KeyError, TypeError):
            return httpx2.Response(400, json={"error": {"message": "malformed chat request", "type": "invalid_request_error"}})
        prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        content = json.dumps(simulated_verdicts(prompt), separators=(",", ":"))
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) + 4 for m in messages if isinstance(m, dict)) + 3
        completion_tokens = count_tokens(content)
        if self._latency:
            self._sleep(self._latency)
        digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        return httpx2.Response(
            200,
            json={
                "id": f"chatcmpl-sim-{digest[:24]}",
                "object": "chat.completion",
                "created": int(digest[:8], 16),
                "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )
