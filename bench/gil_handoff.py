"""Why a batch export thread starves next to a busy agent thread: the GIL hand-off, without OpenTelemetry.

Two threads in one process, like an agent and the SDK's ``BatchSpanProcessor``:

* the "agent" runs pure-Python work of ``--run-us`` microseconds per run, back to back, and after
  each run optionally makes one short system call that releases the GIL (``urandom``: what
  ``uuid.uuid4()`` and the ``openai`` client's idempotency key do; ``stat``: what a kill-switch or
  config check does; ``sleep0``: ``time.sleep(0)``; ``none``);
* the "exporter" waits on a ``threading.Event`` with a timeout (the SDK worker's ``wait(schedule
  delay)``), then does 5 ms of pure-Python work (an export), and again.

It prints how much CPU the exporter got. With no system call in the agent, CPython's forced switch
gives the exporter its turn every switch interval (``sys.getswitchinterval()``, 5 ms), so it gets
about half. When the agent releases the GIL more often than that, each release wakes the waiting
exporter, which starts its 5 ms wait again, and the agent takes the GIL back before the woken thread
runs: the forced switch is never asked for and the exporter starves. Releasing less often than the
switch interval, or a shorter interval, restores the turn. So does ``--handoff``: the agent waits for
the exporter (``otel/export_handoff.py`` does this when the span queue backs up).

The starvation needs a free core for each thread: on a machine whose cores are busy with other
processes, the agent thread is often descheduled at its system call and the exporter gets in then.

    .venv/bin/python bench/gil_handoff.py                 # the table of cases, each in a fresh process
    .venv/bin/python bench/gil_handoff.py --case urandom --run-us 1000 --seconds 3

Reads no environment variables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

CASES = [
    # (agent's system call, run us, switch interval ms, hand-off)
    ("none", 1000, 5.0, False),
    ("urandom", 1000, 5.0, False),
    ("stat", 1000, 5.0, False),
    ("urandom", 4000, 5.0, False),
    ("urandom", 7000, 5.0, False),
    ("urandom", 1000, 0.5, False),
    ("sleep0", 1000, 5.0, False),
    ("urandom", 1000, 5.0, True),
]


def _spin(microseconds: float) -> None:
    end = time.perf_counter() + microseconds / 1e6
    while time.perf_counter() < end:
        pass


def one_case(syscall: str, run_us: float, switch_ms: float, handoff: bool, seconds: float) -> dict:
    sys.setswitchinterval(switch_ms / 1000)
    stop = threading.Event()
    wake = threading.Event()
    done = threading.Condition()
    exports = [0]
    exporter_cpu = [0.0]

    def exporter() -> None:
        started = time.thread_time()
        while not stop.is_set():
            wake.wait(0.001)  # the SDK worker's timed wait
            wake.clear()
            _spin(5000)  # an export: 5 ms of interpreter work
            with done:
                exports[0] += 1
                done.notify_all()
        exporter_cpu[0] = time.thread_time() - started

    thread = threading.Thread(target=exporter, daemon=True)
    thread.start()
    time.sleep(0.05)
    release = {"urandom": lambda: os.urandom(16), "stat": lambda: os.stat("/"), "sleep0": lambda: time.sleep(0)}.get(syscall)
    runs = 0
    agent_started = time.thread_time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        _spin(run_us)
        if release is not None:
            release()
        runs += 1
        if handoff and runs % 10 == 0:  # "the queue has backed up": wait for the export (bounded)
            with done:
                seen = exports[0]
                wake.set()
                done.wait_for(lambda seen=seen: exports[0] != seen, 0.05)
    agent_cpu = time.thread_time() - agent_started
    stop.set()
    thread.join()
    return {
        "syscall": syscall,
        "run_us": run_us,
        "switch_ms": switch_ms,
        "handoff": handoff,
        "seconds": seconds,
        "agent_runs": runs,
        "exports": exports[0],
        "exporter_cpu_s": round(exporter_cpu[0], 2),
        "exporter_share": round(exporter_cpu[0] / max(1e-9, exporter_cpu[0] + agent_cpu), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", default=None, choices=["none", "urandom", "stat", "sleep0"])
    parser.add_argument("--run-us", type=float, default=1000)
    parser.add_argument("--switch-ms", type=float, default=5.0)
    parser.add_argument("--handoff", action="store_true")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="each case this many times (the table shows them all)")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(one_case(args.case, args.run_us, args.switch_ms, args.handoff, args.seconds)))
        return 0
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| agent's system call after each run | run | switch interval | hand-off | exporter's CPU share (each repeat) | exports/s |")
    print("|---|---|---|---|---|---|")
    for syscall, run_us, switch_ms, handoff in CASES:
        results = []
        for _ in range(args.repeats):
            command = [sys.executable, __file__, "--case", syscall, "--run-us", str(run_us), "--switch-ms", str(switch_ms)]
            command += ["--seconds", str(args.seconds)] + (["--handoff"] if handoff else [])
            results.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
        shares = ", ".join(f"{r['exporter_share']:.0%}" for r in results)
        rate = ", ".join(f"{r['exports'] / r['seconds']:.0f}" for r in results)
        print(f"| {syscall} | {run_us:g} µs | {switch_ms:g} ms | {'yes' if handoff else 'no'} | {shares} | {rate} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
