"""What telemetry adds to an agent run, against the seed's JSONL and the plain OpenTelemetry SDK
measured in the same session: interleaved blocks, each in a fresh process.

Variants (``bench/agent_workload.py``): ``bare`` (no telemetry), ``seed_jsonl`` (the seed guide's
JSONL lines), ``otel_plain`` (the plain SDK, the official OpenAI instrumentation, the same file
exporter) and ``alphatrace`` (the run wrapper, ``configure_telemetry``, ``emit_alpha_signal``). A run
is one chat completion through the real ``openai`` client over an in-process transport plus three
alpha signals.

Each block is one variant in a fresh interpreter (``--child``): warm-up runs, the queue drained,
then ``--runs`` timed runs, then the queue drained again. It reports per run: the wall time on the
agent's thread (median, p99), the agent thread's CPU time, the whole process's CPU (every thread:
the export thread, the watchdog) and the export thread's CPU, plus where the spans went. Blocks
alternate ABCD DCBA ... for ``--repeats`` rounds, so drift of a shared machine falls on every
variant alike; the parent pairs each variant with the ``bare`` block of the same round and prints
medians and ranges of what each adds, and the ratio to what the seed adds.

Modes: ``gap`` sleeps ``--gap-ms`` between runs (outside the timing), as an agent waits on the
network, so the export thread runs in the gaps; ``sustained`` runs back to back at full speed (the
export thread has to take its share of the GIL from the agent: runs per second and spans lost tell
whether it keeps up).

    .venv/bin/python bench/run_overhead.py --repeats 20 --runs 2000 --json /tmp/run_overhead.json
    .venv/bin/python bench/run_overhead.py --repeats 4 --runs 500 --modes gap    # a quick look

Reads no environment variables (``OTEL_*`` and ``ALPHATRACE_*`` are removed in each block).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A block of the "before" variant runs the code of another tree (--source, a `git archive` of an
# earlier commit): its packages come first, and this file's workload module is loaded by path.
_SOURCE = sys.argv[sys.argv.index("--source") + 1] if "--source" in sys.argv else None
sys.path[:0] = [_SOURCE, str(ROOT)] if _SOURCE else [str(ROOT)]
_spec = importlib.util.spec_from_file_location("agent_workload", ROOT / "bench" / "agent_workload.py")
workload = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workload)

MODES = ("gap", "sustained")
BEFORE = "alphatrace_before"  # the alphatrace variant run from --before's tree


# --- one block, in its own process --------------------------------------------------------------


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def thread_cpu_ns(thread) -> int | None:
    if thread is None or thread.ident is None:
        return None
    try:
        return time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
    except OSError:
        return None


def run_block(variant_name: str, mode: str, runs: int, warmup: int, gap_seconds: float) -> dict:
    for key in [k for k in os.environ if k.startswith(("OTEL_", "ALPHATRACE_"))]:
        del os.environ[key]
    folder = Path(tempfile.mkdtemp(prefix="alphatrace-overhead-"))
    variant = workload.make_variant("alphatrace" if variant_name == BEFORE else variant_name, folder)
    gap = gap_seconds if mode == "gap" else 0.0
    for _ in range(warmup):
        variant.one_run()
        if gap:
            time.sleep(gap)
    variant.drain()
    before = variant.counts()
    exporter_thread = variant.export_thread()
    process_cpu = time.process_time_ns()
    export_cpu = thread_cpu_ns(exporter_thread) or 0
    walls: list[float] = []
    cpus: list[float] = []
    started = time.perf_counter()
    busy = 0.0
    for _ in range(runs):
        wall0 = time.perf_counter_ns()
        cpu0 = time.thread_time_ns()
        variant.one_run()
        cpu1 = time.thread_time_ns()
        wall1 = time.perf_counter_ns()
        walls.append((wall1 - wall0) / 1000)
        cpus.append((cpu1 - cpu0) / 1000)
        busy += (wall1 - wall0) / 1e9
        if gap:
            time.sleep(gap)
    elapsed = time.perf_counter() - started
    variant.drain()
    process_cpu = time.process_time_ns() - process_cpu
    export_cpu = (thread_cpu_ns(exporter_thread) or 0) - export_cpu if exporter_thread is not None else 0
    after = variant.counts()
    variant.close()
    walls.sort()
    cpus.sort()
    counts = {key: after[key] - before.get(key, 0) for key in after}
    return {
        "variant": variant_name,
        "mode": mode,
        "runs": runs,
        "wall_median_us": statistics.median(walls),
        "wall_p99_us": _percentile(walls, 0.99),
        "thread_cpu_median_us": statistics.median(cpus),
        "process_cpu_us_per_run": process_cpu / 1000 / runs,
        "export_cpu_us_per_run": export_cpu / 1000 / runs,
        "runs_per_s": runs / busy if gap else runs / elapsed,
        "spans": counts,
    }


# --- the interleaved session ----------------------------------------------------------------------


def _child(variant: str, mode: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--mode", mode]
    command += ["--runs", str(args.runs), "--warmup", str(args.warmup), "--gap-ms", str(args.gap_ms)]
    if variant == BEFORE:
        command += ["--source", str(args.before)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"block {variant}/{mode} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stat(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(blocks: list[dict], variants: list[str]) -> dict:
    """Per mode and variant: what it adds over ``bare`` in the same round (median, range over
    rounds), and what ``alphatrace`` and ``otel_plain`` add as a multiple of what the seed adds."""
    out: dict = {}
    for mode in sorted({b["mode"] for b in blocks}):
        rounds: dict[int, dict[str, dict]] = {}
        for block in blocks:
            if block["mode"] == mode:
                rounds.setdefault(block["round"], {})[block["variant"]] = block
        complete = [r for r in rounds.values() if all(v in r for v in variants)]
        table: dict = {}
        for name in variants:

            def added(field: str, name: str = name, complete: list = complete) -> list[float]:
                return [r[name][field] - r["bare"][field] for r in complete]

            row = {
                "wall_median_us": _stat([r[name]["wall_median_us"] for r in complete]),
                "wall_p99_us": _stat([r[name]["wall_p99_us"] for r in complete]),
                "added_wall_us": _stat(added("wall_median_us")),
                "added_thread_cpu_us": _stat(added("thread_cpu_median_us")),
                "added_process_cpu_us": _stat(added("process_cpu_us_per_run")),
                "export_cpu_us": _stat([r[name]["export_cpu_us_per_run"] for r in complete]),
                "runs_per_s": _stat([r[name]["runs_per_s"] for r in complete]),
                "spans_lost": sum(r[name]["spans"].get("lost", 0) for r in complete),
                "handoff_waits": sum(r[name]["spans"].get("handoff_waits", 0) for r in complete),
            }
            table[name] = row
        if "seed_jsonl" in variants:
            # What a variant adds as a multiple of what the seed adds: the ratio of the medians of
            # the paired differences (a ratio per round is unstable when the seed's is near zero).
            seed = table["seed_jsonl"]
            for name, row in table.items():
                if name == "bare":
                    continue
                for field, key in (
                    ("added_wall_us", "x_seed_wall"),
                    ("added_thread_cpu_us", "x_seed_thread_cpu"),
                    ("added_process_cpu_us", "x_seed_cpu"),
                ):
                    if seed[field]["median"] > 0:
                        row[key] = row[field]["median"] / seed[field]["median"]
        out[mode] = {"rounds": len(complete), "variants": table}
    return out


def _fmt(stat: dict | float | None, digits: int = 0) -> str:
    if stat is None:
        return "-"
    if isinstance(stat, float):
        return f"{stat:,.{digits}f}"
    return f"{stat['median']:,.{digits}f} ({stat['min']:,.{digits}f} to {stat['max']:,.{digits}f})"


def markdown(summary: dict) -> str:
    lines = []
    for mode, part in summary.items():
        lines.append(
            f"**{mode}** ({part['rounds']} rounds; per round, each variant's block median minus the `bare` block's; "
            "median over rounds, range in brackets; × seed: the ratio of the medians)"
        )
        lines.append("")
        lines.append(
            "| variant | agent thread: run median µs | added µs | × seed | agent thread CPU added µs | × seed "
            "| total CPU added µs/run | × seed | of which export µs/run | runs/s | spans lost |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, row in part["variants"].items():
            lines.append(
                f"| `{name}` | {_fmt(row['wall_median_us'])} | {_fmt(row['added_wall_us'])} | {_fmt(row.get('x_seed_wall'), 2)} "
                f"| {_fmt(row['added_thread_cpu_us'])} | {_fmt(row.get('x_seed_thread_cpu'), 2)} "
                f"| {_fmt(row['added_process_cpu_us'])} | {_fmt(row.get('x_seed_cpu'), 2)} | {_fmt(row['export_cpu_us'])} "
                f"| {_fmt(row['runs_per_s'])} | {row['spans_lost']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="rounds; each runs every variant once per mode")
    parser.add_argument("--runs", type=int, default=2000, help="timed runs per block")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="idle time between runs in the gap mode")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--variants", default=",".join(workload.VARIANTS))
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a tree of earlier code (git archive COMMIT | tar -x -C DIR): adds the variant alphatrace_before, run from it",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every block and the summary here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="gap", help=argparse.SUPPRESS)
    parser.add_argument("--source", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--summarize", type=Path, default=None, help="print the tables of a --json file again (no runs)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_block(args.child, args.mode, args.runs, args.warmup, args.gap_ms / 1000)))
        return 0
    if args.summarize:
        saved = json.loads(args.summarize.read_text())
        variants = list(dict.fromkeys(block["variant"] for block in saved["blocks"]))
        print(saved["header"] + "\n")
        print(markdown(summarize(saved["blocks"], variants)))
        return 0
    variants = args.variants.split(",")
    if args.before:
        variants.append(BEFORE)
    if "bare" not in variants:
        parser.error("--variants must include bare (what the others are measured against)")
    modes = args.modes.split(",")
    started = datetime.now(UTC)
    blocks = []
    for round_ in range(args.repeats):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for mode in modes:
            for variant in order:
                block = _child(variant, mode, args)
                block["round"] = round_
                blocks.append(block)
                print(
                    f"round {round_ + 1}/{args.repeats} {mode:>9} {variant:<11} run median {block['wall_median_us']:8.1f} us, "
                    f"process CPU {block['process_cpu_us_per_run']:8.1f} us/run, export {block['export_cpu_us_per_run']:6.1f} us/run, "
                    f"{block['runs_per_s']:7.1f} runs/s, spans {block['spans']}",
                    flush=True,
                )
    summary = summarize(blocks, variants)
    load = os.getloadavg()
    header = (
        f"{started:%Y-%m-%d %H:%M}-{datetime.now(UTC):%H:%M} UTC, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; {args.repeats} rounds x {args.runs} runs, "
        f"gap {args.gap_ms:g} ms"
    )
    print("\n" + header + "\n")
    print(markdown(summary))
    if args.json:
        saved = {"header": header, "args": vars(args), "summary": summary, "blocks": blocks}
        args.json.write_text(json.dumps(saved, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
