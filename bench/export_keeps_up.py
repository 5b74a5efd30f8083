"""Does export keep up with agent threads running at full speed? One process, no idle gaps.

``--threads N`` agent threads each run alphatrace's path back to back (the run wrapper, one chat
completion through the real ``openai`` client over the simulated transport, three alpha signals;
``bench/agent_workload.py``) for ``--seconds`` (or ``--runs`` each), with the embedded file
exporter and the SDK's ``BatchSpanProcessor`` (queue 16,384). Every second it notes how many spans
ended, were exported and were lost; at the end it waits for the queue to drain and prints where
every span went, the runs per second, and how often and how long agent threads handed the GIL to
the export thread (``otel/export_handoff.py``). ``--no-handoff`` turns the hand-off off: what
happened before it.

    .venv/bin/python bench/export_keeps_up.py --threads 1 --seconds 60
    .venv/bin/python bench/export_keeps_up.py --threads 8 --seconds 60 [--no-handoff] [--json out.json]

Reads no environment variables (``OTEL_*`` are cleared so the defaults are measured).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.agent_workload import Alphatrace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=0, help="runs per thread instead of --seconds")
    parser.add_argument("--no-handoff", action="store_true", help="turn the export hand-off off")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    folder = Path(tempfile.mkdtemp(prefix="alphatrace-keeps-up-"))
    variant = Alphatrace(folder, export_handoff=not args.no_handoff)
    for _ in range(50):  # warm-up: imports, caches, the first batch
        variant.one_run()
    variant.drain()
    base = variant.counts()
    stop_at = time.monotonic() + args.seconds
    runs = [0] * args.threads
    errors: list[BaseException] = []

    timeline: list[dict[str, int]] = []

    def note_second() -> None:
        counts = variant.counts()
        timeline.append({k: counts[k] - base.get(k, 0) for k in ("ended", "exported", "lost")})

    def agent(index: int) -> None:
        # The first agent thread notes the counts each second: a monitoring thread of its own would
        # be one more thread waiting for the GIL, which changes the very hand-off being measured.
        next_note = time.monotonic() + 1.0
        try:
            while (runs[index] < args.runs) if args.runs else (time.monotonic() < stop_at):
                variant.one_run()
                runs[index] += 1
                if index == 0 and time.monotonic() >= next_note:
                    next_note += 1.0
                    note_second()
        except BaseException as exc:  # reported below; a benchmark thread must not die silently
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(i,), name=f"agent-{i}") for i in range(args.threads)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # blocks without a timeout: the main thread never asks for the GIL meanwhile
    elapsed = time.monotonic() - started
    for second, counts in enumerate(timeline, 1):
        print(f"  {second:>4} s  {counts}")
    variant.drain(timeout=120)
    final = {k: v - base.get(k, 0) for k, v in variant.counts().items()}
    variant.close()
    result = {
        "threads": args.threads,
        "handoff": not args.no_handoff,
        "seconds": round(elapsed, 1),
        "runs": sum(runs),
        "runs_per_s": round(sum(runs) / elapsed, 1),
        "spans_ended": final["ended"],
        "spans_exported": final["exported"],
        "spans_lost": final["lost"],
        "max_queue_behind": max((t["ended"] - t["exported"] - t["lost"] for t in timeline), default=0),
        "handoff_waits": final.get("handoff_waits", 0),
        "handoff_ms": final.get("handoff_ms", 0),
        "handoff_stuck": final.get("handoff_stuck", 0),
        "python": sys.version.split()[0],
        "errors": [repr(e) for e in errors],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"result": result, "timeline": timeline}, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
