"""A report build killed (SIGKILL) at any point, also while its forked workers read, never blocks
the next build, and the next build's report equals a clean full build's.

Each build runs in its own process, as ``build_meta_report.py`` does, with every file split across
forked workers (``parallel.MIN_SPLIT_BYTES`` set to 1 in that process: the split point, not
the file size, is what the test is about). The build to be killed reads everything (``--full``)
after a few lines were appended, and is killed at a random moment of a clean build's duration, or
(every other time) at a random moment while its workers read a part that takes them an hour; the
next build gets a generous bounded time (and a short lock timeout: a lock still held is an exit 3
naming its holder, not a hang)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meta_supervisor.cli import report as report_cli
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for

ROOT = Path(__file__).resolve().parent.parent
KILLS = 30
SPLIT_EVERYTHING = """
import os, sys, time
from meta_supervisor.build import parallel as parallel_build
from meta_supervisor.build import parts
parallel_build.MIN_SPLIT_BYTES = 1
if os.environ.get("KILL_TEST_SLOW_WORKERS"):  # each worker reads for an hour, as on a very large file
    read = parts.read_part
    parts.read_part = lambda *args, **kwargs: (time.sleep(3600), read(*args, **kwargs))[1]
from meta_supervisor.cli.report import main
sys.exit(main(sys.argv[1:]))
"""
NEXT_BUILD_SECONDS = 120  # far more than a build takes (about a second), even on a loaded machine


def trace_lines(first: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    runs = [
        Run(
            rng.choice(["momentum", "meanrev", "analyst"]),
            trace,
            start_ms=trace * 60_000,
            duration_ms=rng.randint(5, 5000),
            outcome=rng.choice(["ok", "ok", "error"]),
            llm=[Llm(tokens_in=rng.randint(10, 900), tokens_out=rng.randint(1, 90)) for _ in range(rng.randint(0, 2))],
            signals=[("SPX", rng.choice(["up", "down"]))],
        )
        for trace in range(first, first + count)
    ]
    return lines_for(runs, per_line=4)


def argv(tmp_path: Path, out: str, *extra: str) -> list[str]:
    return [
        "--input",
        str(tmp_path / "traces.jsonl"),
        "--out",
        str(tmp_path / out),
        "--state-dir",
        str(tmp_path / "state"),
        "--kill-file",
        str(tmp_path / "killed.json"),
        "--audit-log",
        str(tmp_path / "audit.jsonl"),
        "--no-alpha-quality",
        "--format",
        "json",
        "--quiet",
        "--workers",
        "3",
        *extra,
    ]


def start(tmp_path: Path, out: str, *extra: str, slow_workers: bool = False) -> subprocess.Popen:
    """A build in a process of its own (and its own process group); its output goes to files, never
    to pipes: a worker left running would hold a pipe open, and reading it would wait for that."""
    env = {**os.environ, "ALPHATRACE_STATE_LOCK_TIMEOUT": "30"}
    if slow_workers:
        env["KILL_TEST_SLOW_WORKERS"] = "1"
    with open(tmp_path / f"{out}.stderr", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-c", SPLIT_EVERYTHING, *argv(tmp_path, out, *extra)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group: what it leaves behind is killed after the test
        )


def finish(tmp_path: Path, process: subprocess.Popen, out: str) -> tuple[int, str]:
    try:
        process.wait(timeout=NEXT_BUILD_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the build after a killed build did not finish in {NEXT_BUILD_SECONDS} s (a lock left held?)")
    return process.returncode, (tmp_path / f"{out}.stderr").read_text()


def report_of(folder: Path) -> dict:
    report = json.loads((folder / "meta_report.json").read_text(encoding="utf-8"))
    report.pop("generated_at")
    return report


def alive_in_group(group: int) -> list[int]:
    """The processes of a process group that still run (zombies excepted: nothing may reap them here)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError, IndexError):
            continue
        if int(pgrp) == group and state not in "ZX":
            alive.append(int(stat.parent.name))
    return alive


def workers_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers and /proc")
def test_killed_builds_never_block_the_next_and_leave_a_correct_state(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("KILL_TEST_SEED", "12")))
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(trace_lines(1, 3000, seed=1)))
    started = time.monotonic()
    code, err = finish(tmp_path, start(tmp_path, "out", "--full"), "out")
    duration = time.monotonic() - started
    assert code == 0, err
    next_trace, with_workers = 3001, 0
    for kill in range(KILLS):
        with open(traces, "a") as handle:  # something new to read, also for the build after the kill
            handle.write("".join(trace_lines(next_trace, 20, seed=kill)))
        next_trace += 20
        slow = kill % 2 == 0
        victim = start(tmp_path, "killed", "--full", slow_workers=slow)
        try:
            if slow:  # at a random moment while its (slow) workers read
                deadline = time.monotonic() + NEXT_BUILD_SECONDS
                while time.monotonic() < deadline and victim.poll() is None and not workers_of(victim.pid):
                    time.sleep(0.002)
                deadline = time.monotonic() + rng.uniform(0, 0.2)
            else:  # anywhere in a build: reading, saving the state, writing the report
                deadline = time.monotonic() + rng.uniform(0, duration)
            while time.monotonic() < deadline and victim.poll() is None:
                time.sleep(0.002)
            with_workers += bool(workers_of(victim.pid))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            code, err = finish(tmp_path, start(tmp_path, "out"), "out")
            deadline = time.monotonic() + NEXT_BUILD_SECONDS  # workers die with their build (at once; generous bound)
            while alive_in_group(victim.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive_in_group(victim.pid), f"kill {kill}: the killed build's workers still run"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(victim.pid, signal.SIGKILL)  # workers a killed build left running (none should be)
        assert code == 0, f"kill {kill}: {err}"
        reference = tmp_path / "reference"
        assert report_cli.main([*argv(tmp_path, "reference"), "--no-state", "--workers", "1"], now=lambda: dt.datetime.now(dt.UTC)) == 0
        assert report_of(tmp_path / "out") == report_of(reference), f"kill {kill}"
    print(f"{KILLS} kills, {with_workers} while workers were reading, each next build equal to a clean full build")
    assert with_workers >= KILLS // 2  # every other kill is while the workers read
