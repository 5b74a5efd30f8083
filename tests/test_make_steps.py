"""`make install` and `make demo` say what each step does and how long it takes, instead of minutes of
silence; run against a stand-in Python so nothing is installed or replayed."""

from __future__ import annotations

import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

STAND_IN = """#!/bin/sh
# `python -m venv DIR` makes DIR/bin/python (this script); anything else succeeds doing nothing.
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
exit 0
"""


def test_make_install_and_demo_say_what_each_step_does(tmp_path):
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "--no-print-directory", "demo", f"PYTHON={python}", f"VENV={venv}", f"TRACE_FILE={tmp_path / 'traces.jsonl'}"],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin"},  # no cargo: the compiled reader's step says so
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] + "]" for line in steps] == ["[install 1/2]", "[install 2/2]", "[demo 1/3]", "[demo 2/3]", "[demo 3/3]"]
    assert "pip (about 5 minutes the first time)" in steps[0]
    assert "no Rust toolchain" in steps[1]
    assert "250 trading days" in steps[2] and "about half a minute" in steps[2]
    others = [line for line in proc.stdout.splitlines() if not line.startswith("[")]
    assert all(line.startswith(str(venv / "bin" / "python")) for line in others), others  # the demo's own commands
    assert "pip install" not in proc.stdout
