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

The best of ``--repeat`` runs is reported (the machine may be shared).

The shape matrix (``--matrix``) measures the same full build on every shape of trace file users
produce, in one run, at one span count:

    python bench/report_bench.py --matrix --spans 1000000 --json matrix.json
    python bench/report_bench.py --matrix --spans 200000 --rows base,zstd,worst   # some rows only
    python bench/report_bench.py --matrix --spans 5000000 --no-bare   # peak RSS only: no bare walk, no ratio

Each row's workload is generated (``bench/generate_workload.py``, seed ``--seed``), measured, then
deleted (``--keep`` keeps it: a 1,000,000-span row is ~1.3 GB, the 1-span-per-line row ~2x that).
Per row: the full build with the default reader (the native core when installed; wall time, MB/s
of decompressed JSON, spans/s, peak RSS of the main process and of the worker), the bare orjson
walk of the same file (decompressing a zstd file as it reads) and the ratio of the two; the build
again with nothing new (the report kept as is, ``cli.report_record``; then, its record removed, the
saved state's report made and written again: their times, in-process after imports); whether
the report counted every span, and the parts the native core read or declined in the main
process. The rows are written as JSON (``--json``, after each row) and printed as a Markdown table.

The rows are not the cartesian product of the dimensions (2 x 2 x 2 x 2 x 2 x 2 x 3 x 2 x 2 = 768
files): the base row is the classic workload (child-first, roots with run totals, 4 agents, 1 LLM
span and no tool span per run, unscorable signals, 512 spans a line, plain JSON lines, today's
names; the ``old-names`` row is a file written before the project namespace), each
following row changes one dimension from it (``MATRIX``), and two rows combine the worst of each:
root-first, no totals, 1,000 agents, 8 LLM and 8 tool spans per run, plain and zstd. A dimension
that costs alone shows in its own row; what they cost together shows in the worst rows.

Environment: ``ALPHATRACE_BENCH_DIR`` (workload and scratch directory, default /tmp/alphatrace-bench).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate_workload import Shape, default_dir, generate, runs_for  # noqa: E402
from otel import semconv  # noqa: E402

# (row, profile, shape): the base row, one dimension changed at a time, and the combined worst case
_WORST = dict(order="root-first", totals=False, agents=1000, llm_spans=8, tool_spans=8)
MATRIX: list[tuple[str, str, Shape]] = [
    ("base", "issue", Shape()),
    ("root-first", "issue", Shape(order="root-first")),
    ("no-totals", "issue", Shape(totals=False)),
    ("root-first+no-totals", "issue", Shape(order="root-first", totals=False)),  # another instrumentation's roots
    ("1000-agents", "issue", Shape(agents=1000)),
    ("8-llm", "issue", Shape(llm_spans=8)),
    ("8-llm+8-tools", "issue", Shape(llm_spans=8, tool_spans=8)),
    ("scorable", "issue", Shape(scorable=True)),
    ("1-span-a-line", "issue", Shape(spans_per_line=1)),
    ("4096-spans-a-line", "issue", Shape(spans_per_line=4096)),
    ("zstd", "issue", Shape(compression="zstd")),
    ("old-names", "issue", Shape(old_names=True)),  # a file written before the project namespace
    ("worst", "issue", Shape(**_WORST)),
    ("worst-zstd", "issue", Shape(**_WORST, compression="zstd")),
]


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the build's worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure_in_child(argv: list[str]) -> dict:
    """Run the report CLI in this process (a child of the bench) and report time and peak RSS.

    The modules imported here are imported before the clock starts (they are the same for any
    build); the time is the build: resolve inputs, read (or find nothing new), aggregate, write the
    report and the state. Modules a build imports where it first needs them (the native core, the
    parallel reader, the worth section, ...: ~30 ms) are inside the clock, as a user's command pays
    them: imported here, they raised the main process's measured peak by ~1 MB (docs/benchmarks.md
    "Span slots prefetched").
    """
    import alpha.quality  # noqa: F401
    import meta_supervisor.assemble.decisions
    import meta_supervisor.build.alpha_cache
    import meta_supervisor.build.incremental
    import meta_supervisor.render.decisions
    import meta_supervisor.render.html
    import meta_supervisor.render.markdown
    import meta_supervisor.supervisor.audit  # noqa: F401
    import services.kill_switch
    import services.market_data  # noqa: F401
    from meta_supervisor.cli.report import main

    reads = _count_reads()
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    code = main(argv)
    elapsed = time.perf_counter() - started
    result = {
        "reads": reads,
        "code": code,
        "seconds": elapsed,
        "cpu_seconds": _cpu_seconds() - cpu_started,
        "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    # what the report counted, read here after the peak RSS was taken (a report of many agents is
    # large: parsed in the bench process, it would raise the peak RSS its next children inherit)
    report = Path(argv[argv.index("--out") + 1]) / "meta_report.json"
    if code == 0 and report.exists():
        inputs = json.loads(report.read_text())["inputs"]
        result["report_inputs"] = {"spans": inputs["spans"], "bad_lines": inputs["bad_lines"]}
    return result


def _count_reads() -> dict[str, int]:
    """Counts, filled while the build runs, of the main process's reads by the native core: parts
    it read (``native``) and parts it declined (``python``: the Python reader read them). A forked
    worker's reads are not counted, nor a part the core read that could not be merged exactly."""
    from meta_supervisor.build import native_reader as native_part

    counts = {"native": 0, "python": 0}

    def counting(read):
        def wrapper(*args, **kwargs):
            result = read(*args, **kwargs)
            counts["native" if result is not None else "python"] += 1
            return result

        return wrapper

    native_part._read = counting(native_part._read)
    native_part._read_zstd = counting(native_part._read_zstd)
    return counts


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

    with _open_lines(path) as handle:
        for raw in handle:
            try:
                request = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            walk(request)
            del request


@contextlib.contextmanager
def _open_lines(path: Path):
    """The file's bytes, decompressed when it is one zstd stream, to iterate by line."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"\x28\xb5\x2f\xfd":
            handle.seek(0)
            yield handle
            return
        import zstandard

        handle.seek(0)
        yield io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True), 1 << 20)


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
                        agent["errors"] += values.get(semconv.AGENT_RUN_OUTCOME) == "error"
                        agent["latencies"].append(int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"]))
                        for event in span.get("events", ()):
                            if event.get("name") == semconv.EVENT_ALPHA_SIGNAL:
                                ev = {kv["key"]: next(iter(kv["value"].values())) for kv in event.get("attributes", ())}
                                pair = (ev.get(semconv.ALPHA_SYMBOL), ev.get(semconv.ALPHA_DIRECTION))
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


def _generate_in_child(path: Path, runs: int, seed: int, profile: str, shape: Shape) -> int:
    """``generate`` in a fresh interpreter: the bench process stays small, and so does the peak RSS
    that the builds it starts inherit (Linux keeps a process's peak RSS across fork and exec)."""
    spec = json.dumps({"path": str(path), "runs": runs, "seed": seed, "profile": profile, "shape": asdict(shape)})
    done = subprocess.run([sys.executable, __file__, "--_generate", spec], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def matrix_rows(selected: str | None) -> list[tuple[str, str, Shape]]:
    if not selected:
        return list(MATRIX)
    names = [name.strip() for name in selected.split(",") if name.strip()]
    known = {name for name, _, _ in MATRIX}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"--rows: unknown rows {', '.join(unknown)} (known: {', '.join(known)})")
    return [row for row in MATRIX if row[0] in names]


def measure_row(name: str, profile: str, shape: Shape, args, work: Path) -> dict:
    """Generate one row's workload, build it ``args.repeat`` times (best kept), walk it bare as
    often, check the report, delete the file unless ``--keep``."""
    runs = runs_for(args.spans, shape)
    spans = runs * shape.spans_per_run
    path = work / f"matrix-{name}.jsonl{'.zst' if shape.compression == 'zstd' else ''}"
    print(f"[{name}] generating {spans:,} spans ({runs:,} runs) into {path} ...", flush=True)
    started = time.perf_counter()
    json_bytes = _generate_in_child(path, runs, args.seed, profile, shape)
    generated = time.perf_counter() - started
    try:
        file_bytes = path.stat().st_size
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            out, state = Path(scratch) / "out", Path(scratch) / "state"
            common = ["--input", str(path), "--out", str(out), "--state-dir", str(state), "--quiet", "--workers", str(args.workers)]
            if args.no_alpha_quality:
                common.append("--no-alpha-quality")
            builds, bares = [], []
            for _ in range(args.repeat):  # interleaved, so that load from elsewhere hits both alike
                builds.append(run_build([*common, "--full"]))
                if not args.no_bare:
                    bares.append(_measure_reader("bare", path))
            unchanged = run_build(common)  # nothing new since the build before: the report kept (cli.report_record)
            for record in state.glob("report-*.record"):
                record.unlink()  # no record: the saved state's report made and written again
            rerendered = run_build(common)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    build = min(builds, key=lambda r: r["seconds"])
    bare = min(bares, key=lambda r: r["seconds"]) if bares else None
    inputs = build["report_inputs"]
    return {
        "row": name,
        "profile": profile,
        "shape": asdict(shape),
        "spans": spans,
        "runs": runs,
        "json_bytes": json_bytes,
        "file_bytes": file_bytes,
        "generate_seconds": round(generated, 1),
        "load_average_before": round(load, 2),
        "full_build": {
            "seconds": round(build["seconds"], 3),
            "mb_per_s": round(json_bytes / build["seconds"] / 1e6, 1),
            "spans_per_s": round(spans / build["seconds"]),
            "peak_rss_main_mb": round(build["rss_main_mb"], 1),
            "peak_rss_worker_mb": round(build["rss_worker_mb"], 1),
            "cpu_seconds": round(build["cpu_seconds"], 3),
            "main_process_reads": build["reads"],
            "all_seconds": [round(r["seconds"], 3) for r in builds],
        },
        "bare_orjson_walk": bare
        and {
            "seconds": round(bare["seconds"], 3),
            "mb_per_s": round(json_bytes / bare["seconds"] / 1e6, 1),
            "spans_per_s": round(bare["spans"] / bare["seconds"]),
            "peak_rss_mb": round(bare["rss_mb"], 1),
            "all_seconds": [round(r["seconds"], 3) for r in bares],
        },
        "nothing_new": {
            "seconds": round(unchanged["seconds"], 3),
            "peak_rss_main_mb": round(unchanged["rss_main_mb"], 1),
            "main_process_reads": unchanged["reads"],
        },
        "nothing_new_rerendered": {
            "seconds": round(rerendered["seconds"], 3),
            "peak_rss_main_mb": round(rerendered["rss_main_mb"], 1),
            "main_process_reads": rerendered["reads"],
        },
        "ratio_full_build_vs_bare_walk": bare and round(bare["seconds"] / build["seconds"], 2),
        "report_spans": inputs["spans"],
        "report_bad_lines": inputs["bad_lines"],
        "all_spans_counted": inputs["spans"] == spans and (bare is None or bare["spans"] == spans) and inputs["bad_lines"] == 0,
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| shape | spans | JSON MB (file MB) | full build | MB/s | spans/s | peak RSS main / worker | bare walk | ratio | core (main) "
        "| nothing new: kept (made again) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        f, w = row["full_build"], row["bare_orjson_walk"]
        worker = f"{f['peak_rss_worker_mb']:.0f} MB" if f["peak_rss_worker_mb"] else "none"
        walk = f"{w['seconds']:.2f} s ({w['mb_per_s']:,.0f} MB/s)" if w else "not run"
        ratio = f"{row['ratio_full_build_vs_bare_walk']:.2f}x" if w else "-"
        size = f"{row['json_bytes'] / 1e6:,.0f}" + (f" ({row['file_bytes'] / 1e6:,.0f})" if row["file_bytes"] != row["json_bytes"] else "")
        reads = f["main_process_reads"]
        checked = "" if row["all_spans_counted"] else " **(spans miscounted)**"
        lines.append(
            f"| {row['row']}{checked} | {row['spans']:,} | {size} | {f['seconds']:.2f} s | {f['mb_per_s']:,.0f} | "
            f"{f['spans_per_s']:,} | {f['peak_rss_main_mb']:.0f} MB / {worker} | {walk} | "
            f"{ratio} | {reads['native']} read, {reads['python']} declined | {row['nothing_new']['seconds'] * 1000:,.0f} ms "
            f"({row['nothing_new_rerendered']['seconds'] * 1000:,.0f} ms) |"
        )
    return "\n".join(lines)


def run_matrix(args, work: Path) -> int:
    args.repeat = args.repeat or 1
    rows = []
    results = {
        "matrix": True,
        "spans": args.spans,
        "seed": args.seed,
        "repeat": args.repeat,
        "alpha_quality": not args.no_alpha_quality,
        "native_core": _native_installed(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    print(
        f"shape matrix: {args.spans:,} spans a row, {os.cpu_count()} CPUs, native core "
        f"{'installed' if results['native_core'] else 'NOT installed (make native)'}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for name, profile, shape in matrix_rows(args.rows):
        row = measure_row(name, profile, shape, args, work)
        rows.append(row)
        f = row["full_build"]
        walk = row["bare_orjson_walk"]
        print(
            f"[{name}] full build {f['seconds']:.2f} s, {f['mb_per_s']:,.0f} MB/s, {f['spans_per_s']:,} spans/s, RSS "
            f"{f['peak_rss_main_mb']:.0f} / {f['peak_rss_worker_mb']:.0f} MB; "
            + (f"bare walk {walk['seconds']:.2f} s; {row['ratio_full_build_vs_bare_walk']:.2f}x" if walk else "no bare walk (--no-bare)"),
            flush=True,
        )
        if args.json:  # after each row: a long matrix stopped half-way keeps what it measured
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(markdown_table(rows))
    return 0 if all(row["all_spans_counted"] for row in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500_000, help="runs in the workload (2 spans each)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="workload and scratch directory (default: $ALPHATRACE_BENCH_DIR or /tmp/alphatrace-bench)"
    )
    parser.add_argument("--regenerate", action="store_true", help="write the workload again even if it exists")
    parser.add_argument(
        "--repeat", type=int, default=None, help="measure each thing this many times, keep the best (default 2; 1 with --matrix)"
    )
    parser.add_argument("--workers", type=int, default=0, help="build processes (default: one per CPU)")
    parser.add_argument(
        "--profile",
        choices=("issue", "contract"),
        default="issue",
        help="workload attributes (bench/generate_workload.py); contract: every signal scorable (default: issue)",
    )
    parser.add_argument("--no-alpha-quality", action="store_true", help="build without the alpha-quality section")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--matrix", action="store_true", help="the shape matrix (MATRIX): one full build and bare walk per shape")
    parser.add_argument("--spans", type=int, default=1_000_000, help="--matrix: spans in each row's workload (default 1,000,000)")
    parser.add_argument("--rows", help=f"--matrix: only these rows, comma-separated ({', '.join(name for name, _, _ in MATRIX)})")
    parser.add_argument("--seed", type=int, default=1, help="--matrix: the workloads' seed")
    parser.add_argument("--keep", action="store_true", help="--matrix: keep each row's workload file")
    parser.add_argument("--no-bare", action="store_true", help="--matrix: skip the bare walk (memory figures only: no ratio)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_baseline", help=argparse.SUPPRESS)
    parser.add_argument("--_bare", help=argparse.SUPPRESS)
    parser.add_argument("--_generate", help=argparse.SUPPRESS)
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
    if args._generate:
        spec = json.loads(args._generate)
        print(generate(Path(spec["path"]), spec["runs"], spec["seed"], spec["profile"], Shape(**spec["shape"])))
        return 0

    work = args.dir or default_dir()
    work.mkdir(parents=True, exist_ok=True)
    if args.matrix:
        return run_matrix(args, work)
    args.repeat = args.repeat or 2
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
