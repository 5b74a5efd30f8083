"""Telemetry under collector faults and load, against the real collector built by ``make stack``.

    .venv/bin/python bench/collector_load.py faults [--seconds 4]
    .venv/bin/python bench/collector_load.py burst [--rate 2000] [--seconds 30] [--processes 2]

``faults``: one agent thread runs the real wrapper (root span, an instrumented LLM call over the
simulated transport, three alpha events) back to back while the collector is healthy, absent, killed
and restarted, or frozen (SIGSTOP). It prints the per-run time on the agent's thread against a
no-telemetry baseline measured in the same process, and where every span went.

``burst``: worker processes each drive ``rate / processes`` runs per second for ``seconds`` into the
collector over OTLP/HTTP with the SDK settings printed; then counts spans generated vs spans in the
collector's file, and the peak RSS of the app processes and of the collector. ``--synthetic-llm``
makes the LLM span by hand instead of calling the openai client, to measure the telemetry path alone.

Reads the ``OTEL_BSP_*`` variables through the SDK (the burst sets its own unless given).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from alpha.emit import emit_alpha_signal
from bench.agent_workload import FEATURES, SIGNALS  # the same run as the per-run cost bench
from otel.provider import configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper
from services.ai_analysis import AIAnalysis, LLMSettings, build_openai_client
from services.pricing import PriceTable
from services.simulated_llm import SIMULATED_BASE_URL
from tests import stack


def _analysis() -> AIAnalysis:
    settings = LLMSettings(provider="simulated", model="gpt-4o-mini", base_url=SIMULATED_BASE_URL, api_key="simulated-no-key")
    return AIAnalysis(build_openai_client(settings), settings, PriceTable.load())


def _one_run_fn(analysis: AIAnalysis):
    def agent() -> None:
        analysis.analyze(FEATURES, "2018-03-01")
        emit_alpha_signal(SIGNALS, "bench")

    return agent


def _timed_loop(run, seconds: float) -> list[float]:
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"runs": len(ordered), "median_us": statistics.median(ordered), "p99_us": ordered[int(len(ordered) * 0.99) - 1]}


def _spans_in(running: stack.LocalStack) -> int:
    total = 0
    for path in running.trace_files():
        for line in stack.complete_lines(path):
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    total += len(ss.get("spans", []))
    return total


def faults(seconds: float) -> None:
    analysis = _analysis()
    baseline = _summary(_timed_loop(_one_run_fn(analysis), seconds))
    print(f"baseline (no telemetry): median {baseline['median_us']:.0f} us, p99 {baseline['p99_us']:.0f} us per run")
    scenarios = {
        "healthy": lambda s: None,
        "absent at start": lambda s: (s.stop_collector(), time.sleep(seconds / 2), s.start_collector()),
        "SIGKILL + restart": lambda s: (s.kill_collector(), time.sleep(1), s.start_collector()),
        "frozen 3 s": lambda s: (os.kill(s.collector_pid, signal.SIGSTOP), time.sleep(3), os.kill(s.collector_pid, signal.SIGCONT)),
    }
    results = {"baseline": baseline}
    for name, fault in scenarios.items():
        with tempfile.TemporaryDirectory() as tmp, stack.LocalStack(tmp, with_jaeger=False) as running:
            telemetry = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": running.otlp_http_endpoint}, llm_simulated=True)
            wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
            agent = _one_run_fn(_analysis())
            faulting = threading.Thread(target=fault, args=(running,))
            faulting.start()
            samples = _timed_loop(functools.partial(wrapper.run, "bench", agent), seconds)
            faulting.join()
            started = time.monotonic()
            telemetry.shutdown(timeout_seconds=10)
            exit_s = time.monotonic() - started
            time.sleep(1.5)
            snap = telemetry.accounting.snapshot()
            row = _summary(samples) | {
                "exit_s": round(exit_s, 2),
                "ended": snap.ended,
                "exported": snap.exported,
                "failed": snap.export_failed,
                "dropped": snap.dropped,
                "in_file": _spans_in(running),
            }
            row["added_median_us"] = row["median_us"] - baseline["median_us"]
            results[name] = row
            print(
                f"{name:<18} median {row['median_us']:.0f} us (+{row['added_median_us']:.0f}), p99 {row['p99_us']:.0f} us, "
                f"exit {exit_s:.2f} s; spans ended {snap.ended}, exported {snap.exported}, failed {snap.export_failed}, "
                f"dropped {snap.dropped}, in file {row['in_file']}"
            )
    print(json.dumps(results, indent=2))


def _synthetic_llm_run(tracer):
    """The span shape of a run without the openai client's own cost: a CLIENT child with usage."""
    from opentelemetry.trace import SpanKind

    def agent() -> None:
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as chat:
            chat.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 812,
                    "gen_ai.usage.output_tokens": 64,
                }
            )
        emit_alpha_signal(SIGNALS, "burst")

    return agent


def _burst_worker(endpoint: str, rate: float, seconds: float, out: multiprocessing.Queue, real_llm: bool = True) -> None:
    import resource

    telemetry = configure_telemetry(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        llm_simulated=True,
        processor_factory=lambda e: BatchSpanProcessor(
            e,
            max_queue_size=int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", 65536)),
            max_export_batch_size=int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048)),
            schedule_delay_millis=200,
        ),
    )
    wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)
    agent = _one_run_fn(_analysis()) if real_llm else _synthetic_llm_run(telemetry.tracer())
    interval = 1.0 / rate
    start = time.monotonic()
    next_at = start
    runs = 0
    while time.monotonic() - start < seconds:
        wrapper.run("burst", agent)
        runs += 1
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - start
    telemetry.shutdown(timeout_seconds=30)
    snap = telemetry.accounting.snapshot()
    out.put(
        {
            "runs": runs,
            "elapsed_s": elapsed,
            "ended": snap.ended,
            "exported": snap.exported,
            "failed": snap.export_failed,
            "dropped": snap.dropped,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def burst(rate: float, seconds: float, processes: int, real_llm: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, stack.LocalStack(tmp, with_jaeger=False) as running:
        queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        ctx = multiprocessing.get_context("spawn")
        workers = [
            ctx.Process(target=_burst_worker, args=(running.otlp_http_endpoint, rate / processes, seconds, queue, real_llm))
            for _ in range(processes)
        ]
        for w in workers:
            w.start()
        results = [queue.get(timeout=seconds + 120) for _ in workers]
        for w in workers:
            w.join()
        time.sleep(2)
        in_file = _spans_in(running)
        collector_rss = _peak_rss_mb(running.collector_pid)
    runs = sum(r["runs"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    ended = sum(r["ended"] for r in results)
    summary = {
        "target_runs_per_s": rate,
        "seconds": seconds,
        "processes": processes,
        "llm": "openai client, simulated" if real_llm else "synthetic span",
        "achieved_runs_per_s": round(runs / elapsed, 1),
        "runs": runs,
        "spans_ended": ended,
        "spans_exported": sum(r["exported"] for r in results),
        "spans_failed": sum(r["failed"] for r in results),
        "spans_dropped": sum(r["dropped"] for r in results),
        "spans_in_collector_file": in_file,
        "app_peak_rss_mb_per_process": [round(r["peak_rss_mb"], 1) for r in results],
        "collector_peak_rss_mb": round(collector_rss, 1),
        "sdk": {
            "max_queue_size": int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", 65536)),
            "max_export_batch_size": int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048)),
            "schedule_delay_ms": 200,
            "protocol": "http/protobuf",
        },
    }
    print(json.dumps(summary, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("faults")
    f.add_argument("--seconds", type=float, default=4.0)
    b = sub.add_parser("burst")
    b.add_argument("--rate", type=float, default=2000)
    b.add_argument("--seconds", type=float, default=30)
    b.add_argument("--processes", type=int, default=2)
    b.add_argument("--synthetic-llm", action="store_true", help="make the LLM span by hand: measures the telemetry path alone")
    args = parser.parse_args()
    reason = stack.ensure_built()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    if args.mode == "faults":
        faults(args.seconds)
    else:
        burst(args.rate, args.seconds, args.processes, real_llm=not args.synthetic_llm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
