"""Benchmark of the meta report build (a benchmark, not a test: nothing here asserts a time).

    python bench/report_bench.py                 # generate the workload if missing, then measure
    python bench/report_bench.py --runs 50000    # a smaller workload (its own file)
    python bench/report_bench.py --repeat 3 --json results.json
    python bench/report_bench.py --profile contract   # every signal scorable (the alpha-quality section works)
    python bench/report_bench.py --no-alpha-quality   # the build without the alpha-quality section

It measures, on a collector-format workload (``bench/generate_workload.py``: by default 1,000,000
spans, 500,000 runs, three alpha events per run, about 1.35 GB):

* the full build (``build_meta_report.py --full``: read, aggregate, write json + md + html and the
  incremental state): wall time, MB/s, spans/s, peak RSS of the main process and of a worker; with
  the native core (``native/``, when installed) and, in the same run, with the Python reader alone
  (``ALPHATRACE_NATIVE=off``);
* an incremental build with nothing new: the whole command (interpreter start included) and the
  build alone (in-process, after imports);
* in the same run, the baseline: a plain reader that ``orjson.loads`` every line and walks the
  dicts into per-agent runs, errors, latencies, LLM calls, tokens and alpha signals, deduplicating
  spans with a set; and the ratio of the two throughputs;
* in the same run, the bare walk: ``orjson.loads`` every line and turn each span's and event's
  attribute list into a dict, nothing else (no deduplication, no tallies). It is what the issue's
  orientation figure "orjson dict walk, 101 MB/s" measures, so the ratio to it is printed too: the
  baseline above does more work and is the slower, friendlier yardstick.

The best of ``--repeat`` runs is reported (the machine may be shared). Environment:
``ALPHATRACE_BENCH_DIR`` (workload and scratch directory, default /tmp/alphatrace-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate_workload import default_dir, generate  # noqa: E402


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the build's worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure_in_child(argv: list[str]) -> dict:
    """Run the report CLI in this process (a child of the bench) and report time and peak RSS.

    Imports are done before the clock starts (they are the same for any build); the time is the
    build: resolve inputs, read (or find nothing new), aggregate, write the report and the state.
    """
    import alpha.quality  # noqa: F401
    import meta_supervisor.alpha_cache
    import meta_supervisor.audit
    import meta_supervisor.incremental_state
    import meta_supervisor.report_html
    import meta_supervisor.report_markdown  # noqa: F401
    import services.kill_switch
    import services.market_data  # noqa: F401
    from meta_supervisor.report_cli import main

    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    code = main(argv)
    elapsed = time.perf_counter() - started
    return {
        "code": code,
        "seconds": elapsed,
        "cpu_seconds": _cpu_seconds() - cpu_started,
        "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _native_installed() -> bool:
    try:
        import alphatrace_native  # noqa: F401
    except ImportError:
        return False
    return True


def _user_environment() -> dict[str, str]:
    """As a user runs it: bytecode caching on (some sandboxes set PYTHONDONTWRITEBYTECODE, which
    makes every start compile every module again)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_build(argv: list[str], native: str = "auto") -> dict:
    """The CLI in a fresh interpreter, timed from outside (wall) and inside (build); ``native`` is
    ``ALPHATRACE_NATIVE`` for it (``off``: the Python reader alone)."""
    started = time.perf_counter()
    env = {**_user_environment(), "ALPHATRACE_NATIVE": native}
    done = subprocess.run([sys.executable, __file__, "--_child", json.dumps(argv)], capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = wall
    return result


def _each_request(path: Path, walk) -> None:
    """``walk(request)`` for every line that parses; the request is referenced only by ``walk``, so
    it is freed before the next line is parsed and the allocator reuses its memory while still in
    cache (about 2x for orjson)."""
    import orjson

    with open(path, "rb") as handle:
        for raw in handle:
            try:
                request = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            walk(request)
            del request


def baseline(path: Path) -> dict:
    """The plain reader: orjson + dict walk into the same tallies, one process."""
    import gc

    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    seen: set[tuple[str, str]] = set()
    agents: dict[str, dict] = {}
    spans = 0

    def walk(request: dict) -> None:
        nonlocal spans
        for resource_spans in request.get("resourceSpans", ()):
            for scope in resource_spans.get("scopeSpans", ()):
                for span in scope.get("spans", ()):
                    key = (span.get("traceId", ""), span.get("spanId", ""))
                    if key in seen:
                        continue
                    seen.add(key)
                    spans += 1
                    values = {kv["key"]: next(iter(kv.get("value", {}).values()), None) for kv in span.get("attributes", ())}
                    agent = agents.setdefault(
                        values.get("gen_ai.agent.name"),
                        {"runs": 0, "errors": 0, "latencies": [], "llm_calls": 0, "tokens": 0, "signals": {}},
                    )
                    operation = values.get("gen_ai.operation.name")
                    if operation == "invoke_agent":
                        agent["runs"] += 1
                        agent["errors"] += values.get("agent.run.outcome") == "error"
                        agent["latencies"].append(int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"]))
                        for event in span.get("events", ()):
                            if event.get("name") == "alpha.signal":
                                ev = {kv["key"]: next(iter(kv["value"].values())) for kv in event.get("attributes", ())}
                                pair = (ev.get("alpha.symbol"), ev.get("alpha.direction"))
                                agent["signals"][pair] = agent["signals"].get(pair, 0) + 1
                    elif operation == "chat":
                        agent["llm_calls"] += 1
                        agent["tokens"] += int(values.get("gen_ai.usage.input_tokens") or 0) + int(
                            values.get("gen_ai.usage.output_tokens") or 0
                        )

    gc.disable()
    try:
        _each_request(path, walk)
        for agent in agents.values():
            agent["latencies"].sort()
    finally:
        gc.enable()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    return {"seconds": seconds, "cpu_seconds": cpu, "spans": spans, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bare_walk(path: Path) -> dict:
    """orjson + a dict per attribute list, nothing kept: the issue's 'orjson dict walk' figure."""

    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    spans = values = 0

    def walk(request: dict) -> None:
        nonlocal spans, values
        for resource_spans in request.get("resourceSpans", ()):
            for scope in resource_spans.get("scopeSpans", ()):
                for span in scope.get("spans", ()):
                    spans += 1
                    values += len({kv["key"]: kv.get("value") for kv in span.get("attributes", ())})
                    for event in span.get("events", ()):
                        values += len({kv["key"]: kv.get("value") for kv in event.get("attributes", ())})

    _each_request(path, walk)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu_seconds": cpu, "spans": spans, "attribute_values": values, "rss_mb": rss}


def _baseline_in_child(path: str) -> dict:
    return baseline(Path(path))


def _measure_reader(kind: str, workload: Path) -> dict:
    """One of the plain readers in a fresh interpreter (its own peak RSS)."""
    done = subprocess.run([sys.executable, __file__, f"--_{kind}", str(workload)], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500_000, help="runs in the workload (2 spans each)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="workload and scratch directory (default: $ALPHATRACE_BENCH_DIR or /tmp/alphatrace-bench)"
    )
    parser.add_argument("--regenerate", action="store_true", help="write the workload again even if it exists")
    parser.add_argument("--repeat", type=int, default=2, help="measure each thing this many times, keep the best")
    parser.add_argument("--workers", type=int, default=0, help="build processes (default: one per CPU)")
    parser.add_argument(
        "--profile",
        choices=("issue", "contract"),
        default="issue",
        help="workload attributes (bench/generate_workload.py); contract: every signal scorable (default: issue)",
    )
    parser.add_argument("--no-alpha-quality", action="store_true", help="build without the alpha-quality section")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_baseline", help=argparse.SUPPRESS)
    parser.add_argument("--_bare", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        print(json.dumps(_measure_in_child(json.loads(args._child))))
        return 0
    if args._baseline:
        print(json.dumps(_baseline_in_child(args._baseline)))
        return 0
    if args._bare:
        print(json.dumps(bare_walk(Path(args._bare))))
        return 0

    work = args.dir or default_dir()
    work.mkdir(parents=True, exist_ok=True)
    stem = "traces" if args.profile == "issue" else f"traces-{args.profile}"
    workload = work / (f"{stem}.jsonl" if args.runs == 500_000 else f"{stem}-{args.runs}.jsonl")
    if args.regenerate or not workload.exists():
        print(f"generating {workload} ({args.runs} runs, profile {args.profile}) ...", flush=True)
        generate(workload, args.runs, profile=args.profile)
    size = workload.stat().st_size
    spans = 2 * args.runs
    print(
        f"workload: {workload}, {size / 1e6:,.1f} MB, {spans:,} spans; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(dir=work) as scratch:
        out, state = Path(scratch) / "out", Path(scratch) / "state"
        common = ["--input", str(workload), "--out", str(out), "--state-dir", str(state), "--quiet", "--workers", str(args.workers)]
        if args.no_alpha_quality:
            common.append("--no-alpha-quality")
        fulls, pythons, bases, bares = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so that load from elsewhere hits all alike
            fulls.append(run_build([*common, "--full"]))
            pythons.append(run_build([*common, "--full"], native="off"))
            bases.append(_measure_reader("baseline", workload))
            bares.append(_measure_reader("bare", workload))
        full = min(fulls, key=lambda r: r["seconds"])
        python_full = min(pythons, key=lambda r: r["seconds"])
        noops = [run_build(common) for _ in range(max(args.repeat, 3))]
        noop = min(noops, key=lambda r: r["seconds"])
        commands = []
        for _ in range(max(args.repeat, 5)):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, str(ROOT / "meta_supervisor" / "build_meta_report.py"), *common],
                check=True,
                cwd=ROOT,
                env=_user_environment(),
            )
            commands.append(time.perf_counter() - started)
        idle = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True, env=_user_environment())
            idle.append(time.perf_counter() - started)
        report = json.loads((out / "meta_report.json").read_text())
        assert report["inputs"]["spans"] == spans, report["inputs"]
        base = min(bases, key=lambda r: r["seconds"])
        bare = min(bares, key=lambda r: r["seconds"])
    results = {
        "workload": {"path": str(workload), "bytes": size, "spans": spans, "runs": args.runs, "profile": args.profile},
        "alpha_quality": not args.no_alpha_quality,
        "cpus": os.cpu_count(),
        "full_build": {
            "seconds": round(full["seconds"], 3),
            "mb_per_s": round(size / full["seconds"] / 1e6, 1),
            "spans_per_s": round(spans / full["seconds"]),
            "peak_rss_main_mb": round(full["rss_main_mb"], 1),
            "peak_rss_worker_mb": round(full["rss_worker_mb"], 1),
            "cpu_seconds": round(full["cpu_seconds"], 3),
            "mb_per_cpu_s": round(size / full["cpu_seconds"] / 1e6, 1),
            "all_seconds": [round(r["seconds"], 3) for r in fulls],
        },
        "full_build_python_reader": {
            "seconds": round(python_full["seconds"], 3),
            "mb_per_s": round(size / python_full["seconds"] / 1e6, 1),
            "peak_rss_main_mb": round(python_full["rss_main_mb"], 1),
            "peak_rss_worker_mb": round(python_full["rss_worker_mb"], 1),
            "cpu_seconds": round(python_full["cpu_seconds"], 3),
            "all_seconds": [round(r["seconds"], 3) for r in pythons],
        },
        "incremental_nothing_new": {
            "command_seconds": round(min(commands), 3),
            "build_seconds": round(noop["seconds"], 3),
            "python_start_seconds": round(min(idle), 3),
            "all_command_seconds": [round(t, 3) for t in commands],
        },
        "baseline_orjson_dict_walk": {
            "seconds": round(base["seconds"], 3),
            "mb_per_s": round(size / base["seconds"] / 1e6, 1),
            "spans_per_s": round(base["spans"] / base["seconds"]),
            "peak_rss_mb": round(base["rss_mb"], 1),
            "cpu_seconds": round(base["cpu_seconds"], 3),
            "all_seconds": [round(r["seconds"], 3) for r in bases],
        },
    }
    results["bare_orjson_walk"] = {
        "seconds": round(bare["seconds"], 3),
        "mb_per_s": round(size / bare["seconds"] / 1e6, 1),
        "spans_per_s": round(bare["spans"] / bare["seconds"]),
        "peak_rss_mb": round(bare["rss_mb"], 1),
        "all_seconds": [round(r["seconds"], 3) for r in bares],
    }
    results["native_core"] = _native_installed()
    results["ratio_full_build_vs_baseline"] = round(base["seconds"] / full["seconds"], 2)
    results["ratio_python_reader_vs_baseline"] = round(base["seconds"] / python_full["seconds"], 2)
    results["ratio_full_build_vs_bare_walk"] = round(bare["seconds"] / full["seconds"], 2)
    results["ratio_cpu_time"] = round(base["cpu_seconds"] / full["cpu_seconds"], 2)
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    f, n, b = results["full_build"], results["incremental_nothing_new"], results["baseline_orjson_dict_walk"]
    print(
        f"full build:        {f['seconds']:.2f} s  {f['mb_per_s']:,.0f} MB/s  {f['spans_per_s']:,} spans/s  "
        f"peak RSS main {f['peak_rss_main_mb']:.0f} MB, worker {f['peak_rss_worker_mb']:.0f} MB"
    )
    p = results["full_build_python_reader"]
    print(
        f"  the same, Python reader only (ALPHATRACE_NATIVE=off): {p['seconds']:.2f} s  {p['mb_per_s']:,.0f} MB/s  "
        f"peak RSS main {p['peak_rss_main_mb']:.0f} MB, worker {p['peak_rss_worker_mb']:.0f} MB; "
        f"{results['ratio_python_reader_vs_baseline']:.2f}x the baseline"
        + ("" if results["native_core"] else "  (the native core is not installed: both rows are the Python reader; make native)")
    )
    print(
        f"nothing new:       {n['build_seconds'] * 1000:.1f} ms for the build; {n['command_seconds'] * 1000:.0f} ms for the whole command "
        f"(of which {n['python_start_seconds'] * 1000:.0f} ms starting Python and the rest mostly imports)"
    )
    print(
        f"baseline (orjson): {b['seconds']:.2f} s  {b['mb_per_s']:,.0f} MB/s  {b['spans_per_s']:,} spans/s  "
        f"peak RSS {b['peak_rss_mb']:.0f} MB"
    )
    print(
        f"ratio:             {results['ratio_full_build_vs_baseline']:.2f}x the baseline (wall clock); "
        f"{results['ratio_cpu_time']:.2f}x in CPU time ({f['mb_per_cpu_s']:,.0f} MB per CPU-second)"
    )
    w = results["bare_orjson_walk"]
    print(
        f"bare orjson walk:  {w['seconds']:.2f} s  {w['mb_per_s']:,.0f} MB/s (no dedup, no tallies: the issue's 101 MB/s figure); "
        f"the full build is {results['ratio_full_build_vs_bare_walk']:.2f}x that"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
