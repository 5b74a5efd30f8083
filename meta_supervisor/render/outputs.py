"""Write the report files: ``meta_report.json``, ``meta_report.md`` and ``meta_report.html``.

Each file is written with ``services.state_files.write_atomically`` (temp file, fsync, rename, fsync
of the folder), so a reader (a dashboard, a CI step) sees the previous report or the new one, never
half of one, also after a power loss.

Reads no environment variables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.state_files import write_atomically

REPORT_JSON = "meta_report.json"
REPORT_MD = "meta_report.md"
REPORT_HTML = "meta_report.html"


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_report(report: dict[str, Any], out_dir: Path, formats: tuple[str, ...] = ("json", "md", "html")) -> list[Path]:
    """Write the requested formats into ``out_dir``; returns the paths written."""
    written = []
    if "json" in formats:
        path = out_dir / REPORT_JSON
        write_atomically(path, report_json(report))
        written.append(path)
    if "md" in formats:
        from meta_supervisor.render.markdown import render_markdown

        path = out_dir / REPORT_MD
        write_atomically(path, render_markdown(report))
        written.append(path)
    if "html" in formats:
        from meta_supervisor.render.html import render_html

        path = out_dir / REPORT_HTML
        write_atomically(path, render_html(report))
        written.append(path)
    return written
