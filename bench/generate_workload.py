"""Generate a collector-format trace workload for the report benchmark (never committed: ~1.2 GB).

Each run is one trace with two spans, exactly as alphatrace writes them (see
docs/telemetry-contract.md): an LLM ``chat`` span and its ``invoke_agent`` root span with three
``alpha.signal`` events; 5% of runs fail. Lines are OTLP/JSON ``ExportTraceServiceRequest``s of 512
spans (the SDK batch processor's largest export), compact JSON as the collector's file exporter writes.

``--profile issue`` (default) keeps the attributes the report reads plus the GenAI ones, so 500,000
runs come to the issue's "about 1.2 GB" (its alpha signals carry no as-of date or horizon, so they
are counted but cannot be scored); ``--profile contract`` adds every optional attribute of the
contract (response id, server address, regime, horizon, as-of dates, tradable, ...), about 1.7x the
bytes, with every signal exactly as ``alpha.emit`` writes it: scorable, as-of the run's UTC day.

    python bench/generate_workload.py --runs 500000 --out /tmp/alphatrace-bench/traces.jsonl

Environment: ``ALPHATRACE_BENCH_DIR`` (default output directory, default /tmp/alphatrace-bench).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel import semconv as S

AGENTS = ("momentum", "mean_reversion", "llm_analyst", "ensemble")
SYMBOLS = ("SPX", "NDX", "WTI", "VIX", "GLD", "TLT")
DIRECTIONS = ("up", "down", "flat")
PRICE = (0.15, 0.075, 0.60)  # gpt-4o-mini, USD per 1M input, cached input, output tokens
START_NS = 1_763_900_000_000_000_000  # 2025-11-23
RUN_EVERY_NS = 1_000_000_000
SPANS_PER_LINE = 512


def default_dir() -> Path:
    return Path(os.environ.get("ALPHATRACE_BENCH_DIR", "/tmp/alphatrace-bench"))


def _s(key: str, value: str) -> str:
    return f'{{"key":"{key}","value":{{"stringValue":"{value}"}}}}'


def _i(key: str, value: int) -> str:
    return f'{{"key":"{key}","value":{{"intValue":"{value}"}}}}'


def _d(key: str, value: float) -> str:
    return f'{{"key":"{key}","value":{{"doubleValue":{value!r}}}}}'


def _resource(full: bool) -> str:
    attrs = [_s("service.name", "alphatrace"), _s("service.version", "0.1.0")]
    if full:
        attrs += [_s("telemetry.sdk.language", "python"), _s("telemetry.sdk.name", "opentelemetry"), _s("telemetry.sdk.version", "1.45.2")]
    attrs.append(f'{{"key":"{S.RESOURCE_LLM_SIMULATED}","value":{{"boolValue":false}}}}')
    return '{"attributes":[' + ",".join(attrs) + "]}"


def run_spans(i: int, rng: random.Random, full: bool) -> tuple[str, str]:
    """The LLM span and the root span of run ``i``, as compact OTLP/JSON."""
    trace_id = f"{rng.getrandbits(128):032x}"
    root_id = f"{rng.getrandbits(64):016x}"
    llm_id = f"{rng.getrandbits(64):016x}"
    run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    agent = AGENTS[i % len(AGENTS)]
    start = START_NS + i * RUN_EVERY_NS
    end = start + rng.randint(20_000_000, 900_000_000)
    tokens_in = rng.randint(300, 3000)
    cached = rng.choice((0, 0, 0, 256))
    tokens_out = rng.randint(20, 400)
    cost = ((tokens_in - cached) * PRICE[0] + cached * PRICE[1] + tokens_out * PRICE[2]) / 1_000_000
    llm_attrs = [
        _s(S.GEN_AI_OPERATION_NAME, S.OPERATION_CHAT),
        _s(S.GEN_AI_PROVIDER_NAME, "openai"),
        _s(S.GEN_AI_REQUEST_MODEL, "gpt-4o-mini"),
        _s(S.GEN_AI_RESPONSE_MODEL, "gpt-4o-mini-2024-07-18"),
        _i(S.GEN_AI_USAGE_INPUT_TOKENS, tokens_in),
        _i(S.GEN_AI_USAGE_OUTPUT_TOKENS, tokens_out),
        _i(S.GEN_AI_USAGE_CACHED_INPUT_TOKENS, cached),
        _s(S.GEN_AI_AGENT_NAME, agent),
        _s(S.AGENT_RUN_ID, run_id),
    ]
    if full:
        llm_attrs += [
            _s(S.GEN_AI_RESPONSE_ID, f"chatcmpl-{rng.getrandbits(96):024x}"),
            _s(S.SERVER_ADDRESS, "api.openai.com"),
            _i("server.port", 443),
        ]
    llm = (
        f'{{"traceId":"{trace_id}","spanId":"{llm_id}","parentSpanId":"{root_id}","flags":256,"name":"chat gpt-4o-mini","kind":3,'
        f'"startTimeUnixNano":"{start + 1_000_000}","endTimeUnixNano":"{end - 1_000_000}",'
        f'"attributes":[{",".join(llm_attrs)}],"status":{{}}}}'
    )
    failed = rng.random() < 0.05
    as_of = time.strftime("%Y-%m-%d", time.gmtime(start // 1_000_000_000))  # live agents: the day they run
    events = []
    for k in range(3):
        attrs = [
            _s(S.ALPHA_SYMBOL, SYMBOLS[(i + k) % len(SYMBOLS)]),
            _s(S.ALPHA_DIRECTION, DIRECTIONS[rng.randrange(3)]),
            _d(S.ALPHA_PROB_UP, round(rng.random(), 4)),
            _d(S.ALPHA_SCORE_FINAL, round(rng.uniform(-1, 1), 4)),
        ]
        if full:  # every field, in the order alpha.emit writes them (the SDK and the collector keep it)
            attrs[3:3] = [_d(S.ALPHA_CONFIDENCE, rng.random())]
            attrs += [
                _s(S.ALPHA_REGIME, "trend"),
                _i(S.ALPHA_HORIZON, 5),
                _s(S.ALPHA_AS_OF, as_of),
                f'{{"key":"{S.ALPHA_TRADABLE}","value":{{"boolValue":{"false" if agent == "llm_analyst" else "true"}}}}}',
            ]
        events.append(f'{{"timeUnixNano":"{end - 2000 + k}","name":"{S.EVENT_ALPHA_SIGNAL}","attributes":[{",".join(attrs)}]}}')
    root_attrs = [
        _s(S.GEN_AI_OPERATION_NAME, S.OPERATION_INVOKE_AGENT),
        _s(S.GEN_AI_AGENT_NAME, agent),
        _s(S.AGENT_RUN_ID, run_id),
        _s(S.AGENT_RUN_OUTCOME, S.OUTCOME_ERROR if failed else S.OUTCOME_OK),
        _i(S.RUN_LLM_CALLS, 1),
        _i(S.RUN_INPUT_TOKENS, tokens_in),
        _i(S.RUN_OUTPUT_TOKENS, tokens_out),
        _i(S.RUN_CACHED_INPUT_TOKENS, cached),
        _d(S.RUN_COST_USD, cost),
        _i(S.RUN_ALPHA_SIGNALS, 3),
    ]
    if full:
        root_attrs += [_s(S.AGENT_RUN_AS_OF, as_of), _i(S.RUN_UNPRICED_LLM_CALLS, 0)]
    if failed:
        root_attrs.append(_s(S.ERROR_TYPE, "builtins.ValueError"))
        status = '{"message":"bad input","code":2}'
    else:
        status = "{}"
    root = (
        f'{{"traceId":"{trace_id}","spanId":"{root_id}","flags":256,"name":"invoke_agent {agent}","kind":1,'
        f'"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{",".join(root_attrs)}],'
        f'"events":[{",".join(events)}],"status":{status}}}'
    )
    return llm, root


def generate(path: Path, runs: int, seed: int = 1, profile: str = "issue") -> int:
    """Write ``runs`` runs to ``path``; returns the number of bytes written."""
    full = profile == "contract"
    rng = random.Random(seed)
    resource = _resource(full)
    per_line = SPANS_PER_LINE // 2
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        for first in range(0, runs, per_line):
            llm_spans, root_spans = [], []
            for i in range(first, min(runs, first + per_line)):
                llm, root = run_spans(i, rng, full)
                llm_spans.append(llm)
                root_spans.append(root)
            line = (
                f'{{"resourceSpans":[{{"resource":{resource},"scopeSpans":['
                f'{{"scope":{{"name":"opentelemetry.instrumentation.genai_openai","version":"1.3b0"}},"spans":[{",".join(llm_spans)}]}},'
                f'{{"scope":{{"name":"alphatrace","version":"0.1.0"}},"spans":[{",".join(root_spans)}]}}]}}]}}\n'
            )
            written += out.write(line)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500_000)
    parser.add_argument("--out", type=Path, default=None, help="output file (default: $ALPHATRACE_BENCH_DIR/traces.jsonl)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=("issue", "contract"), default="issue")
    args = parser.parse_args(argv)
    out = args.out or default_dir() / "traces.jsonl"
    size = generate(out, args.runs, args.seed, args.profile)
    print(f"wrote {out}: {args.runs} runs, {2 * args.runs} spans, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
