"""Per-run telemetry cost on the agent's thread, against the seed's hand-made JSONL, in one process.

Each "run" does the same work in every variant: one chat completion through the real ``openai`` client
over the simulated transport, and three alpha signals. The variants differ only in telemetry:

* ``bare``: no telemetry at all (the baseline the others are measured against);
* ``seed_jsonl``: the seed's approach, four ``open(..., "a")`` + ``write`` per run (one run record,
  three alpha records);
* ``otel_file``: alphatrace as shipped: root span, instrumented LLM span, three ``alpha.signal``
  events, BatchSpanProcessor and the embedded file exporter (its writes happen on the batch thread);
* ``otel_file_no_llm_span``: the same without the OpenAI instrumentation (what the LLM span costs);
* ``otel_otlp_down``: the same, exporting over OTLP/HTTP to a port where nothing listens.

Prints a table (median and p99 microseconds per run, and overhead over ``bare``) and JSON.

    .venv/bin/python bench/run_overhead.py [--runs 5000] [--out DIR]

Reads ``OTEL_BSP_*`` through the SDK; nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace.export import SpanExporter

from alpha.emit import emit_alpha_signal
from otel.provider import configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper
from services.ai_analysis import AIAnalysis, LLMSettings, build_openai_client
from services.pricing import PriceTable
from services.simulated_llm import SIMULATED_BASE_URL

FEATURES = {"SPX": {"momentum_20d": 0.01, "momentum_60d": 0.04, "zscore_20d": 0.5, "vol_20d": 0.12, "regime": "trend_up"}}
SIGNALS = [
    {
        "symbol": s,
        "direction": "up",
        "prob_up": 0.6,
        "confidence": 0.3,
        "ensemble_score_final": 0.25,
        "regime": "trend_up",
        "horizon": 5,
        "as_of": "2018-03-01",
    }
    for s in ("SPX", "IXIC", "WTI")
]


def _analysis() -> AIAnalysis:
    settings = LLMSettings(provider="simulated", model="gpt-4o-mini", base_url=SIMULATED_BASE_URL, api_key="simulated-no-key")
    return AIAnalysis(build_openai_client(settings), settings, PriceTable.load())


def _work(analysis: AIAnalysis) -> list[dict]:
    analysis.analyze(FEATURES, "2018-03-01")
    return SIGNALS


def _time_runs(runs: int, one_run) -> list[float]:
    for _ in range(min(200, runs)):  # warm-up
        one_run()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        one_run()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def bench_bare(runs: int, _: Path) -> list[float]:
    analysis = _analysis()
    return _time_runs(runs, lambda: _work(analysis))


def bench_seed_jsonl(runs: int, folder: Path) -> list[float]:
    analysis = _analysis()
    events, alpha = folder / "events.jsonl", folder / "alpha.jsonl"

    def one_run() -> None:
        t0 = time.time()
        found = _work(analysis)
        record = {
            "ts": datetime.now(UTC).isoformat(),
            "agent": "bench",
            "run_id": "x",
            "latency_ms": int((time.time() - t0) * 1000),
            "tokens_in": 100,
            "tokens_out": 20,
            "cost_usd": 0.0,
            "errors": 0,
        }
        with open(events, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        for signal in found:
            with open(alpha, "a", encoding="utf-8") as f:
                f.write(json.dumps({"ts": datetime.now(UTC).isoformat(), "agent": "bench", **signal}) + "\n")

    return _time_runs(runs, one_run)


def _bench_otel(
    runs: int, exporter: SpanExporter | None, trace_file: Path | None, env: dict[str, str], instrument: bool = True
) -> list[float]:
    telemetry = configure_telemetry(exporter=exporter, trace_file=trace_file, llm_simulated=True, env=env, instrument_openai=instrument)
    try:
        analysis = _analysis()
        wrapper = AgentRunWrapper(telemetry.tracer())

        def agent() -> None:
            emit_alpha_signal(_work(analysis), "bench")

        return _time_runs(runs, lambda: wrapper.run("bench", agent))
    finally:
        telemetry.shutdown(timeout_seconds=5)


def bench_otel_file(runs: int, folder: Path) -> list[float]:
    return _bench_otel(runs, None, folder / "traces.jsonl", env={})


def bench_otel_file_no_llm_span(runs: int, folder: Path) -> list[float]:
    return _bench_otel(runs, None, folder / "traces-no-llm-span.jsonl", env={}, instrument=False)


def bench_otel_otlp_down(runs: int, folder: Path) -> list[float]:
    return _bench_otel(runs, None, None, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})


VARIANTS = {
    "bare": bench_bare,
    "seed_jsonl": bench_seed_jsonl,
    "otel_file": bench_otel_file,
    "otel_file_no_llm_span": bench_otel_file_no_llm_span,
    "otel_otlp_down": bench_otel_otlp_down,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=None, help="folder for the files written (default: a temp dir)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="alphatrace-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    results = {}
    for name, bench in VARIANTS.items():
        samples = sorted(bench(args.runs, folder))
        results[name] = {"median_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99) - 1]}
    base = results["bare"]["median_us"]
    print(f"{'variant':<22}{'median us/run':>15}{'p99 us/run':>13}{'overhead us':>13}{'x bare':>9}")
    for name, r in results.items():
        r["overhead_us"] = r["median_us"] - base
        r["ratio_to_bare"] = r["median_us"] / base
        print(f"{name:<22}{r['median_us']:>15.1f}{r['p99_us']:>13.1f}{r['overhead_us']:>13.1f}{r['ratio_to_bare']:>9.2f}")
    seed = results["seed_jsonl"]["overhead_us"]
    ours = results["otel_file"]["overhead_us"]
    print(
        f"\ntelemetry overhead per run: alphatrace {ours:.1f} us vs seed JSONL {seed:.1f} us "
        f"(ratio {ours / seed if seed > 0 else float('nan'):.2f})"
    )
    print(json.dumps({"runs": args.runs, "python": sys.version.split()[0], "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
