"""The saved state of many agents over many days: peak RSS and time of the builds that load it.

A file of ``--agents`` agents over ``--days`` days (the base workload's runs, ``--runs-a-day`` an
agent a day: the per-day tables of the state grow with the days, not the spans), then, for this
checkout and optionally ``--before`` (a ``git archive`` of the commit to compare with, run with
this venv), interleaved: a full build with state; ``--repeat`` builds with nothing new that write
the report again (the record that lets a build keep the last report, ``cli.report_record``, is
removed before each: a report that cannot be kept, as after the kill switch or the day changed); a
build of a small append (the last ``--append-lines`` lines of the file), on a copy of the state,
so it can be repeated. Each build is a fresh interpreter (``report_before_after.build``: VmHWM of
the main process, the workers' peak, wall and CPU time, the load average).

    git archive 39a5d35 | tar -x -C /tmp/before
    ALPHATRACE_BENCH_DIR=/tmp/m .venv/bin/python bench/many_days_state.py --before /tmp/before

A benchmark, not a test: nothing here asserts a time. Reads ``ALPHATRACE_BENCH_DIR`` (where the
workload and the states go; default /tmp/alphatrace-bench).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.generate_workload as workload
from bench.report_before_after import build

ROOT = Path(__file__).resolve().parent.parent


def generate(folder: Path, agents: int, days: int, runs_a_day: int) -> tuple[Path, bytes]:
    """The file without its last lines, and those lines (what the append build adds)."""
    runs = agents * days * runs_a_day
    workload.RUN_EVERY_NS = days * 86_400 * 10**9 // runs  # every agent runs ``runs_a_day`` times a day
    whole = folder / "many-days-all.jsonl"
    workload.generate(whole, runs, seed=1, shape=workload.Shape(agents=agents))
    return whole, whole.read_bytes()


def one_checkout(tree: Path, folder: Path, head: bytes, tail: bytes, repeat: int) -> dict:
    traces, state, kill = folder / "traces.jsonl", folder / "state", folder / "kill.json"
    shutil.rmtree(state, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    traces.write_bytes(head)
    argv = [
        *("--input", str(traces), "--out", str(folder / "out"), "--state-dir", str(state), "--workers", "2", "--quiet"),
        *("--kill-file", str(kill), "--audit-log", str(folder / "audit.jsonl")),
    ]
    kill.write_text("{}")
    results: dict = {"full": build(tree, argv), "nothing_new": []}
    (summary,) = state.glob("report-????????????????.json")
    results["summary_bytes"] = summary.stat().st_size
    for _ in range(repeat):
        for record in state.glob("*.record"):  # the report made again, not kept
            record.unlink()
        results["nothing_new"].append(build(tree, argv))
    copy = folder / "state-append"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(state, copy)
    traces.write_bytes(head + tail)
    results["append"] = build(tree, [*argv[:5], str(copy), *argv[6:]])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout to compare with (git archive of a commit)")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs-a-day", type=int, default=4, help="runs an agent a day (default 4: 120,000 runs, 350 MB)")
    parser.add_argument("--append-lines", type=int, default=4, help="lines of the file the append build adds (512 spans a line)")
    parser.add_argument("--repeat", type=int, default=2, help="nothing-new builds per checkout and round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (this checkout, --before) alternated")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    folder = workload.default_dir()
    folder.mkdir(parents=True, exist_ok=True)
    whole, text = generate(folder, args.agents, args.days, args.runs_a_day)
    lines = text.splitlines(keepends=True)
    head, tail = b"".join(lines[: -args.append_lines]), b"".join(lines[-args.append_lines :])
    whole.unlink()
    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    results: dict = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            measured = one_checkout(tree, folder / name, head, tail, args.repeat)
            results[name].append(measured)
            nothing = ", ".join(f"{run['rss_main_mb']:.1f} MB {run['seconds']:.2f} s" for run in measured["nothing_new"])
            print(
                f"{name}: summary {measured['summary_bytes'] / 1e6:.2f} MB; full {measured['full']['rss_main_mb']:.1f} MB; "
                f"nothing new {nothing}; append {measured['append']['rss_main_mb']:.1f} MB {measured['append']['seconds']:.2f} s "
                f"(load {measured['append']['load_average']})"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
