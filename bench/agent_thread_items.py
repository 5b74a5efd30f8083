"""What each piece of telemetry costs on the agent's thread, each measured alone, in one process.

Items are timed in rounds (``--rounds``; the order reversed every other round) as the agent thread's
CPU time per call, median over rounds:

* ``openai call, instrumented`` / ``openai call, not instrumented``: one chat completion through the
  real client over the simulated transport inside a run, with the official instrumentation on and
  off (the difference is the instrumentation's LLM span);
* ``Protocol isinstance``: ``isinstance(chat_completion, ParsableResponse)``, the check the
  instrumentation makes on every response (``docs/benchmarks.md`` has the upstream report);
* ``root span, plain SDK``: ``start_as_current_span`` with three attributes and a ``uuid4`` run id,
  an outcome attribute, as a plain OpenTelemetry user writes it;
* ``run wrapper``: ``AgentRunWrapper.run`` of a function doing nothing (root span, run context,
  outcome, totals, loss counters); ``..., root finished directly``: the same on a provider without
  ``RunSpanProcessor`` (a plain SDK provider with ``RunAttributesSpanProcessor`` and the batch
  processor), so everything goes on the live span (``otel/run_spans.py`` says what differs);
* ``3 add_event, plain SDK`` / ``emit_alpha_signal, 3 signals``: inside a run (and finished directly);
* ``LLM-like span in a run``: a span with five start attributes and five more set before it ends
  (what the instrumentation's span does with the SDK), on alphatrace's provider and on the plain one:
  the difference is what ``RunSpanProcessor`` adds to each span;
* ``str(uuid4())`` / ``new_run_id()``; ``as-of parse`` / ``as-of cached``; ``warn_if_losing()`` /
  ``losses()``: the old and new way of one step each.

    .venv/bin/python bench/agent_thread_items.py [--rounds 30] [--calls 300]

Reads no environment variables (``OTEL_*`` are cleared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel import semconv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]

    from openai.types.chat import ChatCompletion
    from opentelemetry import trace
    from opentelemetry.instrumentation.genai.openai._raw_response import ParsableResponse
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from alpha import emit
    from bench.agent_workload import AS_OF, FEATURES, SIGNALS, openai_analysis, plain_signal_event
    from otel.file_exporter import CollectorFileExporter
    from otel.provider import configure_telemetry
    from otel.run_context import RunAttributesSpanProcessor
    from services.agent_run_wrapper import AgentRunWrapper, new_run_id

    telemetry = configure_telemetry(trace_file=Path(tempfile.mkdtemp()) / "t.jsonl", llm_simulated=True, env={}, instrument_openai=False)
    tracer = telemetry.tracer()
    wrapper = AgentRunWrapper(tracer, accounting=telemetry.accounting)
    direct_provider = TracerProvider(shutdown_on_exit=False)
    direct_provider.add_span_processor(RunAttributesSpanProcessor())
    direct_provider.add_span_processor(
        BatchSpanProcessor(CollectorFileExporter(Path(tempfile.mkdtemp()) / "t.jsonl"), max_queue_size=16384, schedule_delay_millis=1000)
    )
    direct_tracer = direct_provider.get_tracer("alphatrace")
    direct_wrapper = AgentRunWrapper(direct_tracer, accounting=telemetry.accounting)
    analysis = openai_analysis()
    completion = ChatCompletion.model_validate(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "{}"}}],
        }
    )

    def plain_root() -> None:
        attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bench", semconv.AGENT_RUN_ID: str(uuid.uuid4())}
        with tracer.start_as_current_span("invoke_agent bench", attributes=attributes) as span:
            span.set_attribute(semconv.AGENT_RUN_OUTCOME, "ok")

    def plain_events() -> None:
        span = trace.get_current_span()
        for s in SIGNALS:
            span.add_event(semconv.EVENT_ALPHA_SIGNAL, plain_signal_event(s))

    def nothing() -> None:
        pass

    def in_run(fn, runner=wrapper):
        return lambda: runner.run("bench", fn, as_of=AS_OF)

    start = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.provider.name": "openai"}
    start |= {"server.address": "127.0.0.1", "server.port": 443}
    finish = {"gen_ai.response.model": "gpt-4o-mini", "gen_ai.response.id": "chatcmpl-1", "gen_ai.usage.input_tokens": 158}
    finish |= {"gen_ai.usage.output_tokens": 32, "gen_ai.response.finish_reasons": ("stop",)}

    def llm_like(on):
        def span() -> None:
            child = on.start_span("chat gpt-4o-mini", attributes=start)
            child.set_attributes(finish)
            child.end()

        return span

    def instrumented(on: bool):
        def toggle() -> None:
            if on and telemetry._instrumentor is None:
                telemetry.instrument_openai()
            if not on and telemetry._instrumentor is not None:
                telemetry._instrumentor.uninstrument()
                telemetry._instrumentor = None

        return toggle

    items = {
        "openai call, instrumented": (in_run(lambda: analysis.analyze(FEATURES, AS_OF)), instrumented(True)),
        "openai call, not instrumented": (in_run(lambda: analysis.analyze(FEATURES, AS_OF)), instrumented(False)),
        "Protocol isinstance": (lambda: isinstance(completion, ParsableResponse), None),
        "root span, plain SDK": (plain_root, None),
        "run wrapper": (in_run(nothing), None),
        "run wrapper, root finished directly": (in_run(nothing, direct_wrapper), None),
        "3 add_event, plain SDK (in a run)": (in_run(plain_events), None),
        "emit_alpha_signal, 3 signals (in a run)": (in_run(lambda: emit.emit_alpha_signal(SIGNALS, "bench")), None),
        "emit_alpha_signal, 3 signals (in a run, root finished directly)": (
            in_run(lambda: emit.emit_alpha_signal(SIGNALS, "bench"), direct_wrapper),
            None,
        ),
        "LLM-like span in a run, alphatrace provider": (in_run(llm_like(tracer)), None),
        "LLM-like span in a run, plain SDK provider": (in_run(llm_like(direct_tracer), direct_wrapper), None),
        "str(uuid4())": (lambda: str(uuid.uuid4()), None),
        "new_run_id()": (new_run_id, None),
        "as-of parse": (lambda: date.fromisoformat(AS_OF[:10]).isoformat(), None),
        "as-of cached": (lambda: emit._as_of(AS_OF), None),
        "warn_if_losing()": (telemetry.accounting.warn_if_losing, None),
        "losses()": (telemetry.accounting.losses, None),
    }
    samples: dict[str, list[float]] = {name: [] for name in items}
    names = list(items)
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            fn, setup = items[name]
            if setup is not None:
                setup()
            for _ in range(10):
                fn()
            started = time.thread_time_ns()
            for _ in range(args.calls):
                fn()
            samples[name].append((time.thread_time_ns() - started) / args.calls / 1000)
            time.sleep(0.01)  # let the export thread run between items
    telemetry.shutdown()
    direct_provider.shutdown()
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.calls} calls, agent thread CPU per call")
    print("| item | median µs | range µs |")
    print("|---|---|---|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):,.1f} | {min(values):,.1f} to {max(values):,.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
