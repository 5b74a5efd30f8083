"""The OpenAI wrapper: features in, a structured verdict per symbol out, usage and cost on the run.

It calls ``chat.completions.create`` through the real ``openai`` client, which the official
OpenTelemetry instrumentation turns into a ``chat {model}`` child span of the current run. Timeouts and
bounded retries (429, 5xx, connection errors) are the client's own. After each call the usage and its
cost from the price table are added to the run by ``account_llm_call`` (the one place a call is
counted: a tool loop calls it too; the run hands the call on to the budgets, ``services/budgets.py``);
a model missing from the table is counted as unpriced, never $0. With no key, a simulated model
answers over an httpx transport (``services/simulated_llm.py``); its calls cost the run $0 and are
counted by the budgets at the price of the model they stand in for, marked as an estimate.

Environment (beats the ``[llm]`` table of the fleet config, which beats the defaults):

* ``ALPHATRACE_LLM_PROVIDER``: ``auto`` (default: OpenAI when ``OPENAI_API_KEY`` is set, else
  simulated), ``openai`` (a key is then required) or ``simulated``.
* ``ALPHATRACE_LLM_MODEL``: model name (default ``gpt-4o-mini``).
* ``ALPHATRACE_LLM_STREAM``: ``true``/``false`` (default ``false``, or ``[llm] stream``): stream every
  call (``stream=True`` with ``stream_options.include_usage``); the answer is read to its end and the
  usage of its last chunk goes to the run. An agent may ask for streaming of its own calls
  (``chat(stream=True)``, e.g. ``research_analyst``'s ``stream`` parameter).
* ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``: read by the ``openai`` client; a base URL points at any
  OpenAI-compatible server (vLLM, Ollama, LM Studio).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from otel import semconv
from otel.redaction import register_secret
from otel.run_context import RunTelemetry, checkpoint, get_current_run
from services.call_estimate import estimate_call
from services.config_error import ConfigError
from services.llm_http import GuardedHTTPClient
from services.llm_turns import ModelTurn, turn_of_completion, turn_of_stream
from services.pricing import PriceTable
from services.simulated_llm import FEATURES_MARKER, SIMULATED_BASE_URL, SimulatedLLMTransport

logger = logging.getLogger(__name__)

PROVIDERS = ("auto", "openai", "simulated")
ENV_STREAM = "ALPHATRACE_LLM_STREAM"
_TRUTH = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
DEFAULT_MODEL = "gpt-4o-mini"
SYSTEM_PROMPT = (
    "You are a cautious quantitative equity and commodity analyst. For each instrument you are given "
    "price features computed from daily closes up to the as-of date. Judge whether the price is more "
    "likely to be higher or lower after the horizon. Answer with JSON only: "
    '{"signals": [{"symbol": str, "direction": "up"|"down"|"flat", "prob_up": number in [0,1], '
    '"confidence": number in [0,1], "rationale": short str}]}.'
)


class LLMVerdictError(ValueError):
    """The model answered, but not with a verdict we can use.

    Its message says what was wrong and how long the answer was, never the answer's text (the
    completion is content: it is recorded only where content capture is opted in)."""


def _kind(value: Any) -> str:
    """What a value from the model's answer is, without its text."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return "a number outside [0, 1]" if math.isfinite(value) else "a non-finite number"
    return f"a JSON {type(value).__name__}"


@dataclass(frozen=True)
class LLMSettings:
    provider: str
    model: str
    timeout_seconds: float = 30.0
    max_retries: int = 2
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    stream: bool = False

    @property
    def simulated(self) -> bool:
        return self.provider == "simulated"


def resolve_llm_settings(config: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> LLMSettings:
    """Merge env over config over defaults; raise ``ConfigError`` for what cannot work."""
    config = config or {}
    env = os.environ if env is None else env
    provider = (env.get("ALPHATRACE_LLM_PROVIDER") or str(config.get("provider", "auto"))).strip().lower()
    if provider not in PROVIDERS:
        raise ConfigError(f"LLM provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    api_key = env.get("OPENAI_API_KEY") or None
    if provider == "auto":
        provider = "openai" if api_key else "simulated"
    if provider == "openai" and not api_key:
        raise ConfigError(
            "the LLM provider is 'openai' but OPENAI_API_KEY is not set; set it (any value for a local "
            "OpenAI-compatible server) or choose provider 'simulated'"
        )
    timeout = config.get("timeout_seconds", 30.0)
    retries = config.get("max_retries", 2)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise ConfigError(f"llm.timeout_seconds must be a number of seconds in (0, 600], got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ConfigError(f"llm.max_retries must be a whole number in [0, 10], got {retries!r}")
    stream = config.get("stream", False)
    if not isinstance(stream, bool):
        raise ConfigError(f"llm.stream must be true or false, got {stream!r}")
    raw_stream = env.get(ENV_STREAM)
    if raw_stream:
        if raw_stream.strip().lower() not in _TRUTH:
            raise ConfigError(f"{ENV_STREAM}={raw_stream!r} is not true or false; set it to true or false, or unset it")
        stream = _TRUTH[raw_stream.strip().lower()]
    return LLMSettings(
        provider=provider,
        model=env.get("ALPHATRACE_LLM_MODEL") or str(config.get("model", DEFAULT_MODEL)),
        timeout_seconds=float(timeout),
        max_retries=retries,
        base_url=(env.get("OPENAI_BASE_URL") or config.get("base_url") or None) if provider == "openai" else SIMULATED_BASE_URL,
        api_key=api_key if provider == "openai" else "simulated-no-key",
        stream=stream,
    )


def build_openai_client(settings: LLMSettings, transport: httpx2.BaseTransport | None = None) -> openai.OpenAI:
    """The real client; ``transport`` replaces the network (the simulated model, or a test's).

    Its HTTP client is ``GuardedHTTPClient`` (error bodies summarised, unrequested streams refused)
    and its key is registered with ``otel.redaction``, so neither reaches telemetry, logs or reports."""
    if not settings.simulated:
        register_secret(settings.api_key)
    if transport is None and settings.simulated:
        transport = SimulatedLLMTransport()
    http_client = GuardedHTTPClient(transport=transport, timeout=settings.timeout_seconds)
    return openai.OpenAI(
        api_key=settings.api_key,
        base_url=settings.base_url,
        timeout=settings.timeout_seconds,
        max_retries=settings.max_retries,
        http_client=http_client,
    )


@dataclass(frozen=True)
class Verdict:
    symbol: str
    direction: str
    prob_up: float
    confidence: float
    rationale: str = ""


def build_messages(features: Mapping[str, Mapping[str, float | str]], as_of: str, horizon: int) -> list[dict[str, str]]:
    payload = json.dumps({symbol: dict(values) for symbol, values in sorted(features.items())}, sort_keys=True)
    user = f"As-of date: {as_of}. Horizon: {horizon} trading days.\n{FEATURES_MARKER}\n{payload}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _unit_interval(item: Mapping[str, Any], key: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise LLMVerdictError(f"verdict for {item.get('symbol')!r}: {key} must be a number in [0, 1], got {_kind(value)}")
    return float(value)


def parse_verdicts(content: str | None, symbols: set[str]) -> dict[str, Verdict]:
    """Parse the model's JSON answer; symbols it was not asked about are ignored."""
    try:
        raw = json.loads(content or "")
    except ValueError:
        raise LLMVerdictError(f"the model did not answer with JSON (an answer of {len(content or '')} characters)") from None
    items = raw.get("signals") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise LLMVerdictError(f"the model's JSON has no 'signals' list (an answer of {len(content or '')} characters)")
    verdicts: dict[str, Verdict] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("symbol") not in symbols:
            continue
        direction = item.get("direction")
        if direction not in ("up", "down", "flat"):
            raise LLMVerdictError(f"verdict for {item['symbol']!r}: direction must be up, down or flat, got {_kind(direction)}")
        verdicts[item["symbol"]] = Verdict(
            symbol=item["symbol"],
            direction=direction,
            prob_up=_unit_interval(item, "prob_up"),
            confidence=_unit_interval(item, "confidence"),
            rationale=str(item.get("rationale", ""))[:200],
        )
    return verdicts


@dataclass(frozen=True)
class UsageCounts:
    """One response's token counts, as OpenAI documents its ``usage``: ``cached`` and ``cache_write``
    are parts of ``tokens_in``, ``reasoning`` a part of ``tokens_out`` (services/pricing.py)."""

    tokens_in: int = 0
    tokens_out: int = 0
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_counts(usage: Any) -> UsageCounts:
    """The counts of a chat completion's ``usage`` (an SDK object or a dict), with the extensions
    OpenAI-compatible servers add: cache writes as ``prompt_tokens_details.cache_write_tokens``
    (OpenRouter) or ``cache_creation_input_tokens`` (Anthropic-compatible servers, LiteLLM)."""

    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)

    prompt_details = get(usage, "prompt_tokens_details")
    completion_details = get(usage, "completion_tokens_details")
    return UsageCounts(
        tokens_in=_count(get(usage, "prompt_tokens")),
        tokens_out=_count(get(usage, "completion_tokens")),
        cached=_count(get(prompt_details, "cached_tokens")),
        cache_write=_count(get(prompt_details, "cache_write_tokens")) or _count(get(usage, "cache_creation_input_tokens")),
        reasoning=_count(get(completion_details, "reasoning_tokens")),
    )


def account_llm_call(
    run: RunTelemetry | None, usage: Any, model: str | None, settings: LLMSettings, prices: PriceTable, **call_model: str | None
) -> None:
    """Count one answered LLM call on ``run``: its tokens and its cost from the price table (``None``,
    unpriced, for a model the table lacks). A simulated call costs the run $0 and is handed to the
    budgets at the price of the model it stands in for (``settings.model``), marked as an estimate.
    ``call_model``: the call's ``provider`` and ``request_model`` for the run's root span. A call that
    failed is counted with ``run.add_llm_usage(0, 0, 0.0)``."""
    if run is None:
        return
    counts = usage_counts(usage)
    model = settings.model if settings.simulated else (model or settings.model)
    priced = prices.cost(
        model,
        counts.tokens_in,
        counts.tokens_out,
        counts.cached,
        counts.cache_write,
        counts.reasoning,
    )
    if settings.simulated:
        run.add_llm_usage(
            counts.tokens_in, counts.tokens_out, 0.0, counts.cached, spend_usd=priced, estimated=True, model=model, **call_model
        )
    else:
        run.add_llm_usage(counts.tokens_in, counts.tokens_out, priced, counts.cached, model=model, **call_model)


class AIAnalysis:
    """LLM calls, each after the run's checkpoint (``otel.run_context.checkpoint``: the kill switch
    and budgets may stop the run first); usage and cost go to the current run. ``analyze`` is the
    one-call verdict; ``chat`` is one call of any conversation (the tool loop's, ``services/tool_loop.py``)."""

    def __init__(self, client: openai.OpenAI, settings: LLMSettings, prices: PriceTable) -> None:
        self._client = client
        self.settings = settings
        self._prices = prices
        # gen_ai.provider.name of the run's root: "openai", the simulated model's too (it answers in
        # the OpenAI wire format through the same client, as the instrumentation's chat spans say)
        self._call_model = {"provider": semconv.PROVIDER_OPENAI, "request_model": settings.model}

    def analyze(self, features: Mapping[str, Mapping[str, float | str]], as_of: str, horizon: int = 5) -> dict[str, Verdict]:
        turn = self.chat(build_messages(features, as_of, horizon), temperature=0, response_format={"type": "json_object"})
        return parse_verdicts(turn.content, set(features))

    def chat(self, messages: list[dict[str, Any]], *, stream: bool | None = None, **request: Any) -> ModelTurn:
        """One call of ``chat.completions.create`` (``request``: its other arguments), streamed when
        ``stream`` (default: the settings') says so, read to its end. The call counts on the run
        even when it fails (at no cost); a stream that ends without its usage chunk counts as
        unpriced, never as $0."""
        run = get_current_run()
        if run is not None:
            run.next_call = estimate_call(messages, request)  # what the budgets price before the call
        checkpoint(semconv.STEP_LLM_CALL)  # the kill switch and budgets, before any money is spent
        streamed = self.settings.stream if stream is None else stream
        if streamed:
            request = {**request, "stream": True, "stream_options": {"include_usage": True}}
        try:
            response = self._client.chat.completions.create(model=self.settings.model, messages=messages, **request)
            if streamed:
                with response as chunks:  # closed however reading ends, and the LLM span ends with it
                    turn = turn_of_stream(chunks)
            elif isinstance(response, openai.types.chat.ChatCompletion):
                turn = turn_of_completion(response)
            else:  # e.g. a non-JSON body the SDK passed on as text
                raise LLMVerdictError(f"the LLM server did not answer with a chat completion (got {_kind(response)})")
        except Exception:
            if run is not None:
                run.add_llm_usage(0, 0, 0.0, **self._call_model)  # the call happened and failed: it counts, it costs nothing
            raise
        if run is not None:
            if turn.sdk_usage is None and not self.settings.simulated:
                run.add_llm_usage(0, 0, None, **self._call_model)  # a stream without its usage chunk: unpriced, never $0
            else:
                account_llm_call(run, turn.sdk_usage, turn.model, self.settings, self._prices, **self._call_model)
        return turn
