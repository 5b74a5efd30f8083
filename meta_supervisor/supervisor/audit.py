"""The supervisor's audit log: every decision ``--apply`` makes, one JSON object per line.

All of a command's lines are appended in one ``write()`` under the state-file lock, fsynced before
anything is applied: a log that cannot be written is ``AuditWriteError`` and the command applies
nothing. ``read_audit`` gives the records back (the report's ``supervisor`` section:
``assemble.decisions``; rendered by ``render.decisions``); ``decision_spans`` emits the same
decisions as spans.

Audit line keys: ``at``, ``agent``, ``action``, ``would``, ``rule``, ``reason``, ``status``, ``killed``,
``figures``, ``checks``, ``held_by``, ``applied``, ``result``, ``policy``, ``dry_run``.

Environment: ``ALPHATRACE_SUPERVISOR_AUDIT_FILE`` (default ``meta_supervisor/state/supervisor_audit.jsonl``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meta_supervisor.locations import DEFAULT_AUDIT_FILE
from services.state_files import fsync_folder

if TYPE_CHECKING:  # the report reads the log without loading OpenTelemetry
    pass

ENV_AUDIT_FILE = "ALPHATRACE_SUPERVISOR_AUDIT_FILE"


def audit_path(path: str | os.PathLike | None = None) -> Path:
    """Argument beats ``ALPHATRACE_SUPERVISOR_AUDIT_FILE`` beats the default."""
    return Path(path or os.environ.get(ENV_AUDIT_FILE) or DEFAULT_AUDIT_FILE)


class AuditWriteError(Exception):
    """The audit log could not be written durably: whatever it would have recorded must not be applied."""


def append_audit(records: Sequence[Mapping[str, Any]], path: str | os.PathLike | None = None) -> Path:
    """Append ``records`` as JSON lines in one write under the lock other writers take, and fsync them
    (and the folder, when the log is new) before returning. On any failure (the path is a folder, the
    disk is full) the log is cut back to what it was and ``AuditWriteError`` says why."""
    from services.state_files import locked_for_update

    target = audit_path(path)
    if not records:
        return target
    text = "".join(json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n" for record in records)
    try:
        with locked_for_update(target):
            created = not target.exists()
            fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _append_durably(fd, text.encode("utf-8"))
            finally:
                os.close(fd)
            if created:
                fsync_folder(target.parent)  # a new file's name is durable once its folder is synced
    except OSError as exc:
        raise AuditWriteError(f"cannot write the audit log {target}: {exc}") from None
    return target


def _append_durably(fd: int, data: bytes) -> None:
    start = os.fstat(fd).st_size
    if start and os.pread(fd, 1, start - 1) != b"\n":
        data = b"\n" + data  # a line torn by an earlier crash stays apart from these
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)  # no half record left behind for the next append to glue onto
        raise


def read_audit(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The audit log's records, oldest first; unreadable lines are skipped."""
    try:
        lines = audit_path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("agent"), str):
            out.append(record)
    return out
