"""The report's serial tail alone: ``build_report`` and ``write_report`` of one trace file, timed again
and again in one process (a benchmark, not a test: nothing here asserts a time).

The CLI builds the file once (``--full``, the clock fixed at 2026-12-01T12:00Z so that the report
files of two trees can be compared byte for byte); the inputs ``build_report`` was handed are kept
(a deep copy, taken before the call spends the tallies), then ``build_report`` runs on a fresh copy
of them and ``write_report`` writes its report into ``OUT/rep<i>``, ``--repeat`` times, each timed
by ``time.process_time`` (the CPU this process spends: less noisy than the wall clock on a shared
machine). It imports the tree it lies in (a copy of it in another tree measures that one);
alternate two trees' runs::

    .venv/bin/python bench/report_tail.py /tmp/t1/matrix-worst.jsonl /tmp/me/out --repeat 7

Reads no environment variables itself (the CLI reads its own).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a trace file")
    parser.add_argument("out", help="a scratch folder (emptied first)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    from meta_supervisor.cli import report as cli
    from meta_supervisor.render.outputs import write_report

    build_report = cli.build_report
    handed: dict = {}

    def keep_inputs(data, *rest, **options):
        handed["call"] = (copy.deepcopy(data), rest, {**options, "spend_tallies": False})
        return build_report(data, *rest, **options)

    cli.build_report = keep_inputs
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    cli_args = ["--input", args.input, "--state-dir", str(out / "state"), "--out", str(out / "rep"), "--quiet", "--full"]
    code = cli.main(cli_args, now=lambda: NOW)
    if code != 0:
        return code
    data, rest, options = handed["call"]
    built, written = [], []
    for i in range(args.repeat):
        fresh = copy.deepcopy(data)
        gc.collect()
        started = time.process_time()
        report = build_report(fresh, *rest, **options)
        middle = time.process_time()
        write_report(report, out / f"rep{i}")
        built.append(middle - started)
        written.append(time.process_time() - middle)
        del report, fresh

    def figures(times: list[float]) -> str:
        return f"min {min(times):.4f} median {sorted(times)[len(times) // 2]:.4f} s"

    print(f"{ROOT}: build_report {figures(built)}; write_report {figures(written)} (CPU, {args.repeat} repeats)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
