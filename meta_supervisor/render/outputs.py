"""Write the report files: ``meta_report.json``, ``meta_report.md`` and ``meta_report.html``.

Each file is written with ``services.state_files.write_atomically`` (temp file, fsync, rename, fsync
of the folder), so a reader (a dashboard, a CI step) sees the previous report or the new one, never
half of one, also after a power loss. The JSON is written as the encoder makes it, never whole in
memory (a report of 1,000 agents is ~15 MB of text, ~100 MB as the encoder's list of pieces).

Reads no environment variables.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.state_files import write_atomically

REPORT_JSON = "meta_report.json"
REPORT_MD = "meta_report.md"
REPORT_HTML = "meta_report.html"


def report_json_pieces(report: dict[str, Any]) -> Iterator[str]:
    """``meta_report.json`` as the pieces the encoder makes, to be written as they come: the whole
    text of a report of many agents is several times the dict's size while it is joined (with
    ``indent`` the standard encoder builds a list of every piece first)."""
    return itertools.chain(json.JSONEncoder(indent=2, ensure_ascii=False, allow_nan=False).iterencode(report), ("\n",))


def report_json(report: dict[str, Any]) -> str:
    """``meta_report.json``'s text (what ``write_report`` writes, piece by piece)."""
    return "".join(report_json_pieces(report))


def write_report(report: dict[str, Any], out_dir: Path, formats: tuple[str, ...] = ("json", "md", "html")) -> list[Path]:
    """Write the requested formats into ``out_dir``; returns the paths written."""
    written = []
    if "json" in formats:
        path = out_dir / REPORT_JSON
        write_atomically(path, report_json_pieces(report))
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
