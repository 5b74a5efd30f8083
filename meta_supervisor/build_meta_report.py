"""Build the meta-supervisor report: ``python meta_supervisor/build_meta_report.py [options]``.

With no arguments it reads ``telemetry/traces.jsonl`` (and its rotated backups) and writes
``meta_supervisor/reports/meta_report.json``, ``.md`` and ``.html``. Also runnable as
``python -m meta_supervisor.build_meta_report``. Options and environment variables:
``meta_supervisor.cli.report`` (``--help``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: sys.path[0] is meta_supervisor/, where no module should be importable as a
    # top-level name; the project root must be.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from meta_supervisor.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
