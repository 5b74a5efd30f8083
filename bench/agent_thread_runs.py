"""What each telemetry variant adds to a run on the agent's thread, the variants interleaved in ONE
process, block by block: the drift of a shared machine (other processes, CPU frequency) falls on
every variant alike within a few hundred milliseconds, where ``bench/run_overhead.py`` compares
blocks in separate processes seconds apart.

The variants are ``bench/agent_workload.py``'s (``bare``, ``seed_jsonl``, ``otel_plain``,
``alphatrace``), built once each in this process. The official OpenAI instrumentation patches the
``openai`` client globally, so before each block it is turned on against that variant's provider
(``otel_plain``, ``alphatrace``) or off (``bare``, ``seed_jsonl``), outside the timing. Two more
blocks run ``otel_plain`` and ``alphatrace`` with it off: the difference is what the
instrumentation's LLM span costs, the rest is the run's root span, its events and the processors. Each round
runs every variant for ``--runs`` runs (order reversed every other round), sleeping ``--gap-ms``
between runs and between blocks (outside the timing; the export threads work then). Per block: the
median of the runs' agent-thread CPU time and wall time; per round, each variant's minus ``bare``'s;
printed: the median over rounds, the middle half of the rounds in brackets (25th to 75th
percentile), and the ratio of the medians to what the seed adds. With ``--runs 1`` the variants
alternate run by run (the instrumentation is switched between runs, outside the timing): the finest
interleaving, which a busy shared machine needs.
Export threads' CPU is not measured here (``bench/run_overhead.py`` measures it).

    .venv/bin/python bench/agent_thread_runs.py --rounds 1000 --runs 1

Reads no environment variables (``OTEL_*`` and ``ALPHATRACE_*`` are removed first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("bare", "seed_jsonl", "otel_plain", "alphatrace")
# The same two variants with the instrumentation off: no LLM span, the rest of the telemetry as it is.
WITHOUT_LLM_SPAN = {"otel_plain, no LLM span": "otel_plain", "alphatrace, no LLM span": "alphatrace"}
BLOCKS = VARIANTS + tuple(WITHOUT_LLM_SPAN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=200, help="timed runs per block")
    parser.add_argument("--gap-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    for key in [k for k in os.environ if k.startswith(("OTEL_", "ALPHATRACE_"))]:
        del os.environ[key]

    from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

    from bench import agent_workload as workload

    folder = Path(tempfile.mkdtemp(prefix="alphatrace-thread-runs-"))
    variants = {name: workload.make_variant(name, folder / name) for name in VARIANTS}
    providers = {"otel_plain": variants["otel_plain"].provider, "alphatrace": variants["alphatrace"].telemetry.tracer_provider}
    instrumentor = OpenAIInstrumentor()  # one instance per process: instrument() patches the client globally

    def use(block: str) -> None:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        if block in providers:
            instrumentor.instrument(tracer_provider=providers[block])

    gap = args.gap_ms / 1000
    for name, variant in variants.items():  # warm-up
        use(name)
        for _ in range(100):
            variant.one_run()
    cpu: dict[str, list[float]] = {name: [] for name in BLOCKS}
    wall: dict[str, list[float]] = {name: [] for name in BLOCKS}
    started = datetime.now(UTC)
    for round_ in range(args.rounds):
        for name in BLOCKS if round_ % 2 == 0 else BLOCKS[::-1]:
            use(name)
            run = variants[WITHOUT_LLM_SPAN.get(name, name)].one_run
            run()
            cpus, walls = [], []
            for _ in range(args.runs):
                wall0 = time.perf_counter_ns()
                cpu0 = time.thread_time_ns()
                run()
                cpus.append((time.thread_time_ns() - cpu0) / 1000)
                walls.append((time.perf_counter_ns() - wall0) / 1000)
                time.sleep(gap)
            cpu[name].append(statistics.median(cpus))
            wall[name].append(statistics.median(walls))
            time.sleep(gap)
    use("bare")
    for variant in variants.values():
        variant.drain()
        variant.close()
    load = os.getloadavg()
    print(
        f"{started:%Y-%m-%d %H:%M}-{datetime.now(UTC):%H:%M} UTC, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; {args.rounds} rounds x {args.runs} runs "
        f"per variant, gap {args.gap_ms:g} ms, one process"
    )
    print()
    print("| variant | run median µs (agent thread wall) | added wall µs | × seed | agent thread CPU added µs | × seed |")
    print("|---|---|---|---|---|---|")
    seed = {}
    for name in BLOCKS:
        added_wall = [w - b for w, b in zip(wall[name], wall["bare"], strict=True)]
        added_cpu = [c - b for c, b in zip(cpu[name], cpu["bare"], strict=True)]
        if name == "seed_jsonl":
            seed = {"wall": statistics.median(added_wall), "cpu": statistics.median(added_cpu)}
        row = [
            f"`{name}`",
            _fmt(wall[name]),
            _fmt(added_wall),
            _ratio(added_wall, seed.get("wall")) if name not in ("bare", "seed_jsonl") else ("1.00" if name == "seed_jsonl" else "-"),
            _fmt(added_cpu),
            _ratio(added_cpu, seed.get("cpu")) if name not in ("bare", "seed_jsonl") else ("1.00" if name == "seed_jsonl" else "-"),
        ]
        print("| " + " | ".join(row) + " |")
    return 0


def _fmt(values: list[float]) -> str:
    """The median and, in brackets, the middle half (25th to 75th percentile)."""
    low, _, high = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):,.0f} ({low:,.0f} to {high:,.0f})"


def _ratio(values: list[float], seed: float | None) -> str:
    return f"{statistics.median(values) / seed:.2f}" if seed and seed > 0 else "-"


if __name__ == "__main__":
    sys.exit(main())
