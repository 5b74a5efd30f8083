"""Full and nothing-new builds of the same trace files by two checkouts, interleaved (A, B, A, B):
peak RSS of the main process and of the worker, CPU time (user + sys, main + worker) and wall
time, and the time of a build with nothing new. Memory (VmHWM) is deterministic; time on a shared
machine is not, so the two are run alternately and the load average is printed with each.

The "before" checkout is a ``git archive`` of the commit to compare with, run with this venv (and
so with the native core installed in it, which takes the older calls as they were):

    git archive 40eb769 | tar -x -C /tmp/before
    .venv/bin/python bench/report_before_after.py --before /tmp/before /tmp/m/matrix-base.jsonl ...

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
import alpha.quality, meta_supervisor.assemble.decisions, meta_supervisor.build.alpha_cache  # imported before the clock,
import meta_supervisor.build.incremental, meta_supervisor.render.decisions, meta_supervisor.render.html  # as report_bench does
import meta_supervisor.render.markdown, meta_supervisor.supervisor.audit, services.kill_switch, services.market_data
from meta_supervisor.cli.report import main
def cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
started, cpu_started = time.perf_counter(), cpu()
code = main(sys.argv[1:])
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
own = int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1])
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": code, "seconds": seconds, "cpu_seconds": cpu_seconds, "rss_main_mb": own / 1024, "rss_worker_mb": worker / 1024}))
"""


def build(tree: Path, argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"build in {tree} failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare with (git archive of a commit)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    results = []
    for path in args.files:
        for _ in range(args.repeat):
            for name, tree in (("before", args.before.resolve()), ("after", ROOT)):
                with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
                    common = ["--input", str(path), "--out", f"{scratch}/out", "--state-dir", f"{scratch}/state", "--quiet"]
                    full = build(tree, [*common, "--full"])
                    nothing_new = [build(tree, common)["seconds"] for _ in range(3)]
                row = {"file": path.name, "tree": name, "full": full, "nothing_new_seconds": nothing_new}
                results.append(row)
                print(
                    f"{path.name:34} {name:6} full {full['seconds']:6.2f} s, CPU {full['cpu_seconds']:6.2f} s, "
                    f"RSS {full['rss_main_mb']:5.1f} / {full['rss_worker_mb']:5.1f} MB; nothing new "
                    f"{min(nothing_new) * 1000:.0f} ms (best of 3); load {full['load_average']}",
                    flush=True,
                )
                time.sleep(1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
