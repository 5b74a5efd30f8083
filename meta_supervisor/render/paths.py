"""Paths as the report's pages show them: the Markdown is pasted as a pull-request comment and the
HTML is shared, so neither prints an absolute local path (a user's home folder, a CI runner's
workspace). ``short_path`` is the one rule: a path inside the project is shown relative to it
(``telemetry/traces.jsonl``), any other absolute path by its name alone (``prices``), a relative path
as configured. ``for_pages`` applies it to every path the report holds and to the texts that may
quote one (input messages and problems, the kill-switch and audit-log errors, "needs attention"). ``meta_report.json``
keeps the paths as read.

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

from meta_supervisor.locations import PROJECT_ROOT


def short_path(path: str | None, root: Path = PROJECT_ROOT) -> str | None:
    """``path`` relative to ``root`` when inside it, else its last component when absolute."""
    if not path:
        return path
    pure = PurePath(path)
    if not pure.is_absolute():
        return path
    try:
        return pure.relative_to(root).as_posix() or "."
    except ValueError:
        return pure.name or path


def _shorten(text: Any, paths: list[str], root: Path) -> Any:
    if not isinstance(text, str):
        return text
    for path in paths:  # longest first: a file before the folder that holds it
        text = text.replace(path, short_path(path, root) or "")
    return text.replace(f"{root.as_posix()}/", "")


def for_pages(report: Mapping[str, Any], root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """A shallow copy of ``report`` with its paths (and texts quoting them) as ``short_path`` shows them."""
    inputs, kill, supervisor, alpha = report["inputs"], report["kill_switch"], report.get("supervisor"), report.get("alpha_quality")
    known: Iterable[Any] = [
        *inputs["files"],
        kill["path"],
        report["prices"].get("source"),
        supervisor and supervisor.get("audit_log"),
        alpha and alpha.get("market_data"),
    ]
    paths = sorted({p for p in known if isinstance(p, str) and PurePath(p).is_absolute()}, key=len, reverse=True)

    def short(text: Any) -> Any:
        return _shorten(text, paths, root)

    out = dict(report)
    out["inputs"] = {
        **inputs,
        "files": [short(f) for f in inputs["files"]],
        "file_details": [{**d, "path": short(d.get("path")), "error": short(d.get("error"))} for d in inputs["file_details"]],
        "problems": [{**p, "file": short(p["file"]), "error": short(p["error"])} for p in inputs["problems"]],
        "partial_tails": [{**t, "file": short(t["file"])} for t in inputs["partial_tails"]],
        "messages": [short(m) for m in inputs["messages"]],
    }
    out["needs_attention"] = [{**item, "why": short(item["why"])} for item in report["needs_attention"]]
    out["kill_switch"] = {**kill, "path": short(kill["path"]), "error": short(kill["error"])}
    out["prices"] = {**report["prices"], "source": short(report["prices"].get("source"))}
    if supervisor is not None:
        out["supervisor"] = {**supervisor, "audit_log": short(supervisor.get("audit_log")), "error": short(supervisor.get("error"))}
    if alpha is not None:
        out["alpha_quality"] = {**alpha, "market_data": short(alpha.get("market_data"))}
    return out
