"""Generate a collector-format trace workload for the report benchmark (never committed: ~1.2 GB).

By default each run is one trace with two spans, exactly as alphatrace writes them (see
docs/telemetry-contract.md): an LLM ``chat`` span and its ``invoke_agent`` root span with three
``alpha.signal`` events; 5% of runs fail. Lines are OTLP/JSON ``ExportTraceServiceRequest``s of 512
spans (the SDK batch processor's largest export), compact JSON as the collector's file exporter writes.

``--profile issue`` (default) keeps the attributes the report reads plus the GenAI ones, so 500,000
runs come to the issue's "about 1.2 GB" (its alpha signals carry no as-of date or horizon, so they
are counted but cannot be scored); ``--profile contract`` adds every optional attribute of the
contract (response id, server address, regime, horizon, as-of dates, tradable, ...), about 1.7x the
bytes, with every signal exactly as ``alpha.emit`` writes it: scorable, as-of the run's UTC day.

The shape of the file (``Shape``; every option deterministic for a given ``--seed``), for the
benchmark's shape matrix (``bench/report_bench.py --matrix``):

* ``--order child-first`` (default: each run's LLM and tool spans before its root, as the SDK
  exports them, a parent ending after its children) or ``root-first`` (the root before them). A
  line groups its spans by instrumentation scope, as the OTLP encoder does: the LLM spans' scope
  first for child-first, the roots' (and tools') scope first for root-first, so every root is read
  after (before) all its children, in a line of many runs too;
* ``--no-totals``: roots without the run totals (``alphatrace.run.llm_calls``, ``.input_tokens``,
  ``.output_tokens``, ``.cached_input_tokens``, ``.cost_usd``, ``.alpha_signals``,
  ``.unpriced_llm_calls``): runs the report cannot check;
* ``--old-names``: alphatrace's keys and event names as written before the project namespace
  (``agent.run_id``, ``alpha.signal``, ...: ``otel.semconv.LEGACY_NAMES``), a file the report
  still reads;
* ``--agents N`` (default 4: the fleet's names; otherwise ``agent_0000`` ...);
* ``--llm-spans N`` ``chat`` spans per run (default 1), and ``--tool-spans N`` ``execute_tool``
  spans per run (default 0; GenAI semantic conventions: name ``execute_tool {gen_ai.tool.name}``,
  ``gen_ai.operation.name=execute_tool``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
  ``gen_ai.tool.type=function``, children of the root, with ``gen_ai.agent.name`` and
  ``alphatrace.run.id`` like the chat spans);
* ``--signals scorable`` or ``unscorable`` (default: what the profile writes): the alpha events with
  every field ``alpha.emit`` writes (horizon and as-of: scorable), or without horizon and as-of;
* ``--spans-per-line N`` (default 512; 1 is a file written span by span, 4,096 a large batch);
* ``--compression zstd``: the whole file one zstd stream (the collector's native compression),
  else plain JSON lines.

    python bench/generate_workload.py --runs 500000 --out /tmp/alphatrace-bench/traces.jsonl
    python bench/generate_workload.py --spans 200000 --order root-first --no-totals --agents 1000 \\
        --llm-spans 8 --tool-spans 8 --compression zstd --out /tmp/worst.jsonl.zst

Environment: ``ALPHATRACE_BENCH_DIR`` (default output directory, default /tmp/alphatrace-bench).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import zstandard

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


# the GenAI semantic conventions' tool-call span (written here as the conventions spell it)
OPERATION_EXECUTE_TOOL = "execute_tool"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
TOOLS = ("get_prices", "compute_features", "read_news")
SCOPE_LLM = '{"name":"opentelemetry.instrumentation.genai_openai","version":"1.3b0"}'
SCOPE_ALPHATRACE = '{"name":"alphatrace","version":"0.1.0"}'
ORDERS = ("child-first", "root-first")
COMPRESSIONS = ("none", "zstd")


@dataclass(frozen=True)
class Shape:
    """How the workload's file is laid out (module docstring); the defaults are the base workload."""

    order: str = "child-first"
    totals: bool = True
    agents: int = len(AGENTS)
    llm_spans: int = 1
    tool_spans: int = 0
    scorable: bool | None = None  # None: as the profile writes them (contract: scorable)
    spans_per_line: int = SPANS_PER_LINE
    compression: str = "none"
    old_names: bool = False  # alphatrace's names of before the project namespace

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order {self.order!r}: expected one of {', '.join(ORDERS)}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression {self.compression!r}: expected one of {', '.join(COMPRESSIONS)}")
        if self.agents < 1 or self.llm_spans < 0 or self.tool_spans < 0 or self.spans_per_line < 1:
            raise ValueError(f"not a workload shape: {self}")

    @property
    def spans_per_run(self) -> int:
        return 1 + self.llm_spans + self.tool_spans


def agent_names(count: int) -> tuple[str, ...]:
    return AGENTS if count == len(AGENTS) else tuple(f"agent_{k:04d}" for k in range(count))


def run_spans(i: int, rng: random.Random, full: bool, shape: Shape = Shape(), agents: tuple[str, ...] = AGENTS) -> list[tuple[str, str]]:
    """The spans of run ``i`` in export order, each as (scope, compact OTLP/JSON): by default the
    LLM span, then its root span."""
    scorable = full if shape.scorable is None else shape.scorable
    trace_id = f"{rng.getrandbits(128):032x}"
    root_id = f"{rng.getrandbits(64):016x}"
    llm_id = f"{rng.getrandbits(64):016x}"
    run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    agent = agents[i % len(agents)]
    start = START_NS + i * RUN_EVERY_NS
    end = start + rng.randint(20_000_000, 900_000_000)
    calls = max(shape.llm_spans, 1)
    step = (end - start - 2_000_000) // calls  # each LLM call (and the tool call after it) in its slice
    children: list[tuple[str, str]] = []
    totals = [0, 0, 0, 0.0]  # input, output, cached tokens, cost
    for k in range(shape.llm_spans):
        span_id = llm_id if k == 0 else f"{rng.getrandbits(64):016x}"
        tokens_in = rng.randint(300, 3000)
        cached = rng.choice((0, 0, 0, 256))
        tokens_out = rng.randint(20, 400)
        totals[0] += tokens_in
        totals[1] += tokens_out
        totals[2] += cached
        totals[3] += ((tokens_in - cached) * PRICE[0] + cached * PRICE[1] + tokens_out * PRICE[2]) / 1_000_000
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
        call_start = start + 1_000_000 + k * step
        call_end = end - 1_000_000 if calls == 1 else call_start + step * 3 // 4
        children.append(
            (
                SCOPE_LLM,
                f'{{"traceId":"{trace_id}","spanId":"{span_id}","parentSpanId":"{root_id}","flags":256,"name":"chat gpt-4o-mini",'
                f'"kind":3,"startTimeUnixNano":"{call_start}","endTimeUnixNano":"{call_end}",'
                f'"attributes":[{",".join(llm_attrs)}],"status":{{}}}}',
            )
        )
    tools: list[tuple[str, str]] = []
    for k in range(shape.tool_spans):
        tool = TOOLS[k % len(TOOLS)]
        # in the slice of LLM call k % calls, after the call: the model asked for the tool
        tool_start = start + 1_000_000 + (k % calls) * step + step * 3 // 4 + 1000 * (1 + k // calls)
        tool_attrs = [
            _s(S.GEN_AI_OPERATION_NAME, OPERATION_EXECUTE_TOOL),
            _s(GEN_AI_TOOL_NAME, tool),
            _s(GEN_AI_TOOL_CALL_ID, f"call_{rng.getrandbits(96):024x}"),
            _s(GEN_AI_TOOL_TYPE, "function"),
            _s(S.GEN_AI_AGENT_NAME, agent),
            _s(S.AGENT_RUN_ID, run_id),
        ]
        tools.append(
            (
                SCOPE_ALPHATRACE,
                f'{{"traceId":"{trace_id}","spanId":"{rng.getrandbits(64):016x}","parentSpanId":"{root_id}","flags":256,'
                f'"name":"execute_tool {tool}","kind":1,"startTimeUnixNano":"{tool_start}","endTimeUnixNano":"{tool_start + step // 8}",'
                f'"attributes":[{",".join(tool_attrs)}],"status":{{}}}}',
            )
        )
    if tools:  # in the order they end (the SDK exports a span when it ends): each call, then its tools
        llm_spans = children
        children = []
        for c in range(calls):
            children += llm_spans[c : c + 1] + tools[c::calls]
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
        if scorable:  # every field, in the order alpha.emit writes them (the SDK and the collector keep it)
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
    ]
    if shape.totals:
        root_attrs += [
            _i(S.RUN_LLM_CALLS, shape.llm_spans),
            _i(S.RUN_INPUT_TOKENS, totals[0]),
            _i(S.RUN_OUTPUT_TOKENS, totals[1]),
            _i(S.RUN_CACHED_INPUT_TOKENS, totals[2]),
            _d(S.RUN_COST_USD, totals[3]),
            _i(S.RUN_ALPHA_SIGNALS, 3),
        ]
    if full:
        root_attrs.append(_s(S.AGENT_RUN_AS_OF, as_of))
        if shape.totals:
            root_attrs.append(_i(S.RUN_UNPRICED_LLM_CALLS, 0))
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
    if shape.order == "root-first":
        return [(SCOPE_ALPHATRACE, root), *children]
    return [*children, (SCOPE_ALPHATRACE, root)]


def _line(resource: str, spans: list[tuple[str, str]], scope_order: tuple[str, ...]) -> str:
    """One export request: the spans grouped by scope (keeping their order within it), the scopes in
    ``scope_order``, then any other."""
    scopes: dict[str, list[str]] = {scope: [] for scope in scope_order}
    for scope, span in spans:
        scopes.setdefault(scope, []).append(span)
    groups = ",".join(f'{{"scope":{scope},"spans":[{",".join(items)}]}}' for scope, items in scopes.items() if items)
    return f'{{"resourceSpans":[{{"resource":{resource},"scopeSpans":[{groups}]}}]}}\n'


def runs_for(spans: int, shape: Shape = Shape()) -> int:
    """Runs of ``shape`` that make ``spans`` spans (rounded down to whole runs, at least one)."""
    return max(1, spans // shape.spans_per_run)


# (quoted name now, quoted old name): a name is always a whole JSON string here (a key or an event name)
_OLD_NAMES = [(f'"{new}"', f'"{old}"') for old, new in S.LEGACY_NAMES.items()]


def _as_old_names(line: str) -> str:
    """A line with alphatrace's names as written before the project namespace."""
    for new, old in _OLD_NAMES:
        line = line.replace(new, old)
    return line


def generate(path: Path, runs: int, seed: int = 1, profile: str = "issue", shape: Shape = Shape()) -> int:
    """Write ``runs`` runs to ``path`` in ``shape``; returns the bytes of JSON written (before any
    compression)."""
    full = profile == "contract"
    rng = random.Random(seed)
    resource = _resource(full)
    agents = agent_names(shape.agents)
    # children's scope first (child-first), or the roots' (root-first): in a line holding a root and
    # its children, the root is read after (before) all of them, whatever the line's first span
    scope_order = (SCOPE_LLM, SCOPE_ALPHATRACE) if shape.order == "child-first" else (SCOPE_ALPHATRACE, SCOPE_LLM)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    names = _as_old_names if shape.old_names else str
    with open(path, "wb") as raw:
        out = zstandard.ZstdCompressor(level=3).stream_writer(raw) if shape.compression == "zstd" else raw
        batch: list[tuple[str, str]] = []
        for i in range(runs):
            batch += run_spans(i, rng, full, shape, agents)
            while len(batch) >= shape.spans_per_line:
                data = names(_line(resource, batch[: shape.spans_per_line], scope_order)).encode()
                del batch[: shape.spans_per_line]
                written += out.write(data) and len(data)
        if batch:
            data = names(_line(resource, batch, scope_order)).encode()
            written += out.write(data) and len(data)
        if out is not raw:
            out.flush(zstandard.FLUSH_FRAME)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--runs", type=int, default=None, help="runs to write (default 500,000)")
    size.add_argument("--spans", type=int, default=None, help="about this many spans (whole runs)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: $ALPHATRACE_BENCH_DIR/traces.jsonl)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=("issue", "contract"), default="issue")
    parser.add_argument("--order", choices=ORDERS, default="child-first")
    parser.add_argument("--no-totals", action="store_true", help="roots without the run totals")
    parser.add_argument("--agents", type=int, default=len(AGENTS))
    parser.add_argument("--llm-spans", type=int, default=1, help="chat spans per run")
    parser.add_argument("--tool-spans", type=int, default=0, help="execute_tool spans per run")
    parser.add_argument("--signals", choices=("scorable", "unscorable"), default=None, help="default: as the profile writes them")
    parser.add_argument("--spans-per-line", type=int, default=SPANS_PER_LINE)
    parser.add_argument("--compression", choices=COMPRESSIONS, default="none", help="zstd: the whole file one zstd stream")
    parser.add_argument("--old-names", action="store_true", help="alphatrace's names of before the project namespace")
    args = parser.parse_args(argv)
    shape = Shape(
        order=args.order,
        totals=not args.no_totals,
        agents=args.agents,
        llm_spans=args.llm_spans,
        tool_spans=args.tool_spans,
        scorable=None if args.signals is None else args.signals == "scorable",
        spans_per_line=args.spans_per_line,
        compression=args.compression,
        old_names=args.old_names,
    )
    runs = args.runs if args.runs is not None else runs_for(args.spans, shape) if args.spans is not None else 500_000
    out = args.out or default_dir() / ("traces.jsonl" if shape.compression == "none" else "traces.jsonl.zst")
    size_written = generate(out, runs, args.seed, args.profile, shape)
    on_disk = out.stat().st_size
    print(
        f"wrote {out}: {runs} runs, {runs * shape.spans_per_run} spans, {size_written / 1e6:.1f} MB of JSON"
        + (f" ({on_disk / 1e6:.1f} MB compressed)" if on_disk != size_written else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
