"""Full builds of two versions of the code on the same files, interleaved (a benchmark, not a test).

    python bench/ab_builds.py --a-root /tmp/a-src --a-path /tmp/a-native FILE... [--rounds 2]

Version A is another tree of this repository (``git archive <commit> | tar -x -C /tmp/a-src``)
with its own native core on ``--a-path`` (a directory holding an ``alphatrace_native`` package,
put first on ``PYTHONPATH``); version B is this tree with the core installed in its venv. For
each file: A, B, A, B, ... (``--rounds`` each), each build in a fresh interpreter through
``report_bench.py --_child`` (the full build, imports excluded, two workers), then the bare orjson
walk once. One JSON line per measurement: wall and CPU seconds (user+sys of the build and its
workers), peak RSS of the main process and of a worker, the spans counted, the load average
before it. On a shared machine, interleaving makes load from elsewhere hit both versions alike.

Environment: none of its own (the builds read theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(root: Path, native_path: str | None, path: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        argv = ["--input", path, "--out", f"{scratch}/out", "--state-dir", f"{scratch}/state", "--quiet", "--workers", "2", "--full"]
        env = {**os.environ, "ALPHATRACE_NATIVE": "auto"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user runs it (report_bench._user_environment)
        if native_path:
            env["PYTHONPATH"] = native_path
        load = os.getloadavg()[0]
        done = subprocess.run(
            [sys.executable, str(root / "bench" / "report_bench.py"), "--_child", json.dumps(argv)],
            capture_output=True,
            text=True,
            cwd=root,
            env=env,
        )
        if done.returncode != 0:
            raise SystemExit(f"build failed in {root}:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "seconds": round(result["seconds"], 3),
        "cpu_seconds": round(result["cpu_seconds"], 3),
        "rss_main_mb": round(result["rss_main_mb"], 1),
        "rss_worker_mb": round(result["rss_worker_mb"], 1),
        "reads": result["reads"],
        "report_inputs": result.get("report_inputs"),
        "load_average_before": round(load, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--a-root", type=Path, required=True, help="the other tree (version A)")
    parser.add_argument("--a-path", default=None, help="directory with version A's alphatrace_native package")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    versions = {"A": (args.a_root.resolve(), args.a_path), "B": (ROOT, None)}
    for path in args.files:
        for round_ in range(args.rounds):
            for name, (root, native_path) in versions.items():
                print(json.dumps({"file": Path(path).name, "version": name, "round": round_, **build(root, native_path, path)}), flush=True)
        load = os.getloadavg()[0]
        bare = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "report_bench.py"), "--_bare", path], capture_output=True, text=True, cwd=ROOT, check=True
        )
        walk = json.loads(bare.stdout.strip().splitlines()[-1])
        print(
            json.dumps(
                {
                    "file": Path(path).name,
                    "bare_walk_seconds": round(walk["seconds"], 3),
                    "spans": walk["spans"],
                    "load_average_before": round(load, 2),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
