"""The report command run in a fresh process, with its own peak memory and its workers': for the
bounded-memory tests (``test_open_runs.py``, ``test_report_many_agents_memory.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# VmHWM, not RUSAGE_SELF: Linux carries ru_maxrss across exec, so that would include pytest's own.
PROBE = (
    "import resource, sys\n"
    "from meta_supervisor.cli.report import main\n"
    "code = main(sys.argv[1:])\n"
    "own = int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1])\n"
    "workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print('RSS', own, workers)\n"
    "sys.exit(code)\n"
)


def report_peak_kb(args: list[str], reader: str) -> tuple[int, int]:
    """Run ``build_meta_report`` with ``args`` (``ALPHATRACE_NATIVE=reader``) in a new interpreter;
    returns (its peak RSS, its worker processes' largest peak RSS) in kB, after checking it exited 0."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env={**os.environ, "ALPHATRACE_NATIVE": reader},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    own_kb, workers_kb = (int(x) for x in done.stdout.split("RSS", 1)[1].split())
    return own_kb, workers_kb
